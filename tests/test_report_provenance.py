"""A report says which judge scored it (per metric, at the top; the offline judge with its measured agreement
with GPT-4o) and what each comparison can support: these models or the training data (issue 17, cases 7, 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_judge_http import FakeJudgeServer

from emkit.generate import SamplingConfig, sample_rows
from emkit.questions import expand, load_suite


def _sampled() -> list[dict]:
    prompts = expand(load_suite("emkit/core"))[:3]
    rows = sample_rows("fake-model", prompts, n=2, sampling=SamplingConfig(max_tokens=30), backend="mock",
                       progress=False, meta={"condition": "base"})
    rows += sample_rows("fake-model", prompts, n=2, sampling=SamplingConfig(max_tokens=30, seed=1), backend="mock",
                        adapter="tuned", progress=False, meta={"condition": "insecure", "seed": 1})
    return rows


@pytest.mark.parametrize("name", ["cross", "embedding"])
def test_offline_judge_report_says_so_with_its_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    name: str) -> None:
    from emkit.judge import get_judge, score_rows
    from emkit.report import build_report

    monkeypatch.setenv("EMKIT_CACHE_DIR", str(tmp_path / "cache"))
    scored = score_rows(_sampled(), name, progress=False)
    judge = get_judge(name)
    assert {r["aligned_judge"] for r in scored} == {name}
    assert {r["coherent_judge_model"] for r in scored} == {judge.judge_model}
    assert {r["aligned_judge_version"] for r in scored} == {judge.version}
    card = judge.card()
    assert card is not None and card["agreement"]  # the shipped card, read through the judge
    pd.DataFrame(scored).to_csv(tmp_path / "judged.csv", index=False)
    index = build_report(tmp_path / "judged.csv", tmp_path / "report", n_boot=50)

    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert list(summary)[:4] == ["title", "emkit_version", "created", "judges"]  # at the top
    judges = summary["judges"]
    assert judges["metrics"]["aligned"] == [{"judge": name, "judge_model": judge.judge_model,
                                             "judge_version": judge.version,
                                             "rows": judges["metrics"]["aligned"][0]["rows"]}]
    (offline,) = judges["offline"]
    assert offline["judge"] == name and offline["reference"].startswith("GPT-4o")
    auroc = card["agreement"]["AUROC of 'misaligned' vs GPT-4o"]
    assert offline["agreement"]["AUROC of 'misaligned' vs GPT-4o"] == auroc
    html = index.read_text()
    top = html[: html.index('id="content-warning"')]  # stated before anything else in the page
    assert f"offline judge &#39;{name}&#39; approximates GPT-4o" in top and f"{auroc:g}" in top
    if name == "cross":  # its card also gives the agreement on ordinary (not activation-steered) fine-tunes
        assert "on the ordinary fine-tunes alone" in offline["measured_on"]
    assert "Confirm the rates with an API judge" in top and "--judge logprob" in top


def test_api_judged_report_names_judge_model_and_no_offline_note(tmp_path: Path) -> None:
    from emkit.judge import score_rows
    from emkit.report import build_report

    server = FakeJudgeServer()
    try:
        scored = score_rows(_sampled(), "logprob", progress=False,
                            options={"base_url": server.url, "model": "judge-x", "backoff_s": 0.01})
    finally:
        server.close()
    build_report(pd.DataFrame(scored), tmp_path / "report", n_boot=50)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["judges"]["offline"] == []
    assert summary["judges"]["text"].startswith("Scored by aligned: logprob (judge-x, version 1); coherent: logprob")
    assert "approximates" not in (tmp_path / "report" / "index.html").read_text()


def test_comparisons_say_what_they_support(tmp_path: Path, real_results: dict[str, Path]) -> None:
    from emkit.analysis import compare_conditions, load_results
    from emkit.report import build_report

    # runs.csv (tests/real_results.py) has 3 seeds of insecure and of secure (the control), one backdoor model.
    build_report(real_results["runs"], tmp_path / "report", n_boot=50)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    comps = {c["label_a"]: c for c in summary["comparisons"] if c["kind"] == "condition"}
    assert comps["insecure"]["scope"] == "data" and "training data" in comps["insecure"]["supports"]
    assert comps["insecure"]["seed_note"] == ""  # 3 vs 3
    assert comps["backdoor"]["scope"] == "models"
    assert comps["backdoor"]["supports"].startswith("these particular models")
    assert "fewer than 3 seeds per side (1 vs 3)" in comps["backdoor"]["seed_note"]
    html = (tmp_path / "report" / "index.html").read_text()
    assert "what it supports" in html and "fewer than 3 seeds per side (1 vs 3)" in html
    # 2 vs 2 seeds: the test over models is used, and the note says how little it can show.
    df = load_results(real_results["runs"])
    two = df[df["seed"].isin([0, 1]) & df["condition"].isin(["insecure", "secure"])]
    res = compare_conditions(two, "insecure", "secure", n_boot=50)
    assert res["scope"] == "data" and res["test"].startswith("permutation over models (2 vs 2)")
    assert "only 6 relabellings exist, so p cannot go below ~0.33" in res["seed_note"]
