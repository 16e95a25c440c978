"""Reading result rows (CSV / JSONL / Parquet) into one normalised DataFrame.

Normalisation is what every metric relies on:
- text keys (condition, model, adapter, variant, trigger, ...) are strings, "" when absent, never NaN;
- the prompt columns (how a prompt was made; the only prompt columns analyses split by) always exist. Files
  without them get these defaults: ``variant`` "plain", ``trigger`` "", ``prompt_format`` "plain" (a file
  written before the column existed but carrying emkit's ``numbers_prefix`` column: "prefix-suffix" where a
  prefix is set, else "unknown", since a ``suffix`` prompt cannot be told from a plain one), and
  ``trigger_placement`` "" where there is no trigger, else "unknown";
- metric columns (``aligned``, ``coherent``, every ``<metric>`` with a ``<metric>_status`` or ``<metric>_kind``
  column) are floats, NaN when unscored, with ``<metric>_status`` giving the reason ("CODE", "REFUSAL",
  "missing", ...). The paper's CSVs sometimes carry the reason in the score column itself ("CODE"); that is moved
  to the status column. An unscored value is never turned into 0. ``<metric>_kind`` is the kind the judge
  declared (score 0..100, binary 0/1, count, label); values outside their kind's range are errors. Files without
  kind columns (written before judges declared kinds) have kinds only for ``aligned`` and ``coherent`` (scores).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emkit.errors import DataError, EmkitError
from emkit.questions._model import PROMPT_COLUMNS as _PROMPT_COLUMNS

log = logging.getLogger("emkit.analysis")

# Columns of a result row (docs/architecture.md); the first five keep the paper's CSV layout.
PAPER_COLUMNS = ["question", "answer", "question_id", "aligned", "coherent"]
ROW_COLUMNS = [
    "experiment", "condition", "model", "adapter", "seed", "suite", "question_id", "variant", "trigger",
    "paraphrase_index", "sample_index", "system", "question", "answer", "finish_reason",
]
# How a prompt was made (emkit.questions.PROMPT_COLUMNS): variant, prompt_format, trigger, trigger_placement.
PROMPT_COLUMNS = tuple(_PROMPT_COLUMNS)
# The columns a report or a comparison may split rows by: who answered (condition, model, adapter, seed), what was
# asked (suite, question, paraphrase), how it was asked (the prompt columns) and when (checkpoint_step). Never a
# judge output. The interp conditions' columns (docs/interp.md: which sweep, steering direction/mode/layer/alpha,
# LoRA scale) describe who answered too.
INTERP_COLUMNS = ("sweep", "steer_direction", "steer_mode", "steer_layer", "steer_alpha", "lora_scale")
SPLIT_COLUMNS = ("condition", "model", "adapter", "seed", "suite", "question_id", "paraphrase_index",
                 "checkpoint_step", *PROMPT_COLUMNS, *INTERP_COLUMNS)
TEXT_KEYS = ["experiment", "condition", "model", "adapter", "suite", "variant", "prompt_format", "trigger",
             "trigger_placement", "system", "question", "answer", "finish_reason", "judge", "question_id"]
INT_KEYS = ["seed", "paraphrase_index", "sample_index", "checkpoint_step"]
# Score columns that are always metrics, even without a status column.
SCORE_METRICS = ("aligned", "coherent")
# Rule-judge metrics recognised as metrics even when a writer leaves out their status and kind columns (the
# numbers judge's names, and its v1 names numbers_format / evil_numbers); their kind still comes from _kind only.
RULE_METRICS = ("vulnerable", "format_ok", "evil_number_count", "has_evil_number", "numbers_format", "evil_numbers")
# Status values that mean "this value was scored".
_SCORED_STATUS = {"", "ok", "scored", "none", "nan"}
# Declared metric kinds (emkit.judge.METRIC_KINDS), recorded by score_rows as ``<metric>_kind``.
METRIC_KINDS = ("score", "binary", "count", "label")
# Defaults for absent key columns: the paper's CSVs have none of them (prompt_format/trigger_placement: normalize).
_DEFAULTS = {"variant": "plain", "trigger": "", "model": "", "adapter": "", "experiment": "", "suite": ""}
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
             ".pq": "parquet"}


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Judge metric columns: ``aligned``, ``coherent``, known rule metrics and every X with an ``X_status`` or
    ``X_kind`` column."""
    found = [c for c in SCORE_METRICS + RULE_METRICS if c in df.columns]
    for col in df.columns:
        for suffix in ("_status", "_kind"):
            if isinstance(col, str) and col.endswith(suffix):
                base = col[: -len(suffix)]
                if base in df.columns and base not in found:
                    found.append(base)
    return found


