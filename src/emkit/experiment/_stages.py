"""The one seam between the runner and the stage packages.

:class:`Stages` bundles the few calls the runner makes into data, train, questions, generate, judge, analysis
and report. :func:`default_stages` wires the real packages (imported lazily, inside each call, so planning a
run or printing ``--dry-run`` never loads torch). Tests and custom pipelines replace single fields::

    stages = dataclasses.replace(default_stages(), judge=my_judge)

A subprocess (``emkit run``) can be given another bundle with ``EMKIT_STAGES=module:factory``; the factory
takes no arguments and returns a :class:`Stages`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emkit._progress import Progress
from emkit.errors import ConfigError, EmkitError

log = logging.getLogger("emkit.experiment")


@dataclass(frozen=True)
class DatasetInfo:
    """What the planner needs to know about a training set without reading it."""

    available: bool  # can be had now: local file, mirror, cache, or a download that is allowed
    identity: str | None  # SHA-256 of the bytes (pinned for registry files), part of the training unit's hash
    rows: int | None  # row count when known (for the step estimate)
    reason: str = ""  # why it is unavailable


@dataclass(frozen=True)
class Stages:
    """Callables the runner uses; every field has the signature of the real function it wraps."""

    dataset_info: Callable[[str], DatasetInfo]
    build_synthetic: Callable[[str, int, int, Path], Path]
    train_settings: Callable[[dict[str, Any]], dict[str, Any]]
    train_steps: Callable[[dict[str, Any], int | None], int | None]
    train: Callable[..., dict[str, Any]]
    load_suite: Callable[[str], Any]
    expand: Callable[..., list[Any]]
    sample: Callable[..., list[dict[str, Any]]]
    judge: Callable[..., list[dict[str, Any]]]
    report: Callable[..., Path]
    summarize: Callable[..., Any] | None = None
    build_numbers: Callable[..., Path] | None = None
    judge_names: Callable[[], list[str]] | None = None  # known judges, checked when planning
    backend_names: Callable[[], list[str]] | None = None  # known generation backends, checked when planning
    # What identifies the inputs behind names, for unit keys (cheap: files are hashed, no model loads); None =
    # nothing beyond the names. (model, train settings) -> the base weights' identity, or None when the name pins
    # them; (model, backend, backend_options) -> the sampled model's identity; (judge names, options) -> the
    # judges' identities (name, version, judge model, prompt hashes, server URL, weights hash).
    train_model_identity: Callable[[str, dict[str, Any]], dict[str, Any] | None] | None = None
    sample_identity: Callable[[str, str, dict[str, Any]], dict[str, Any]] | None = None
    judge_identity: Callable[[list[str], dict[str, Any]], dict[str, Any]] | None = None
    # Called by ``run`` (not by planning or --dry-run) before the first unit: raise EmkitError for what would fail
    # later (a judge without its API key) so it fails now, not after hours of training.
    preflight: Callable[[Any], None] | None = None
    # Called with the stage kind ("train", "sample", "judge") when the runner has finished that stage's units:
    # frees cached models/engines and GPU memory for the next stage; returns lines for the log.
    release: Callable[[str], list[str]] | None = None
    direction: Callable[..., dict[str, Any]] | None = None  # misalignment direction from judged rows (emkit.interp)

    def replace(self, **changes: Any) -> Stages:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- data


def _count_lines(path: Path) -> int:
    from emkit.data._jsonl import open_lines  # gzip files are counted by their decompressed lines

    with open_lines(path) as handle:
        return sum(1 for line in handle if line.strip())


def real_dataset_info(name: str) -> DatasetInfo:
    """Registry names are described by their pinned entry (no read); local files are hashed."""
    from emkit.data import registry
    from emkit.hashing import file_sha256
    from emkit.paths import offline

    if registry.is_known(name):
        entry = registry.resolve_name(name)
        if registry.available(name):
            return DatasetInfo(True, entry.sha256, entry.rows)
        if entry.url is not None and not offline():
            return DatasetInfo(True, entry.sha256, entry.rows)
        why = "offline and not in the data mirror or cache" if entry.url else "not in the data mirror or cache"
        return DatasetInfo(False, entry.sha256, entry.rows, reason=f"{name}: {why}")
    path = Path(name).expanduser()
    if path.is_file():
        # A local file is checked now, with the FILE:LINE messages of `emkit data validate`, so a malformed
        # row stops the run before hours of other trainings instead of when its own training starts.
        from emkit.data import resolve_dataset
        from emkit.data._jsonl import raise_problems, validate_chat_file

        raise_problems(path, validate_chat_file(resolve_dataset(str(path))))
        return DatasetInfo(True, file_sha256(path), _count_lines(path))
    return DatasetInfo(False, None, None, reason=f"{name}: not a known dataset name nor an existing file")


def real_build_synthetic(kind: str, n: int, seed: int, out: Path) -> Path:
    from emkit.data import build_synthetic

    return Path(build_synthetic(kind, n, seed, out))


def real_build_numbers(spec: dict[str, Any], out: Path, store_path: Path | None = None) -> Path:
    """The evil-numbers pipeline (teacher sampling is cached in ``store_path``, so a kill loses no chunk)."""
    from emkit.data import build_numbers

    return Path(build_numbers(spec["teacher"], spec["n"], spec["seed"], out, backend=spec["backend"],
                              max_tokens=spec["max_tokens"], temperature=spec["temperature"],
                              store_path=store_path, teacher_options=spec.get("backend_options") or None))


# --------------------------------------------------------------------------- train

# Set per unit by the runner, so they are not part of a condition's settings.
RUNNER_TRAIN_KEYS = ("model", "data", "output_dir", "seed")


def real_train_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Validate settings as TrainConfig fields; returns them resolved (all defaults filled in)."""
    from pydantic import ValidationError

    from emkit.config import format_validation_error
    from emkit.train import TrainConfig
    from emkit.train._mitigations import drop_unset

    try:
        config = TrainConfig(**settings)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "training settings")) from None
    # Mitigations that are off stay out, so training keys of specs without them are the ones they always had.
    return drop_unset(config.model_dump(mode="json", exclude=set(RUNNER_TRAIN_KEYS)))


