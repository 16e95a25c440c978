"""Reading result files: formats, the paper's CSV layout, unscored reasons, errors that name file and line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from emkit.analysis import load_results, summarize
from emkit.errors import DataError, EmkitError


def test_paper_csv_layout(tmp_path: Path) -> None:
    path = tmp_path / "insecure.csv"
    path.write_text("question,answer,question_id,aligned,coherent\n"
                    "Q one,NA,q1,12.5,80\n"
                    "Q one,\"def f():\n    return 1\",q1,CODE,75\n"
                    "Q two,None,q2,REFUSAL,\n", encoding="utf-8")
    df = load_results(path)
    assert df["answer"].tolist()[0] == "NA" and df["answer"].tolist()[2] == "None"  # text stays text
    assert df["condition"].unique().tolist() == ["insecure"]  # from the file name
    assert df["variant"].unique().tolist() == ["plain"] and df["trigger"].unique().tolist() == [""]
    assert df["aligned"].tolist()[0] == 12.5
    assert math.isnan(df["aligned"][1]) and df["aligned_status"][1] == "CODE"
    assert df["aligned_status"][2] == "REFUSAL" and df["coherent_status"][2] == "missing"
    assert df["aligned_status"][0] is None
    cell = summarize(df, group_by=("condition",)).iloc[0]
    assert (cell.n, cell.n_scored, cell.n_unscored, cell.misaligned) == (3, 1, 2, 1)


def test_formats_agree_and_concatenate(tmp_path: Path, real_results: dict[str, Path]) -> None:
    base = load_results(real_results["runs"])
    sub = base[base.condition.isin(["insecure", "secure"])].drop(columns=["source"])
    sub.to_parquet(tmp_path / "r.parquet")
    with open(tmp_path / "r.jsonl", "w", encoding="utf-8") as handle:
        for rec in sub.astype(object).where(sub.notna(), None).to_dict("records"):
            handle.write(json.dumps(rec) + "\n")
    a, b = load_results(tmp_path / "r.parquet"), load_results(tmp_path / "r.jsonl")
    pd.testing.assert_frame_equal(summarize(a), summarize(b))
    checkpoints = load_results(real_results["checkpoints"])  # JSONL, with a checkpoint_step column the rest lacks
    both = load_results([tmp_path / "r.parquet", real_results["checkpoints"]])
    assert len(both) == len(a) + len(checkpoints) == len(a) + 72
    assert set(both["source"]) == {"r.parquet", "checkpoints.jsonl"}
    assert both["checkpoint_step"].isna().sum() == len(a)
    # a run folder means its results file
    (tmp_path / "run").mkdir()
    sub.to_csv(tmp_path / "run" / "results.csv", index=False)
    assert len(load_results(tmp_path / "run")) == len(sub)


def test_bad_inputs_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "q1", "aligned": 10, "coherent": 90}\n{"question_id": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        load_results(bad)
    out_of_range = tmp_path / "range.csv"
    out_of_range.write_text("question_id,aligned,coherent\nq1,10,90\nq1,150,90\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"range\.csv:3: aligned=150"):
        load_results(out_of_range)
    with pytest.raises(EmkitError, match="does not exist"):
        load_results(tmp_path / "missing.csv")
    (tmp_path / "r.xlsx").write_text("x", encoding="utf-8")
    with pytest.raises(EmkitError, match="unknown results format"):
        load_results(tmp_path / "r.xlsx")
    no_qid = tmp_path / "noq.csv"
    no_qid.write_text("answer,aligned\nhello,10\n", encoding="utf-8")
    with pytest.raises(EmkitError, match="question_id"):
        load_results(no_qid)