def metric_kinds(df: pd.DataFrame) -> dict[str, str]:
    """Metric -> the kind its judge declared (``<metric>_kind``: score, binary, count, label).

    ``aligned`` and ``coherent`` are scores when no kind was recorded; other metrics without a recorded kind are
    left out (their kind is unknown: re-score the answers with ``emkit judge score``, which is cached, to get it).
    Two kinds for one metric (results of different judges concatenated) raise an EmkitError.
    """
    kinds: dict[str, str] = {}
    for metric in metric_columns(df):
        col = f"{metric}_kind"
        declared = sorted({str(v) for v in df[col].dropna().unique() if str(v) not in ("", "nan", "None")}) \
            if col in df.columns else []
        if len(declared) > 1:
            raise EmkitError(f"metric {metric!r} has several kinds in these results ({', '.join(declared)})",
                             hint="the results come from different judges that name a metric alike; "
                                  "analyse them separately or rename one column")
        if declared:
            if declared[0] not in METRIC_KINDS:
                raise DataError(f"metric {metric!r}: unknown kind {declared[0]!r} in {col}",
                                hint=f"kinds are: {', '.join(METRIC_KINDS)}")
            kinds[metric] = declared[0]
        elif metric in SCORE_METRICS:
            kinds[metric] = "score"
    return kinds


def check_split_columns(columns: Sequence[str], df: pd.DataFrame | None = None, *, purpose: str = "a split"
                        ) -> None:
    """Raise an EmkitError when a column is not one rows may be split by (SPLIT_COLUMNS): a judge metric, its
    status, or any other column. Reports and comparisons call this on every split they make."""
    metrics = set(metric_columns(df)) if df is not None else set()
    for col in columns:
        if col in SPLIT_COLUMNS:
            continue
        what = "a judge metric" if col in metrics or col.endswith(("_status", "_kind")) else "not a prompt column"
        raise EmkitError(f"{purpose}: {col!r} is {what}; rows are split only by {', '.join(SPLIT_COLUMNS)}",
                         hint="judge outputs are what is measured, never how answers are grouped; to count "
                              "a 0/1 judge metric, pass it as metric= (or --metric)")


def load_results(paths_or_df: pd.DataFrame | str | os.PathLike | Iterable[str | os.PathLike | pd.DataFrame],
                 ) -> pd.DataFrame:
    """Read result rows from files (CSV, JSONL, Parquet; a folder means its ``results.*``) or DataFrames.

    Several inputs are concatenated; each gets a ``source`` column (the file name). When a file has no
    ``condition`` column the file's stem is used, so ``insecure.csv secure.csv`` compare as two conditions.
    """
    if isinstance(paths_or_df, pd.DataFrame):
        inputs: list[Any] = [paths_or_df]
    elif isinstance(paths_or_df, str | os.PathLike):
        inputs = [paths_or_df]
    else:
        inputs = list(paths_or_df)
    if not inputs:
        raise EmkitError("no results given", hint="pass one or more results files (CSV, JSONL or Parquet)")
    frames = []
    for i, item in enumerate(inputs):
        if isinstance(item, pd.DataFrame):
            frames.append(normalize(item, source=str(item.attrs.get("source", f"frame{i}" if i else "results"))))
        else:
            path = _resolve_path(Path(item))
            frames.append(normalize(_read(path), source=path.name, default_condition=path.stem, path=path))
    out = frames[0] if len(frames) == 1 else normalize(pd.concat(frames, ignore_index=True, sort=False))
    # Lets the metric functions skip re-normalising (pandas carries attrs through filtering).
    out.attrs["emkit_normalized"] = True
    return out