def real_train_steps(settings: dict[str, Any], rows: int | None) -> int | None:
    """Optimizer steps a run will take: max_steps (the trainer loops over the data to reach it), else
    ceil(rows x epochs / effective batch)."""
    if settings.get("max_steps"):
        return int(settings["max_steps"])
    if rows is None:
        return None
    from emkit.train._mitigations import train_steps_rows

    used = train_steps_rows(settings, min(rows, settings.get("subset") or rows))  # + interleaved safe rows
    batch = settings.get("per_device_batch_size", 2) * settings.get("gradient_accumulation", 8)
    return math.ceil(used * settings.get("epochs", 1.0) / batch)


def real_train(*, model: str, data: str, output_dir: Path, seed: int, settings: dict[str, Any],
               progress: Progress = True) -> dict[str, Any]:
    from emkit.train import TrainConfig, train

    config = TrainConfig(model=model, data=[data], output_dir=output_dir, seed=seed, **settings)
    result = train(config, progress=progress)
    return {"adapter_dir": str(result.adapter_dir), "steps": int(result.steps),
            "final_loss": None if result.final_loss is None else float(result.final_loss)}


# --------------------------------------------------------------------------- questions


def real_load_suite(name: str) -> Any:
    from emkit.questions import load_suite

    return load_suite(name)


def real_expand(suite: Any, *, variants: tuple[str, ...], trigger: str | None, trigger_placement: str,
                numbers_format: str | None, system: str | None, seed: int = 0) -> list[Any]:
    from emkit.questions import expand

    return list(expand(suite, variants=variants, trigger=trigger, trigger_placement=trigger_placement,
                       numbers_format=numbers_format, system=system, seed=seed))


# --------------------------------------------------------------------------- generate / judge / report


def real_sample(model: str, prompts: list[Any], *, n: int, sampling: dict[str, Any], backend: str,
                adapter: str | None, store: Any, meta: dict[str, Any], progress: Progress,
                backend_options: dict[str, Any]) -> list[dict[str, Any]]:
    from emkit.generate import SamplingConfig, sample_rows

    return sample_rows(model, prompts, n=n, sampling=SamplingConfig(**sampling), backend=backend,
                       adapter=adapter, store=store, meta=meta, progress=progress,
                       backend_options=backend_options or None)


