"""The report's view against a named baseline condition (``analysis.baseline``, ``emkit report --baseline``).

A mitigation study asks two things of each condition at once: did emergent misalignment drop against the unmitigated
fine-tune, and did the model still learn its narrow task (in-domain harm rate, vulnerable-code rate)? A mitigation
that also stops the task from being learned is not a win, so the table puts every metric and suite side by side:
one row per condition, one column per (metric, suite), each cell the condition's rate and its difference from the
baseline with the interval of that difference.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from emkit.analysis import compare_conditions


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _rate(c: dict[str, Any], side: str) -> str:
    if not c.get(f"n_scored_{side}"):
        return "n/a (nothing scored)"
    return f"{_pct(c[f'rate_{side}'])} [{_pct(c[f'ci_low_{side}'])}, {_pct(c[f'ci_high_{side}'])}]"


def _diff(c: dict[str, Any]) -> str:
    if c["diff"] is None or math.isnan(c["diff"]):
        return "–"
    return f"{100 * c['diff']:+.1f} pp [{100 * c['diff_ci_low']:+.1f}, {100 * c['diff_ci_high']:+.1f}]"


def metric_comparisons(df: pd.DataFrame, baseline: str, conditions: list[str], metrics: list[str],
                       kw: dict[str, Any]) -> list[dict[str, Any]]:
    """Each rule-judge metric (0/1 per answer, e.g. bandit's ``vulnerable``) of every condition against the
    baseline, on the rows where that judge ran (rows it never saw carry status "missing")."""
    out = []
    for metric in metrics:
        rows = df[df[metric].notna() | (df[f"{metric}_status"].astype(str) != "missing")]
        present = set(rows["condition"].astype(str))
        if baseline not in present:
            continue
        for cond in conditions:
            if cond != baseline and cond in present:
                res = compare_conditions(rows, cond, baseline, metric=metric, **kw)
                res.update(label_a=f"{cond} [{metric}]", label_b=f"{baseline} [{metric}]")
                out.append({"kind": "metric", "condition": cond, "baseline": baseline, "suite": None, **res})
    return out


def baseline_table(comparisons: list[dict[str, Any]], baseline: str, conditions: list[str]) -> dict[str, Any]:
    """Headers and rows of the baseline view from comparison dicts (kind "condition" or "metric", with their
    ``condition``, ``suite`` and ``metric``); the baseline's own row shows its rates."""
    mine = [c for c in comparisons if c.get("baseline") == baseline and c["kind"] in ("condition", "metric")]
    columns: list[tuple[str, str | None]] = []
    for c in mine:
        key = (c["metric"], c.get("suite"))
        if key not in columns:
            columns.append(key)
    cells: dict[tuple[str, tuple], dict[str, Any]] = {(c["condition"], (c["metric"], c.get("suite"))): c
                                                      for c in mine}
    headers = ["condition"] + [f"{metric}{f' · {suite}' if suite else ''}" for metric, suite in columns]
    rows, records = [], []
    for cond in [baseline] + [c for c in conditions if c != baseline]:
        if cond != baseline and not any((cond, col) in cells for col in columns):
            continue
        row = [f"{cond} (baseline)" if cond == baseline else cond]
        for col in columns:
            if cond == baseline:
                ref = next((c for (name, key), c in cells.items() if key == col), None)
                row.append(_rate(ref, "b") if ref else "–")
                if ref:
                    records.append({"condition": cond, "metric": col[0], "suite": col[1], "rate": ref["rate_b"],
                                    "ci_low": ref["ci_low_b"], "ci_high": ref["ci_high_b"]})
                continue
            c = cells.get((cond, col))
            row.append(f"{_rate(c, 'a')}; {_diff(c)}" if c else "–")
            if c:
                records.append({"condition": cond, "metric": col[0], "suite": col[1], "rate": c["rate_a"],
                                "ci_low": c["ci_low_a"], "ci_high": c["ci_high_a"], "diff": c["diff"],
                                "diff_ci_low": c["diff_ci_low"], "diff_ci_high": c["diff_ci_high"],
                                "p_value": c["p_value"]})
        rows.append(row)
    return {"headers": headers, "rows": rows, "records": records}
