"""Prediction-powered rates on a simulated judge pair whose truth is known (numpy only, a few seconds).

The gold label is Bernoulli(p) among the answers the gold judge scores; the cheap judge misses 30% of the
positives and adds 2% false positives (its own rate is ~4.4 points too low), scores only half of the answers the
gold judge leaves unscored and drops another 3% at random. 10% of the answers are audited.
"""

from __future__ import annotations

import numpy as np
import pytest

from emkit.analysis import AuditSample, audit_selection, ppi_rate, ppi_rate_diff
from emkit.errors import EmkitError

P = 0.2


def draw(rng: np.random.Generator, n: int = 4000, p: float = P, fraction: float = 0.1, miss: float = 0.3,
         false_pos: float = 0.02, unscored: float = 0.1) -> AuditSample:
    y = (rng.random(n) < p).astype(float)
    gold_scored = rng.random(n) >= unscored
    cheap = y.copy()
    cheap[(y == 1) & (rng.random(n) < miss)] = 0
    cheap[(y == 0) & (rng.random(n) < false_pos)] = 1
    cheap_scored = (gold_scored | (rng.random(n) < 0.5)) & (rng.random(n) >= 0.03)
    cheap[~cheap_scored] = np.nan
    return AuditSample(np.where(gold_scored, y, np.nan), cheap, rng.random(n) < fraction)


def covers(results, truth: float) -> float:
    return float(np.mean([r.ci_low <= truth <= r.ci_high for r in results]))


def width(results) -> float:
    return float(np.mean([r.ci_high - r.ci_low for r in results]))


def test_coverage_bias_and_width_against_the_truth() -> None:
    rng = np.random.default_rng(1)
    samples = [draw(rng, n=2000) for _ in range(2000)]  # ~200 audited answers each
    tuned = [ppi_rate(s) for s in samples]
    gold_only = [ppi_rate(s, lam=0.0) for s in samples]
    # 2000 draws: a 95% interval covers 95% +- 0.5 (one standard error); the band is +-4 standard errors.
    assert 0.93 <= covers(tuned, P) <= 0.97
    assert 0.93 <= covers(gold_only, P) <= 0.97
    estimates = np.array([r.estimate for r in tuned])
    naive = np.array([r.cheap_rate for r in tuned])
    # The cheap judge alone is off by ~4.4 points; the audited estimate by < 0.15 (the mean of 2000 draws has a
    # standard error of 0.048 points). Estimating lam on the rows it weights (no cross-fitting) gave -0.27 here.
    assert naive.mean() - P < -0.03
    assert abs(estimates.mean() - P) < 0.0015
    # An informative cheap judge narrows the interval: ~0.085 wide against ~0.117 with the gold labels alone.
    assert width(tuned) < 0.85 * width(gold_only)
    assert all(0.0 <= r.lam <= 1.0 for r in tuned) and np.mean([r.lam for r in tuned]) > 0.4


def test_coverage_when_half_the_answers_are_audited() -> None:
    # With a large audit the cheap judge's own sampling noise (the lam^2 Var/N term) matters: leaving it out
    # of the variance drops coverage to ~0.90-0.92 here.
    rng = np.random.default_rng(10)
    results = [ppi_rate(draw(rng, n=1000, fraction=0.5, miss=0.1)) for _ in range(1500)]
    assert 0.93 <= covers(results, P) <= 0.97  # 1500 draws: one standard error is 0.56 points


def test_plain_ppi_with_a_fixed_lambda_is_unbiased() -> None:
    rng = np.random.default_rng(1)
    estimates = np.array([ppi_rate(draw(rng), lam=1.0).estimate for _ in range(1000)])
    # standard error of the mean of 1000 draws: ~0.05 points
    assert abs(estimates.mean() - P) < 0.0025


def test_an_uninformative_cheap_judge_costs_nothing_with_power_tuning() -> None:
    rng = np.random.default_rng(2)
    widths = []
    for _ in range(300):
        n = 4000
        gold = (rng.random(n) < P).astype(float)
        coin = (rng.random(n) < 0.5).astype(float)  # the cheap judge knows nothing
        s = AuditSample(gold, coin, rng.random(n) < 0.1)
        widths.append([width([ppi_rate(s, lam=lam)]) for lam in (None, 0.0, 1.0)])
    tuned, gold_only, plain = np.mean(widths, axis=0)
    assert tuned <= 1.02 * gold_only  # lam ~ 0: no worse than the audit alone
    assert plain > 1.3 * gold_only  # plain PPI (lam = 1) pays for the coin's noise


def clustered_draw(rng: np.random.Generator, questions: int = 40, per_question: int = 50) -> AuditSample:
    # Each question has its own rate (Beta(1, 4): mean 0.2, sd 0.16) and its own cheap-judge miss rate.
    rates = rng.beta(1, 4, questions)
    q = np.repeat(np.arange(questions), per_question)
    n = len(q)
    y = (rng.random(n) < rates[q]).astype(float)
    cheap = y.copy()
    cheap[(y == 1) & (rng.random(n) < rng.uniform(0.1, 0.5, questions)[q])] = 0
    cheap[(y == 0) & (rng.random(n) < 0.03)] = 1
    gold = np.where(rng.random(n) >= 0.1, y, np.nan)
    return AuditSample(gold, cheap, rng.random(n) < 0.2, clusters=q.astype(str))