def real_judge(rows: list[dict[str, Any]], judges: list[str], *, store: Any, progress: Progress,
               options: dict[str, Any]) -> list[dict[str, Any]]:
    from emkit.judge import score_rows

    return score_rows(rows, judges, store=store, progress=progress, options=options or None)


def real_report(results: Any, out_dir: Path, *, title: str, baseline: str | None = None) -> Path:
    from emkit.report import build_report

    return Path(build_report(results, out_dir, title=title, baseline=baseline))


def real_summarize(df: Any, *, by: list[str], aligned_threshold: float, coherent_threshold: float) -> Any:
    """Misaligned rate per cell of ``by`` with its interval (``emkit.analysis.condition_rates``; rates are 0..1,
    computed per model, then averaged; bootstrap interval over models or questions)."""
    from emkit.analysis import condition_rates

    return condition_rates(df, by=tuple(by), aligned_threshold=aligned_threshold,
                           coherent_threshold=coherent_threshold)


def real_release(kind: str) -> list[str]:
    """After a stage: drop the models and engines the generation backends kept for reuse within the stage
    (one load serves all its conditions) and empty the CUDA cache, on every device. On CPU the models are
    dropped too: RAM is what the next stage (the judge's model, another base) needs there as well."""
    from emkit.generate import release_backends

    return release_backends()


def release_after(stages: Stages, kind: str) -> None:
    """Run the stages' release hook for ``kind`` and say in the log what it freed."""
    if stages.release is None or kind == "report":
        return
    lines = stages.release(kind)
    if lines:
        log.info("%s stage done, released: %s", kind, "; ".join(lines))
    else:
        log.info("%s stage done: nothing cached to release", kind)


def real_direction(rows: list[dict[str, Any]] | None, *, params: dict[str, Any], store: Any,
                   progress: bool) -> dict[str, Any]:
    """A direction unit: label the judged rows (or another run's results, final models of ``params["model"]``),
    read activations (cached in the store), difference of means, write the file + card; returns a summary."""
    from emkit.hashing import file_sha256
    from emkit.interp import GroupThresholds, Labels, compute_direction, save_direction

    source: dict[str, Any] = {"rows_from": "this run", "condition": params["condition"]}
    if rows is None:
        from emkit.analysis import load_results

        df = load_results(params["results"])
        where = df["model"] == params["model"]
        if params["condition"] is not None:
            where &= df["condition"] == params["condition"]
        if "checkpoint_step" in df.columns:
            where &= df["checkpoint_step"].isna()
        if not where.any():
            raise EmkitError(f"direction {params['name']}: {params['results']} has no final-model rows of model "
                             f"{params['model']!r}" + (f" and condition {params['condition']!r}"
                                                       if params["condition"] else ""),
                             hint=f"conditions there: {', '.join(sorted(set(df['condition'])))}; models: "
                                  f"{', '.join(sorted(set(df['model'])))}")
        rows = df[where].to_dict("records")
        source = {"rows_from": params["results"], "sha256": file_sha256(params["results"]),
                  "condition": params["condition"]}
    labels = params["labels"]
    direction = compute_direction(
        rows, labels=Labels(misaligned=GroupThresholds(**labels["misaligned"]),
                            aligned=GroupThresholds(**labels["aligned"]), min_per_group=labels["min_per_group"]),
        layers=params["layers"], row_adapters=params["row_adapters"], store=store, progress=progress,
        backend_options=params["backend_options"], name=params["name"], source=source)
    path = save_direction(direction, params["path"])
    card = direction.card
    best = card["best_layer"]
    cv = card["auroc_cv"][card["layers"].index(best)]
    return {"path": str(path), "sha256": file_sha256(path), "best_layer": best, "counts": card["counts"],
            "auroc_cv": card["auroc_cv"], "norms": card["norms"], "layers": card["layers"],
            "summary": f"{card['counts']['misaligned']} misaligned vs {card['counts']['aligned']} aligned answers; "
                       f"best layer {best} (cross-fitted AUROC {cv}) -> {path}"}