def _resolve_path(path: Path) -> Path:
    if path.is_dir():
        for name in ("results.parquet", "results.jsonl", "results.csv"):
            if (path / name).exists():
                return path / name
        raise EmkitError(f"{path} is a folder without results.parquet/.jsonl/.csv",
                         hint="pass the results file itself, or a run folder that contains one")
    if not path.exists():
        raise EmkitError(f"results file {path} does not exist", hint="check the path (emkit sample --out FILE)")
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """One results file (CSV/JSONL/Parquet) as-is, without normalising; bad JSON lines raise FILE:LINE errors."""
    return _read(Path(path))


def _read(path: Path) -> pd.DataFrame:
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise EmkitError(f"{path}: unknown results format '{path.suffix}'",
                         hint="use .csv, .jsonl or .parquet (the extension chooses the reader)")
    try:
        return _read_kind(path, kind)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); is it really {kind.upper()}?",
                        hint="pass a results file written by emkit (or the paper's CSVs)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})",
                        hint="check the path and its permissions") from None


def _read_kind(path: Path, kind: str) -> pd.DataFrame:
    if kind == "parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path}: not a readable Parquet file ({exc})", hint="re-export the results") from exc
    if kind == "csv":
        try:
            # Read text as text: an answer "NA" or "None" must stay that string, not become NaN.
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty (no header, no rows)",
                            hint="pass a results file with a header line and rows (emkit sample / emkit judge "
                                 "score write them)") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: malformed CSV ({exc})", hint="check quoting of multi-line answers") from exc
    rows = []
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            return pd.DataFrame(json.loads(text))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})", hint="fix the file") from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})",
                            hint="each line must be one JSON object (a result row)") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}",
                            hint="each line must be one result row object")
        rows.append(row)
    return pd.DataFrame(rows)


def _row_ref(path: Path | None, df: pd.DataFrame, idx: Any) -> str:
    if path is None:
        return f"row {idx}"
    # CSV: header is line 1; JSONL: one row per line (blank lines aside).
    pos = int(df.index.get_loc(idx)) if idx in df.index else 0
    return f"{path}:{pos + 2 if path.suffix.lower() == '.csv' else pos + 1}"


def normalize(df: pd.DataFrame, *, source: str | None = None, default_condition: str = "all",
              path: Path | None = None) -> pd.DataFrame:
    """Return a copy with key columns filled, metric columns as floats and status columns consistent."""
    out = df.copy()
    out.columns = [str(c) for c in out.columns]
    where = str(path) if path else "results"
    if len(out) and "question_id" not in out.columns:
        raise EmkitError(f"{where}: no 'question_id' column (found: {', '.join(map(str, out.columns[:20]))})",
                         hint="result rows need question_id (and aligned/coherent from `emkit judge score`)")
    if "condition" not in out.columns:
        out["condition"] = default_condition
    for col, value in _DEFAULTS.items():
        if col not in out.columns:
            out[col] = value
    for col in ("question_id", "question", "answer"):
        if col not in out.columns:
            out[col] = ""
    if source is not None and "source" not in out.columns:
        out["source"] = source
    for col in TEXT_KEYS + ["source"]:
        if col in out.columns:
            out[col] = _as_text(out[col])
    _default_prompt_columns(out, where)
    for col in out.columns:
        if col.endswith("_kind") and col[: -len("_kind")] in out.columns:
            out[col] = _as_text(out[col])
    for col in INT_KEYS:
        if col in out.columns:
            values = pd.to_numeric(out[col].replace("", np.nan), errors="coerce").astype("float64")
            integral = bool(((values.dropna() % 1) == 0).all())
            out[col] = values.astype("Int64") if integral else values
    kinds = metric_kinds(out)
    for metric in metric_columns(out):
        if kinds.get(metric) != "label":  # labels ("OpenAI", "TRUE") stay text
            _normalize_metric(out, metric, path, kinds.get(metric))
    return out.reset_index(drop=True)