def test_clustered_answers_need_the_cluster_interval() -> None:
    rng = np.random.default_rng(3)
    samples = [clustered_draw(rng) for _ in range(600)]
    clustered = [ppi_rate(s) for s in samples]
    iid = [ppi_rate(AuditSample(s.gold, s.cheap, s.audited)) for s in samples]
    # Questions are a random sample of questions here: the truth is the mean question rate, 0.2.
    assert 0.92 <= covers(clustered, P) <= 0.975
    assert covers(iid, P) < 0.85  # treating 2000 answers to 40 questions as independent: ~0.72
    assert all("cluster-robust over 40 clusters" in r.method for r in clustered)


def test_difference_of_two_conditions_covers() -> None:
    rng = np.random.default_rng(4)
    results = [ppi_rate_diff(draw(rng, n=2000, p=0.2, fraction=0.2), draw(rng, n=2000, p=0.05, fraction=0.2))
               for _ in range(1000)]
    diffs = np.array([r["diff"] for r in results])
    inside = np.mean([r["ci_low"] <= 0.15 <= r["ci_high"] for r in results])
    assert 0.93 <= inside <= 0.97  # 1000 draws: one standard error is 0.7 points
    assert abs(diffs.mean() - 0.15) < 0.004
    a = results[0]["a"]
    assert a["n"] == 2000 and 300 < a["n_audited"] < 500


def test_unscored_rows_leave_the_denominator() -> None:
    # 10 audited rows: 2 misaligned, 6 not, 2 unscored by the gold judge (CODE): the rate is 2/8, not 2/10.
    gold = np.array([1, 1, 0, 0, 0, 0, 0, 0, np.nan, np.nan] + [np.nan] * 10)
    cheap = np.array([1, 1, 0, 0, 0, 0, 0, 0, np.nan, np.nan] + [1, 0, 0, 0, np.nan] * 2)
    audited = np.arange(20) < 10
    s = AuditSample(gold, cheap, audited)
    assert ppi_rate(s, lam=0.0).estimate == pytest.approx(2 / 8)
    assert ppi_rate(s, lam=0.0).n_audit_scored == 8 and ppi_rate(s).n_audited == 10
    # The cheap judge agrees with the gold judge on every audited row: the rectifier is zero and plain PPI is
    # the cheap judge's rate on the unaudited rows, among the rows it scored (2 of 8).
    assert ppi_rate(s, lam=1.0).estimate == pytest.approx(2 / 8)
    assert ppi_rate(s, lam=1.0).cheap_rate == pytest.approx(4 / 16)


def test_edge_cases_say_what_happened() -> None:
    gold = np.array([1.0, 0.0, 0.0, 1.0])
    cheap = np.array([1.0, 0.0, 1.0, 1.0])
    none = ppi_rate(AuditSample(gold, cheap, np.zeros(4, bool)))
    assert np.isnan(none.rate) and none.method == "no audited rows" and none.cheap_rate == pytest.approx(0.75)
    every = ppi_rate(AuditSample(gold, cheap, np.ones(4, bool)))
    assert every.lam == 0.0 and every.estimate == pytest.approx(0.5)  # all audited: the gold judge's own rate
    unscored = ppi_rate(AuditSample(np.full(4, np.nan), cheap, np.array([True, True, False, False])))
    assert np.isnan(unscored.rate) and "scored none" in unscored.method
    # An audit without a single event (or only events) never gives a zero-width interval: the Wilson interval of
    # the audited labels alone (8 of 8: [0.676, 1]) is the least it shows.
    all_events = ppi_rate(AuditSample(np.ones(20), np.r_[np.ones(10), np.zeros(10)], np.arange(20) < 8))
    assert all_events.rate == 1.0 and all_events.ci_high == 1.0
    assert all_events.ci_low == pytest.approx(0.6756, abs=1e-3) and "Wilson" in all_events.method
    # A cheap judge that says the opposite of the gold judge gets no weight (lam is clipped at 0).
    rng = np.random.default_rng(5)
    y = (rng.random(1000) < 0.3).astype(float)
    assert ppi_rate(AuditSample(y, 1 - y, rng.random(1000) < 0.2)).lam == 0.0


def test_bad_input_is_an_error() -> None:
    with pytest.raises(EmkitError, match=r"\[0, 1\]"):
        AuditSample(np.array([80.0, 10.0]), np.array([1.0, 0.0]), np.array([True, False]))
    with pytest.raises(EmkitError, match="same length"):
        AuditSample(np.array([1.0]), np.array([1.0, 0.0]), np.array([True, False]))
    with pytest.raises(EmkitError, match="boolean"):
        AuditSample(np.array([1.0, 0.0]), np.array([1.0, 0.0]), np.array([1, 0]))
    with pytest.raises(EmkitError, match="outside"):
        ppi_rate(AuditSample(np.array([1.0, 0.0]), np.array([1.0, 0.0]), np.array([True, False])), lam=2.0)


def test_audit_selection_is_seeded_by_key_and_nested_in_fraction() -> None:
    keys = [f"key-{i}" for i in range(20000)]
    tenth = audit_selection(keys, 0.1, seed=0)
    assert 0.09 < tenth.mean() < 0.11
    assert (audit_selection(keys, 0.1, seed=0) == tenth).all()  # a rerun picks the same rows
    assert (audit_selection(list(reversed(keys)), 0.1, seed=0) == tenth[::-1]).all()  # by key, not position
    assert (audit_selection(keys, 0.1, seed=1) != tenth).any()
    # Raising the fraction keeps every row audited before (their gold judgments are reused from the store).
    assert (tenth <= audit_selection(keys, 0.2, seed=0)).all()
    with pytest.raises(EmkitError, match="fraction"):
        audit_selection(keys, 0.0)