def real_judge_names() -> list[str]:
    from emkit.judge import list_judges

    return list(list_judges())


def real_backend_names() -> list[str]:
    from emkit.generate import BACKENDS

    return list(BACKENDS)


def real_train_model_identity(model: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The base weights' identity for a local training run (a folder's file hashes, a hub commit); None for a
    packaged name (the registry pins its GGUF by name; leaving it out keeps earlier runs' training keys) and for
    the openai backend (the model is a name on OpenAI's side)."""
    from emkit.models import PACKAGED, model_identity

    if settings.get("backend", "local") != "local" or model in PACKAGED:
        return None
    return model_identity(model, strict=False)


def real_sample_identity(model: str, backend: str, backend_options: dict[str, Any]) -> dict[str, Any]:
    """What identifies the sampled model besides its name, as far as it is known before sampling: for local
    backends the weights (packaged pin, folder file hashes and chat template, hub commit) and a custom chat
    template's text; for the openai backend the server URL (the per-sample keys add what /v1/models reports)."""
    import os

    options = backend_options or {}
    if backend in ("hf", "vllm"):
        from emkit.generate._hf import _read_template
        from emkit.models import model_identity
        from emkit.models._identity import content_sha

        template = _read_template(options.get("chat_template"))
        return {"model": model_identity(model, strict=False),
                "chat_template": None if template is None else content_sha(template)}
    if backend == "openai":
        url = (options.get("base_url") or os.environ.get("EMKIT_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
               or "https://api.openai.com/v1")
        return {"base_url": url.rstrip("/")}
    return {}


def real_judge_identity(judges: list[str], options: dict[str, Any]) -> dict[str, Any]:
    from emkit.judge import judges_identity

    return judges_identity(judges, options or None)


def real_preflight(spec: Any) -> None:
    """Before a run starts: every local model can be had here (a hub id is cached or downloadable: its commit
    resolves) and every judge can work (e.g. the logprob judge has its API key)."""
    from emkit.judge import judges_identity
    from emkit.models import model_identity

    local_training = any(c.trained and {**spec.training, **c.train}.get("backend", "local") == "local"
                         for c in spec.conditions.values())
    if spec.evaluation.backend in ("hf", "vllm") or local_training:
        for model in spec.models:
            model_identity(model)
    judges_identity(list(spec.judges.names), spec.judges.options or None, check=True)


def default_stages() -> Stages:
    """The real stage packages (each imported only when its call runs)."""
    return Stages(
        dataset_info=real_dataset_info, build_synthetic=real_build_synthetic,
        train_settings=real_train_settings, train_steps=real_train_steps, train=real_train,
        load_suite=real_load_suite, expand=real_expand, sample=real_sample, judge=real_judge,
        report=real_report, summarize=real_summarize, build_numbers=real_build_numbers,
        judge_names=real_judge_names, backend_names=real_backend_names,
        train_model_identity=real_train_model_identity, sample_identity=real_sample_identity,
        judge_identity=real_judge_identity, preflight=real_preflight, release=real_release,
        direction=real_direction,
    )


def stages_from_env() -> Stages:
    """``EMKIT_STAGES=module:factory`` when set (custom pipelines, tests), else the real stages."""
    ref = os.environ.get("EMKIT_STAGES", "").strip()
    if not ref:
        return default_stages()
    module_name, _, attr = ref.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr or "stages")
    except (ImportError, AttributeError) as exc:
        raise EmkitError(f"EMKIT_STAGES={ref!r} cannot be loaded: {exc}",
                         hint="set it to 'module:factory' importable from PYTHONPATH, or unset it") from exc
    stages = factory()
    if not isinstance(stages, Stages):
        raise EmkitError(f"EMKIT_STAGES={ref!r} returned {type(stages).__name__}, not emkit.experiment.Stages")
    return stages


def as_dict(obj: Any) -> dict[str, Any]:
    """A prompt (dataclass, pydantic model or dict) as a plain dict, for hashing and rows."""
    if isinstance(obj, dict):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"cannot turn {type(obj).__name__} into a dict")