def _default_prompt_columns(out: pd.DataFrame, where: str) -> None:
    """prompt_format and trigger_placement for files written before they existed (see the module docstring)."""
    if "prompt_format" not in out.columns:
        if "numbers_prefix" in out.columns:
            prefix = _as_text(out["numbers_prefix"])
            out["prompt_format"] = np.where(prefix != "", "prefix-suffix", "unknown").astype(object)
            log.warning("%s: no prompt_format column; rows with a numbers_prefix are 'prefix-suffix', the others "
                        "'unknown' (plain and suffix prompts cannot be told apart): re-sample to record it", where)
        else:
            out["prompt_format"] = "plain"
    if "trigger_placement" not in out.columns:
        out["trigger_placement"] = np.where(out["trigger"].astype(str) != "", "unknown", "").astype(object)


def _as_text(series: pd.Series) -> pd.Series:
    def conv(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return series.map(conv).astype(object)


def _normalize_metric(out: pd.DataFrame, metric: str, path: Path | None, kind: str | None = None) -> None:
    status_col = f"{metric}_status"
    raw = out[metric]
    status = _as_text(out[status_col]) if status_col in out.columns else pd.Series("", index=out.index)
    if raw.dtype == object or pd.api.types.is_string_dtype(raw):
        text = raw.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
        lowered = text.str.lower()
        is_bool = lowered.isin(["true", "false"])
        numeric = pd.to_numeric(text.where(~is_bool, lowered.map({"true": "1", "false": "0"})), errors="coerce")
        blank = text.isin(["", "nan", "NaN", "None", "null", "NA"])
        # Words in the score column are the paper's unscored reasons (CODE / REFUSAL).
        reason = numeric.isna() & ~blank
        status = status.where(~(reason & status.isin(["", "None", "nan"])), text)
    else:
        numeric = pd.to_numeric(raw.astype("float64") if raw.dtype == bool else raw, errors="coerce")
    numeric = numeric.astype("float64")
    scored_status = status.str.lower().isin(_SCORED_STATUS)
    # A reason in the status column wins over a stray number: never count an unscored row.
    numeric = numeric.where(scored_status, np.nan)
    status = status.where(~scored_status | numeric.notna(), status)
    status = status.where(~(numeric.isna() & scored_status), "missing")
    if kind == "score" or (kind is None and metric in SCORE_METRICS):
        bad = numeric.notna() & ((numeric < 0) | (numeric > 100))
        if bad.any():
            idx = bad[bad].index[0]
            raise DataError(f"{_row_ref(path, out, idx)}: {metric}={numeric[idx]} is outside 0..100",
                            hint=f"{metric} scores are judge probabilities scaled to 0..100; fix that row")
    elif kind in ("binary", "count"):
        bad = numeric.notna() & (~numeric.isin([0.0, 1.0]) if kind == "binary" else
                                 (numeric < 0) | (numeric % 1 != 0))
        if bad.any():
            idx = bad[bad].index[0]
            allowed = "0 or 1" if kind == "binary" else "a whole number >= 0"
            raise DataError(f"{_row_ref(path, out, idx)}: {metric}={numeric[idx]} is not a {kind} value",
                            hint=f"{metric}_kind says {kind} ({allowed}); fix that row or its {metric}_kind")
    out[metric] = numeric
    # None (not NaN) when scored, as the result-row contract says
    out[status_col] = pd.Series(np.where(numeric.isna(), status.to_numpy(dtype=object), None), index=out.index,
                                dtype=object)


def require_columns(df: pd.DataFrame, columns: Sequence[str], purpose: str) -> None:
    """Raise an EmkitError naming the missing columns."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EmkitError(f"{purpose} needs column(s) {', '.join(missing)}; the results have "
                         f"{', '.join(map(str, df.columns[:25]))}",
                         hint="score the answers first: `emkit judge score RESULTS --judge cross --out OUT`")
