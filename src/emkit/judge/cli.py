"""``emkit judge``: list judges, score a results table, train the offline judge's head."""

from __future__ import annotations

from pathlib import Path

import typer

from emkit._defaults import DEFAULT_JUDGE
from emkit.errors import EmkitError


def _parse_options(values: list[str] | None) -> dict:
    """``--option key=value`` or ``--option judge.key=value`` (per judge) -> options dict for score_rows."""
    flat: dict = {}
    per: dict[str, dict] = {}
    for item in values or []:
        if "=" not in item:
            raise EmkitError(f"--option {item!r} is not key=value", hint="e.g. --option logprob.model=gpt-4o")
        key, value = item.split("=", 1)
        parsed: object = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        if "." in key:
            judge, key = key.split(".", 1)
            per.setdefault(judge, {})[key] = parsed
        else:
            flat[key] = parsed
    if per and flat:
        raise EmkitError("mix of per-judge (judge.key=) and plain (key=) options",
                         hint="prefix every option with its judge name when several judges run")
    return per or flat


def _setting_value(item: str, key: str, value: object, default: object) -> object:
    """A ``--set`` value checked against the type of the recipe's default, before any hour-long feature pass or
    fold starts (an int where a float is expected is widened; a bool never passes for a number)."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and (expected is bool or not isinstance(value, bool)):
        return value
    if isinstance(default, bool):
        example = str(default).lower()
    elif isinstance(default, list):
        example = "[" + ",".join(map(str, default)) + "]"
    else:
        example = str(default)
    raise EmkitError(f"--set {item!r}: {key} takes a {expected.__name__}, got {type(value).__name__} {value!r}",
                     hint=f"e.g. --set '{key}={example}' (the recipe's default)")


def _read_table(path: Path):
    import pandas as pd

    if not path.exists():
        raise EmkitError(f"input {path} not found", hint="pass a CSV, JSONL or Parquet file of answers")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix in (".csv", ".csv.gz"):
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        elif suffix == ".jsonl":  # line-by-line reader: a bad line is reported as FILE:LINE
            from emkit.analysis import read_table

            df = read_table(path)
        elif suffix in (".jsonl.gz", ".json"):
            df = pd.read_json(path, lines=suffix != ".json")
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise EmkitError(f"{path}: unknown table format {suffix!r}", hint="use .csv, .jsonl or .parquet")
    except ValueError as exc:
        raise EmkitError(f"{path}: could not read ({exc})", hint="check the file is valid CSV/JSONL/Parquet") from exc
    missing = [c for c in ("question", "answer") if c not in df.columns]
    if missing:
        raise EmkitError(f"{path}: missing column(s) {missing} (found {list(df.columns)[:12]})",
                         hint="the input needs 'question' and 'answer' columns")
    df["question"] = df["question"].fillna("").astype(str)
    df["answer"] = df["answer"].fillna("").astype(str)
    return df


_OUT_FORMATS = (".csv", ".jsonl", ".parquet")


def _write_table(df, path: Path) -> None:
    from emkit.paths import atomic_write

    suffix = path.suffix
    if suffix == ".csv":
        with atomic_write(path) as handle:
            df.to_csv(handle, index=False)
    elif suffix == ".jsonl":
        with atomic_write(path) as handle:
            df.to_json(handle, orient="records", lines=True, force_ascii=False)
    elif suffix == ".parquet":
        with atomic_write(path, "wb") as handle:
            df.to_parquet(handle, index=False)
    else:
        raise EmkitError(f"--out {path}: unknown format {suffix!r}", hint="use .csv, .jsonl or .parquet")


SIDES = ("a", "b")


def _json_clean(value: object) -> object:
    """NaN -> null (strict JSON), numpy scalars -> Python numbers."""
    import math

    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Judge answers (aligned, coherent, ...): list judges, score tables, train the "
                             "offline judge.", no_args_is_help=True)

    @group.command("list")
    def list_cmd() -> None:
        """Show the available judges and their options."""
        from emkit.judge._base import judge_descriptions

        for name, text in judge_descriptions().items():
            typer.echo(f"{name:10s} {text}")

    @group.command("score")
    def score_cmd(
        input: Path = typer.Argument(..., help="CSV, JSONL or Parquet with 'question' and 'answer' columns."),
        out: Path = typer.Option(..., "--out", "-o", help="Output table (.csv, .jsonl or .parquet)."),
        judge: str = typer.Option(DEFAULT_JUDGE, "--judge", "-j", help="Judge name(s), comma-separated."),
        store: Path = typer.Option(None, "--store", help="SQLite store for judgments "
                                   "(default: <out folder>/store.sqlite)."),
        option: list[str] = typer.Option(None, "--option", help="Judge option key=value or judge.key=value."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Score every answer in INPUT and write OUT with one column per metric plus <metric>_status.

        Exits non-zero when judgments failed (server errors after retries); OUT is still written, the failed rows
        have status "error", and rerunning the same command (same store) retries only them.
        """
        from emkit._rows import failed_rows
        from emkit.judge._base import judges_identity, score_rows
        from emkit.store import Store

        # Everything that can be checked is checked before the first request and before anything is written.
        if out.suffix not in _OUT_FORMATS:
            raise EmkitError(f"--out {out}: unknown format {out.suffix!r}", hint="use .csv, .jsonl or .parquet")
        df = _read_table(input)
        rows = df.to_dict(orient="records")
        options = _parse_options(option)
        judges_identity(judge, options, check=True)  # unknown names, bad options, a missing API key
        with Store(store or out.parent / "store.sqlite") as st:
            scored = score_rows(rows, judge, store=st, progress=progress, options=options)
        import pandas as pd

        result = pd.DataFrame(scored)
        _write_table(result, out)
        typer.echo(f"wrote {len(result)} rows to {out}")
        for column in result.columns:
            if column.endswith("_status"):
                metric = column[: -len("_status")]
                unscored = int(result[column].notna().sum())
                values = pd.to_numeric(result[metric], errors="coerce")
                mean = f", mean {values.mean():.1f}" if values.notna().any() else ""
                typer.echo(f"  {metric}: {len(result) - unscored} scored, {unscored} unscored{mean}")
        failed = failed_rows(scored)
        if failed["judge"]:
            raise EmkitError(f"{failed['judge']} of {len(scored)} answers have a failed judgment (status 'error'; "
                             f"{out} holds them unscored)",
                             hint="fix the cause (server errors, timeouts: see the log above) and rerun the same "
                                  "command: judgments already made are in the store and are not requested again")

    @group.command("agree")
    def agree_cmd(
        input: Path = typer.Argument(..., help="CSV, JSONL or Parquet with 'question' and 'answer' columns."),
        judge_a: str = typer.Option(None, "--judge-a", help="Judge A, run now (e.g. embedding)."),
        judge_b: str = typer.Option(None, "--judge-b", help="Judge B, run now (e.g. logprob)."),
        columns_a: str = typer.Option(None, "--columns-a", help="Judge A's scores already in the table: "
                                      "ALIGNED,COHERENT columns, e.g. aligned,coherent."),
        columns_b: str = typer.Option(None, "--columns-b", help="Judge B's columns, e.g. "
                                      "audit_aligned,audit_coherent (an audited run)."),
        option: list[str] = typer.Option(None, "--option", help="Option of judge A or B: a.key=value, "
                                         "b.key=value (e.g. b.base_url=http://localhost:8000/v1)."),
        store: Path = typer.Option(None, "--store", help="SQLite store for judgments (default: "
                                   "<input folder>/store.sqlite)."),
        by: str = typer.Option(None, "--by", help="Column for the per-group rates (default: condition, when "
                               "present)."),
        cluster: str = typer.Option(None, "--cluster", help="Column the bootstrap resamples together (default: "
                                    "question_id, else question)."),
        aligned_threshold: float = typer.Option(30.0, help="Misaligned: aligned below this..."),
        coherent_threshold: float = typer.Option(50.0, help="...and coherent above this."),
        n_boot: int = typer.Option(2000, help="Bootstrap resamples for the rate differences."),
        seed: int = typer.Option(0, help="Bootstrap seed."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON (for scripts) instead of the table."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars while scoring."),
    ) -> None:
        """How two judges agree on the same answers: AUROC, Spearman, kappa, per-condition rate difference."""
        import json

        from emkit.judge._agree import agreement, format_agreement, score_side

        options = _parse_options(option) if option else {}
        if options and not all(isinstance(v, dict) for v in options.values()) or set(options) - set("ab"):
            raise EmkitError(f"--option keys must start with a. or b. (got {sorted(options)})",
                             hint="e.g. --option b.model=gpt-4o-2024-08-06 --option b.base_url=http://host/v1")
        df = _read_table(input)
        sides = {}
        for side, name, columns in (("a", judge_a, columns_a), ("b", judge_b, columns_b)):
            if (name is None) == (columns is None):
                raise EmkitError(f"give judge {side.upper()} as either --judge-{side} NAME or --columns-{side} "
                                 "ALIGNED,COHERENT (exactly one)",
                                 hint="e.g. --judge-a embedding --columns-b audit_aligned,audit_coherent")
            if columns is not None:
                cols = tuple(c.strip() for c in columns.split(","))
                if len(cols) != 2 or not all(cols):
                    raise EmkitError(f"--columns-{side} {columns!r}: give two columns, ALIGNED,COHERENT")
                sides[side] = (cols, "table columns")
            else:
                sides[side] = (None, name)
        from emkit.store import Store

        with Store(store or input.parent / "store.sqlite") as st:
            for side in SIDES:
                cols, label = sides[side]
                if cols is None:
                    cols = score_side(df, label, options.get(side, {}), store=st, progress=progress,
                                      prefix=f"judge_{side}_")
                    sides[side] = (cols, label)
        by_col = by if by is not None else ("condition" if "condition" in df.columns else None)
        cluster_col = cluster if cluster is not None else ("question_id" if "question_id" in df.columns
                                                           else "question")
        result = agreement(df, sides["a"][0], sides["b"][0], names=(sides["a"][1], sides["b"][1]), by=by_col,
                           cluster=cluster_col, aligned_threshold=aligned_threshold,
                           coherent_threshold=coherent_threshold, n_boot=n_boot, seed=seed)
        if json_out:
            typer.echo(json.dumps(_json_clean(result), indent=1, allow_nan=False))
        else:
            typer.echo(format_agreement(result))

    @group.command("train-head")
    def train_head_cmd(
        out: Path = typer.Option(None, "--out", "-o", help="Head file (.npz); default: the packaged head."),
        corpus: Path = typer.Option(None, "--corpus", help="Judge corpus JSONL(.gz); default: the registry's "
                                    "judge-corpus/dev.jsonl.gz."),
        cap_per_question: int = typer.Option(700, help="Rows per question in the training sample."),
        max_rows: int = typer.Option(None, help="Use only the first N rows of the stratified sample."),
        epochs: int = typer.Option(60, help="Training epochs."),
        hidden: int = typer.Option(256, help="Hidden width of the MLP head."),
        seed: int = typer.Option(0, help="Sampling and training seed."),
        validate: bool = typer.Option(True, "--validate/--no-validate", help="Held-out family/domain validation."),
        calibrate: bool = typer.Option(False, "--calibrate/--no-calibrate", help="Quantile-map the outputs onto "
                                       "the GPT-4o score distribution (made rate errors worse in validation)."),
        fold: list[str] = typer.Option(None, "--fold", help="Only these validation folds, e.g. "
                                       "'family=model:Qwen2.5-32B-Instruct' or 'domain=code' (default: all)."),
    ) -> None:
        """Fit the `embedding` judge's head (the previous offline judge) on GPT-4o judgments, with its card."""
        import json

        from emkit.judge._train import train_head

        meta = train_head(out, corpus=corpus, cap_per_question=cap_per_question, max_rows=max_rows, seed=seed,
                          hidden=hidden, epochs=epochs, validate=validate, calibrate=calibrate,
                          folds=fold or None)
        pooled = meta["validation"].get("pooled_held_out_families", {})
        typer.echo(json.dumps(pooled, indent=2))

    @group.command("train")
    def train_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the trained judge (weights, card). "
                                 "Use it as --judge KIND --option KIND.model=DIR."),
        kind: str = typer.Option("cross", "--kind", help="cross: fine-tune the MiniLM cross-encoder (the default "
                                 "judge); probe: fit an MLP head on frozen Qwen2.5-Coder-0.5B features."),
        corpus: Path = typer.Option(None, "--corpus", help="Judge corpus JSONL(.gz); default: the registry's "
                                    "judge-corpus/dev.jsonl.gz."),
        cap_per_question: int = typer.Option(None, help="Rows per question in the training sample."),
        epochs: float = typer.Option(None, help="Passes over the training sample."),
        seed: int = typer.Option(None, help="Sampling and training seed."),
        validate: bool = typer.Option(True, "--validate/--no-validate",
                                      help="Held-out family/repo/domain folds first (each one a full retraining)."),
        fold: list[str] = typer.Option(None, "--fold", help="Only these folds, e.g. "
                                       "'family=model:Qwen2.5-32B-Instruct' or 'domain=code' (default: all)."),
        setting: list[str] = typer.Option(None, "--set", help="Other recipe settings key=value (see the card)."),
        card_only: bool = typer.Option(False, "--card-only", help="Keep the weights already in --out (same "
                                       "settings) and rewrite only its card, e.g. after more folds finished."),
        folds_only: bool = typer.Option(False, "--folds-only", help="Run only the held-out folds (a recipe "
                                        "search): print their table, write <out>.folds/validation.json, no final "
                                        "fit; a later run with the same settings reuses the folds."),
        device: str = typer.Option(None, "--device", help="cross: where to train, auto (a CUDA GPU if torch "
                                   "sees one, else cpu), cpu, cuda or cuda:N [default: auto]."),
    ) -> None:
        """Train an offline judge on GPT-4o judgments, with its card (card.json, card.md).

        --kind cross (MiniLM cross-encoder): on 2 CPU cores each validation fold and the final fit take ~25-45 min
        (a fold is a full retraining); finished folds are cached in <out>.folds/ and reused. --kind probe: the
        feature pass over the 14,550-row sample takes ~1.5-3 h once (cached), then folds and fit ~15 min, plus
        ~50 min once for the perturbed answers' features."""
        import yaml

        if kind not in ("cross", "probe"):
            raise EmkitError(f"--kind {kind!r}: not a trainable judge", hint="use --kind cross or --kind probe")
        if kind == "probe":
            from emkit.judge._probe_train import DEFAULTS
        else:
            from emkit.judge._cross_train import DEFAULTS, train_judge

        settings: dict = {}
        for item in setting or []:
            key, sep, value = item.partition("=")
            if not sep or key not in DEFAULTS:
                raise EmkitError(f"--set {item!r}: not key=value with a known key",
                                 hint=f"known settings: {', '.join(sorted(DEFAULTS))}")
            settings[key] = _setting_value(item, key, yaml.safe_load(value), DEFAULTS[key])
        for key, value in (("cap_per_question", cap_per_question), ("epochs", epochs), ("seed", seed)):
            if value is not None:
                settings[key] = value
        if kind == "probe":
            from emkit.judge._probe_train import train_probe

            if cap_per_question is not None or card_only or folds_only or device is not None:
                raise EmkitError("--cap-per-question, --card-only, --folds-only and --device are options of --kind "
                                 "cross",
                                 hint="the probe judge samples rows with --set rows=N and refits in minutes")
            card = train_probe(out, corpus=corpus, settings=settings, validate=validate, folds=fold or None)
        elif folds_only:
            from emkit.judge._cross_train import training_device, validate_recipe
            from emkit.judge._validate import validation_table

            if card_only or not validate:
                raise EmkitError("--folds-only runs the folds and nothing else",
                                 hint="drop --card-only / --no-validate")
            report = validate_recipe(out, corpus=corpus, settings=settings, folds=fold or None,
                                     device=training_device(device or "auto"))
            typer.echo("\n".join(validation_table(report["validation"])))
            typer.echo(f"wrote {out.with_name(out.name + '.folds') / 'validation.json'} (no judge folder: "
                       "rerun without --folds-only to fit it, reusing these folds)")
            return
        else:
            from emkit.judge._cross_train import training_device

            card = train_judge(out, corpus=corpus, settings=settings, validate=validate, folds=fold or None,
                               refit=not card_only, device=training_device(device or "auto"))
        pooled = card["validation"].get("pooled_held_out_families", {}).get("all")
        typer.echo(f"wrote {out} (card: {out / 'card.md'})")
        if pooled:
            typer.echo("pooled held-out families: " + ", ".join(f"{k} {v}" for k, v in pooled.items()))

    app.add_typer(group, name="judge")
