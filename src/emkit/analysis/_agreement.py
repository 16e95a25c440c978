"""Agreement between two judges on the same answers: confusion counts, Cohen's kappa, AUROC, Spearman, and the
difference of their rates with a paired cluster bootstrap. Labels are float arrays: 1, 0, NaN (unscored)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

LABELS = ("1", "0", "unscored")


def _code(labels: np.ndarray) -> np.ndarray:
    """0 = event, 1 = no event, 2 = unscored (the row/column order of :func:`confusion`)."""
    labels = np.asarray(labels, dtype=float)
    return np.where(np.isnan(labels), 2, np.where(labels > 0.5, 0, 1))


def confusion(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """3 x 3 counts: rows A = event / no event / unscored, columns B likewise."""
    table = np.zeros((3, 3), dtype=int)
    np.add.at(table, (_code(a), _code(b)), 1)
    return table.tolist()


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """(kappa, accuracy, n) of the event label over rows both judges scored (NaN when n == 0 or kappa is
    undefined because both judges gave one label only)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)
    n = int(both.sum())
    if n == 0:
        return math.nan, math.nan, 0
    x, y = a[both] > 0.5, b[both] > 0.5
    observed = float(np.mean(x == y))
    px, py = float(x.mean()), float(y.mean())
    expected = px * py + (1 - px) * (1 - py)
    kappa = (observed - expected) / (1 - expected) if expected < 1 else math.nan
    return kappa, observed, n


def auroc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, int, int]:
    """(AUROC, n, positives): how well ``scores`` rank ``labels`` == 1 above 0 (ties count half; Mann-Whitney
    U / (n1 n0)). Rows with a NaN score or label are left out; NaN when one class is empty."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    keep = ~np.isnan(scores) & ~np.isnan(labels)
    s, y = scores[keep], labels[keep] > 0.5
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan, len(s), pos
    ranks = stats.rankdata(s)
    u = float(ranks[y].sum()) - pos * (pos + 1) / 2
    return u / (pos * neg), len(s), pos


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """(Spearman's rho, n) over rows where both are finite (NaN with fewer than 3 rows or a constant side)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return math.nan, n
    return float(stats.spearmanr(x[keep], y[keep]).statistic), n


def paired_rate_diff(a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Rate of A minus rate of B on the same rows (each judge's rate among the rows it scored), with a
    percentile interval from a paired bootstrap over ``clusters`` (e.g. question ids: the answers to one
    question are resampled together, for both judges at once); over rows when there are no clusters or only one.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if clusters is None or len(np.unique(np.asarray(clusters).astype(str))) < 2:
        codes, method = np.arange(len(a)), f"paired bootstrap over {len(a)} answers"
    else:
        _, codes = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
        method = f"paired bootstrap over {codes.max() + 1} questions"
    k = int(codes.max()) + 1 if len(codes) else 0

    def sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scored = ~np.isnan(x)
        return (np.bincount(codes, weights=np.where(scored, x, 0.0), minlength=k),
                np.bincount(codes, weights=scored.astype(float), minlength=k))

    (ha, sa), (hb, sb) = sums(a), sums(b)
    out: dict[str, Any] = {"rate_a": ha.sum() / sa.sum() if sa.sum() else math.nan,
                           "rate_b": hb.sum() / sb.sum() if sb.sum() else math.nan,
                           "n_a": int(sa.sum()), "n_b": int(sb.sum())}
    out["diff"] = out["rate_a"] - out["rate_b"]
    if not math.isfinite(out["diff"]) or k < 2:
        return {**out, "ci_low": math.nan, "ci_high": math.nan, "method": "no interval (too few rows)"}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(n_boot, k))
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = ha[idx].sum(1) / sa[idx].sum(1) - hb[idx].sum(1) / sb[idx].sum(1)
    boot = boot[np.isfinite(boot)]
    lo, hi = np.percentile(boot, [50 * (1 - confidence), 100 - 50 * (1 - confidence)])
    return {**out, "ci_low": float(lo), "ci_high": float(hi), "method": method}
