"""Prediction-powered rates: a cheap judge on every answer, a gold judge on a random audit subsample.

The estimators of Angelopoulos, Bates, Fannjiang, Jordan, Zrnic 2023 ("Prediction-powered inference", Science)
with the power tuning of Angelopoulos, Duchi, Zrnic 2023 ("PPI++: Efficient prediction-powered inference"),
written for the one estimand emkit needs: a rate among *scored* answers. numpy/scipy only.

Setting. N answers; the cheap judge (e.g. the offline ``embedding`` judge) labels all of them, the gold judge
(e.g. ``logprob`` with GPT-4o) a random subset L of n (Bernoulli sampling, independent of the answers). Labels are
1 (event, e.g. misaligned), 0, or NaN (unscored: CODE, REFUSAL, low numeric mass). The estimand is the gold judge's
rate on the answer distribution, with the paper's denominator: theta = E[S Y] / E[S], S = "the gold judge
scored it". theta solves E[S (Y - theta)] = 0, an M-estimation problem, so PPI++ applies with the gradient
g = S (Y - theta) and its prediction g^ = S^ (Y^ - theta) from the cheap judge (S^, Y^ its scored flag and label):

    theta_lam = [lam * mean_U(S^Y^) + mean_L(SY - lam S^Y^)] / [lam * mean_U(S^) + mean_L(S - lam S^)]

U = the unaudited rows (disjoint from L, so the two means are independent as in the papers). lam = 0 is the
gold-only ("classical") ratio estimate, lam = 1 plain PPI; PPI++ picks lam = Cov_L(g, g^) / ((1 + n/|U|) Var(g^)),
the variance-minimising value, clipped to [0, 1] as ``ppi_py`` does, but cross-fitted: the audit is split into 5
folds and each fold's rows get the lam estimated on the other four (its ``lam`` is then a vector over L, and U
gets their mean). Estimated on the rows it weights, lam correlates with their rectifier and biases the estimate
by O(1/n): -0.24 points in the simulation of tests/test_analysis_ppi.py (~200 audited answers), -0.3 to -0.5 on
real GPT-4o judgments (benchmarks/audited_rates.py, ~120); cross-fitted, +0.01 +- 0.05, at the same width.
For any lam the estimate is consistent for theta however wrong the cheap judge is: the gold labels on L correct
the cheap judge's errors on average (for a plain mean with a fixed or cross-fitted lam it is exactly unbiased; the
ratio adds a bias of order 1/n that the tests do not detect).

Unscored rows, explicitly:
- the gold judge did not score an audited row (CODE, REFUSAL, ...): S = 0. The row stays in L and in the
  denominator's estimate: by the paper's definition it is neither misaligned nor aligned;
- the cheap judge did not score a row: S^ = 0, its prediction is "unscored". Nothing is dropped, so the estimand
  is unchanged; where the cheap judge skips answers the gold judge scores, the rectifier on L corrects for it;
- an audit that failed (API error after retries) is no gold label: callers pass such rows as *unaudited*. That is
  valid when failures are unrelated to the answers (a content filter that rejects harmful answers would not be:
  callers report the count).

Interval: the CLT interval theta +- z * se with se^2 = [lam^2 Var_U(g^)/|U| + Var_L(g - lam g^)/n] / H^2,
H = the denominator above (the Hessian of the M-estimation problem), gradients at the final estimate.
Clustered answers (the ~100 answers to one question share that question's effect, so they are not independent):
with ``clusters`` (e.g. question ids) the cluster-robust sandwich is computed too, the row contributions summed per
cluster, the two means' shared-cluster covariance included, a C/(C-1) correction, and t with C-1 degrees of
freedom; the wider of the two intervals is reported, as the rest of ``emkit.analysis`` does (clustering can
only add uncertainty). It assumes the clusters are independent draws (questions as a sample of questions).
Both are normal approximations: with fewer than ~10 audited events the interval is too narrow; audit more.
When the audit holds no event at all (or only events), the interval is widened to contain the Wilson interval of
the audited gold labels alone: the CLT would otherwise give a zero-width interval.
The interval is clipped to [0, 1] (that keeps its coverage) and so is ``rate``; ``estimate`` is the unclipped value.

Difference of two rates (two conditions, independent samples): theta_A - theta_B, each with its own lam; the
variances add, or, with clusters, the per-cluster contributions of A and B are paired by cluster label (the same
question asked of both models), like the paired cluster bootstrap of ``compare_rates``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy import stats

from emkit.analysis._stats import wilson
from emkit.errors import EmkitError

# Folds of the audit for estimating lam (see _Fit._crossfit_lambdas): each fold's lam comes from the other 4/5.
CROSSFIT_FOLDS = 5


@dataclass(frozen=True)
class AuditSample:
    """One cell's rows: ``gold`` and ``cheap`` labels (1, 0, NaN = unscored; values in [0, 1] are allowed for a
    cheap judge's probabilities), ``audited`` (True where ``gold`` holds the gold judge's label; ``gold`` is
    ignored elsewhere) and optional ``clusters`` (one label per row, e.g. the question id)."""

    gold: np.ndarray
    cheap: np.ndarray
    audited: np.ndarray
    clusters: np.ndarray | None = None
    # Integer cluster codes and their labels, made once (labels compared as text, so 3 and "3" are one cluster).
    _codes: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _labels: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        gold = np.asarray(self.gold, dtype=float)
        cheap = np.asarray(self.cheap, dtype=float)
        audited = np.asarray(self.audited)
        if audited.dtype != bool:
            raise EmkitError(f"audited must be a boolean array, got dtype {audited.dtype}",
                             hint="pass a mask: True where the gold judge labelled the row")
        n = len(cheap)
        if gold.shape != (n,) or audited.shape != (n,) or cheap.ndim != 1:
            raise EmkitError(f"gold {gold.shape}, cheap {cheap.shape} and audited {audited.shape} must be 1-D "
                             "arrays of the same length (one entry per answer)")
        for name, values in (("gold", gold[audited]), ("cheap", cheap)):
            finite = values[~np.isnan(values)]
            if len(finite) and (finite.min() < 0 or finite.max() > 1):
                raise EmkitError(f"{name} labels must lie in [0, 1] (NaN = unscored); got {finite.min()}.."
                                 f"{finite.max()}", hint="pass event labels (1/0), not 0..100 scores")
        object.__setattr__(self, "gold", gold)
        object.__setattr__(self, "cheap", cheap)
        object.__setattr__(self, "audited", audited)
        if self.clusters is not None:
            clusters = np.asarray(self.clusters)
            if clusters.shape != (n,):
                raise EmkitError(f"clusters has shape {clusters.shape}, expected ({n},) (one label per answer)")
            object.__setattr__(self, "clusters", clusters)
            labels, codes = np.unique(clusters.astype(str), return_inverse=True)
            object.__setattr__(self, "_labels", labels)
            object.__setattr__(self, "_codes", codes)


@dataclass(frozen=True)
class PPIRate:
    """A prediction-powered rate. Rates are fractions in 0..1; ``n_*`` count rows."""

    rate: float  # point estimate clipped to [0, 1]
    ci_low: float
    ci_high: float
    se: float  # standard error of the reported interval's method
    lam: float  # power-tuning parameter (0 = gold only, 1 = plain PPI; mean over the cross-fitting folds)
    estimate: float  # unclipped point estimate
    cheap_rate: float  # the cheap judge's own rate on all rows (what you would report without an audit)
    gold_rate: float  # the gold judge's rate on the audited rows alone
    n: int  # rows
    n_audited: int  # rows with a gold label (scored or unscored)
    n_audit_scored: int  # audited rows the gold judge scored
    n_audit_hits: int  # audited rows the gold judge labelled 1
    n_clusters: int  # distinct clusters (0 without clusters)
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else 0.0


def _var(x: np.ndarray) -> float:
    return float(x.var(ddof=1)) if len(x) >= 2 else 0.0


class _Fit:
    """The pieces of one sample's estimate at a given lam (shared by the rate and the difference)."""

    def __init__(self, s: AuditSample, lam: float | None) -> None:
        self.sample = s
        L, U = s.audited, ~s.audited
        self.n, self.n_u = int(L.sum()), int(U.sum())
        gold = s.gold[L]
        self.gs = (~np.isnan(gold)).astype(float)  # S on L
        self.gy = np.nan_to_num(gold) * self.gs  # S*Y on L
        cs_all = (~np.isnan(s.cheap)).astype(float)
        cy_all = np.nan_to_num(s.cheap) * cs_all
        self.cs_l, self.cy_l = cs_all[L], cy_all[L]
        self.cs_u, self.cy_u = cs_all[U], cy_all[U]
        self.cheap_rate = float(cy_all.sum() / cs_all.sum()) if cs_all.sum() else math.nan
        if lam is not None and not 0.0 <= lam <= 1.0:
            raise EmkitError(f"lam={lam} is outside [0, 1]", hint="lam=0: gold only, lam=1: plain PPI, None: tuned")
        if self.n_u < 2 or self.n < 2:
            # no unaudited part to lean on (and no variance for it): the gold-only estimate
            self.lam_l = np.zeros(self.n)
        elif lam is None:
            self.lam_l = self._crossfit_lambdas()
        else:
            self.lam_l = np.full(self.n, float(lam))
        # lam on the unaudited rows: the mean of the audited rows' lams (each fold weighted by its size)
        self.lam = float(self.lam_l.mean()) if self.n else 0.0
        self.theta, self.hessian = self._point(self.lam_l, self.lam)

    def _point(self, lam_l: np.ndarray | float, lam_u: float) -> tuple[float, float]:
        num = lam_u * _mean(self.cy_u) + _mean(self.gy - lam_l * self.cy_l)
        den = lam_u * _mean(self.cs_u) + _mean(self.gs - lam_l * self.cs_l)
        if self.n == 0 or den <= 1e-12:
            return math.nan, den
        return num / den, den

    def grads(self, theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """g on L, g^ on L, g^ on U at theta."""
        # S (Y - theta) = SY - theta S: zero on unscored rows, whatever theta is.
        return self.gy - theta * self.gs, self.cy_l - theta * self.cs_l, self.cy_u - theta * self.cs_u

    def _crossfit_lambdas(self) -> np.ndarray:
        """PPI++'s lam for each audited row, estimated on the *other* folds of the audit (and nothing else).

        lam = Cov(g, g^) / ((1 + n/|U|) Var(g^)) estimated on the same rows it then weights correlates with their
        rectifier and biases the estimate by O(1/n): -0.3 to -0.5 points with ~120 audited answers on real
        GPT-4o judgments (benchmarks/audited_rates.py). Estimated on the other folds only, each fold's lam is
        independent of the rows it weights (and of U), so for a mean the estimate is exactly unbiased.
        """
        folds = np.arange(self.n) % min(CROSSFIT_FOLDS, self.n)
        out = np.zeros(self.n)
        for k in np.unique(folds):
            rest = folds != k
            gs, gy, cs, cy = self.gs[rest], self.gy[rest], self.cs_l[rest], self.cy_l[rest]
            if len(gs) < 2 or gs.sum() == 0:
                continue
            pilot = float(gy.sum() / gs.sum())  # gold-only, on these rows
            g, gh = gy - pilot * gs, cy - pilot * cs
            var_hat = _var(gh)
            if var_hat <= 0:
                continue
            cov = float(np.mean((g - g.mean()) * (gh - gh.mean())))
            out[folds == k] = np.clip(cov / ((1 + self.n / self.n_u) * var_hat), 0.0, 1.0)
        return out

    def iid_se(self) -> float:
        if self.n < 2 or not math.isfinite(self.theta):
            return math.nan
        g, gh_l, gh_u = self.grads(self.theta)
        v = self.lam ** 2 * _var(gh_u) / max(self.n_u, 1) + _var(g - self.lam_l * gh_l) / self.n
        return math.sqrt(v) / self.hessian

    def cluster_contributions(self) -> dict[Any, float]:
        """Per cluster: the sum of the rows' influence on theta (each mean centred on its own group)."""
        s = self.sample
        if s._codes is None or s._labels is None:
            raise ValueError("cluster_contributions needs a sample with clusters")
        g, gh_l, gh_u = self.grads(self.theta)
        resid = g - self.lam_l * gh_l
        psi = np.empty(len(s.cheap))
        psi[s.audited] = (resid - resid.mean()) / self.n
        if self.n_u:
            psi[~s.audited] = self.lam * (gh_u - gh_u.mean()) / self.n_u
        psi /= self.hessian
        sums = np.bincount(s._codes, weights=psi, minlength=len(s._labels))
        return dict(zip(s._labels.tolist(), sums.tolist(), strict=True))


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise EmkitError(f"confidence={confidence} must be between 0 and 1", hint="e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2)  # 1.96 for 95% (stdlib: scipy's ppf is ~100x slower)


@lru_cache(maxsize=256)
def _t(confidence: float, df: int) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def _interval(centre: float, iid_se: float, contributions: Sequence[float] | None, confidence: float,
              lo_clip: float, hi_clip: float) -> tuple[float, float, float, str, int]:
    """(low, high, se, method, n_clusters): the iid CLT interval, or the cluster one where that is wider."""
    if not math.isfinite(centre) or not math.isfinite(iid_se):
        return math.nan, math.nan, math.nan, "not enough audited rows for an interval", 0
    half, se, method = _z(confidence) * iid_se, iid_se, "PPI++ CLT (iid answers)"
    n_clusters = 0
    if contributions is not None:
        c = np.asarray(contributions, dtype=float)
        n_clusters = len(c)
        if n_clusters >= 2:
            cl_se = math.sqrt(n_clusters / (n_clusters - 1) * float(np.sum(c ** 2)))
            cl_half = _t(confidence, n_clusters - 1) * cl_se
            if cl_half > half:
                half, se = cl_half, cl_se
                method = f"PPI++ cluster-robust over {n_clusters} clusters (t, {n_clusters - 1} df)"
            else:
                method += f"; wider than cluster-robust over {n_clusters} clusters"
    return max(lo_clip, centre - half), min(hi_clip, centre + half), se, method, n_clusters


def ppi_rate(sample: AuditSample, *, lam: float | None = None, confidence: float = 0.95) -> PPIRate:
    """The prediction-powered rate of ``sample`` with its interval (PPI++: ``lam=None`` tunes lam)."""
    fit = _Fit(sample, lam)
    contributions = list(fit.cluster_contributions().values()) if (
        sample.clusters is not None and math.isfinite(fit.theta)) else None
    lo, hi, se, method, n_clusters = _interval(fit.theta, fit.iid_se(), contributions, confidence, 0.0, 1.0)
    if fit.n == 0:
        method = "no audited rows"
    elif not fit.gs.any():
        method = "the gold judge scored none of the audited rows"
    if sample.clusters is not None and not n_clusters:
        n_clusters = len(sample._labels) if sample._labels is not None else 0
    gold_scored = int(fit.gs.sum())
    hits = int(round(fit.gy.sum()))
    if gold_scored and hits in (0, gold_scored) and math.isfinite(lo):
        # No audited event (or only events): every gold gradient is 0 and the CLT interval can shrink to a point
        # ("100% [100%, 100%]" from 9 audited answers). Never claim more than the audit alone supports.
        w_lo, w_hi = wilson(hits, gold_scored, confidence)
        lo, hi = min(lo, w_lo), max(hi, w_hi)
        method += f"; widened to the Wilson interval of the audit ({hits}/{gold_scored} events)"
    return PPIRate(
        rate=float(min(1.0, max(0.0, fit.theta))) if math.isfinite(fit.theta) else math.nan,
        ci_low=lo, ci_high=hi, se=se, lam=fit.lam, estimate=fit.theta, cheap_rate=fit.cheap_rate,
        gold_rate=float(fit.gy.sum() / gold_scored) if gold_scored else math.nan, n=len(sample.cheap),
        n_audited=fit.n, n_audit_scored=gold_scored, n_audit_hits=hits,
        n_clusters=n_clusters, method=method)


def ppi_rate_diff(a: AuditSample, b: AuditSample, *, lam: float | None = None,
                  confidence: float = 0.95) -> dict[str, Any]:
    """theta_A - theta_B with its interval (independent samples; paired by cluster label when both have
    clusters). Returns ``diff``, ``ci_low``, ``ci_high``, ``se``, ``method`` and ``a``/``b`` (each side's
    :class:`PPIRate` as a dict)."""
    fa, fb = _Fit(a, lam), _Fit(b, lam)
    ra, rb = ppi_rate(a, lam=lam, confidence=confidence), ppi_rate(b, lam=lam, confidence=confidence)
    diff = fa.theta - fb.theta
    iid_se = math.sqrt(fa.iid_se() ** 2 + fb.iid_se() ** 2)
    contributions = None
    if a.clusters is not None and b.clusters is not None and math.isfinite(diff):
        ca, cb = fa.cluster_contributions(), fb.cluster_contributions()
        contributions = [ca.get(k, 0.0) - cb.get(k, 0.0) for k in sorted(set(ca) | set(cb))]
    lo, hi, se, method, _ = _interval(diff, iid_se, contributions, confidence, -1.0, 1.0)
    return {"diff": diff, "ci_low": lo, "ci_high": hi, "se": se, "method": method,
            "a": ra.to_dict(), "b": rb.to_dict()}


def audit_selection(keys: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Which rows to audit: True where sha256(seed, key) falls below ``fraction`` (a Bernoulli sample).

    A deterministic function of each row's key and the seed: a rerun, or a larger run that contains the same
    answers, picks the same rows, and the choice cannot depend on what the answer says (keys hash the prompt,
    model, sampling settings and sample index, not the text).
    """
    if not 0.0 < fraction <= 1.0:
        raise EmkitError(f"audit fraction {fraction} must be in (0, 1]", hint="e.g. 0.1 audits ~10% of the answers")
    out = np.empty(len(keys), dtype=bool)
    for i, key in enumerate(keys):
        digest = hashlib.sha256(f"emkit-audit\x00{seed}\x00{key}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") < fraction * 2.0 ** 64
    return out
