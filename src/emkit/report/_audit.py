"""The report's "Audited rates" section (results of a spec with ``judges.audit``): per condition the cheap judge's
rate, the audited (PPI++) rate with its 95% interval, the audit's size and the cheap-vs-gold agreement, and the
audited difference of each condition from the control. Numbers from ``emkit.analysis.audited_rates``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import pandas as pd

from emkit.analysis import audited_comparison, audited_rates, has_audit
from emkit.analysis._audit import audited_flags


def _pct(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _interval(r: dict[str, Any]) -> str:
    if r["rate"] is None or (isinstance(r["rate"], float) and math.isnan(r["rate"])):
        return "n/a"
    return f"{_pct(r['rate'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"


def audit_section(df: pd.DataFrame, *, order: Sequence[str], controls: Sequence[str], aligned_threshold: float,
                  coherent_threshold: float) -> tuple[dict[str, Any] | None, str]:
    """(summary.json block, HTML) for rows with an audit; (None, "") without one."""
    if not has_audit(df):
        return None, ""
    from jinja2 import Environment, select_autoescape

    from emkit.report._build import _jsonable, _records

    kw = {"aligned_threshold": aligned_threshold, "coherent_threshold": coherent_threshold}
    # An audit judge without aligned/coherent (e.g. a rule judge) gives no gold label for these rates.
    metrics = [m for m, cols in (("misaligned", ("audit_aligned", "audit_coherent")), ("coherent", ("audit_coherent",)))
               if all(c in df.columns for c in cols)]
    if not metrics:
        note = "the audit judge gave no aligned/coherent scores, so there are no audited rates"
        return {"skipped": note}, f'<h2 id="audited-rates">Audited rates</h2>\n<p class="note">{note}.</p>\n'
    table = audited_rates(df, by=["condition"], metrics=metrics, **kw)
    rank = {c: i for i, c in enumerate(order)}
    table = table.sort_values("condition", key=lambda s: s.map(lambda c: rank.get(c, len(rank))), kind="stable")
    conditions = [c for c in order if c in set(df["condition"])]
    control = next((c for c in controls if c in conditions), None)
    comparisons = [audited_comparison(df, c, control, **kw) for c in conditions
                   if control and c != control and "misaligned" in metrics]
    picked = audited_flags(df)
    judge = ", ".join(sorted({j for j in table["judge"] if j})) or "the cheap judge"
    audit_judge = ", ".join(sorted({j for j in table["audit_judge"] if j})) or "the audit judge"
    failed = int(table.loc[table["metric"] == "misaligned", "n_audit_failed"].sum())
    summary = {"judge": judge, "audit_judge": audit_judge, "n_answers": len(df), "n_picked": int(picked.sum()),
               "fraction_picked": float(picked.mean()) if len(df) else math.nan,
               "estimator": "PPI++ (prediction-powered, power-tuned lambda in [0, 1]); interval: the wider of the "
                            "CLT and the cluster-robust one (questions, or models when a condition has 2+)",
               "rates": _records(table), "comparisons": [_jsonable(c) for c in comparisons]}
    rows = []
    for r in summary["rates"]:
        kappa = r["agree_kappa"]
        rows.append({"condition": r["condition"], "metric": r["metric"], "cheap": _pct(r["cheap_rate"]),
                     "audited": _interval(r), "gold": _pct(r["gold_rate"]),
                     "n": f"{r['n_audited']} ({r['n_audit_scored']}) of {r['n']}",
                     "lam": "–" if r["lam"] is None else f"{r['lam']:.2f}",
                     "agreement": "–" if r["agree_accuracy"] is None else
                     f"{_pct(r['agree_accuracy'])} (κ {'–' if kappa is None else f'{kappa:.2f}'})",
                     "method": r["method"]})
    comp_rows = [{"a": c["label_a"], "b": c["label_b"], "method": c["method"],
                  "diff": "–" if c["diff"] is None or math.isnan(c["diff"]) else
                  f"{100 * c['diff']:+.1f} pp [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"}
                 for c in comparisons]
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(resources.files("emkit.report").joinpath("templates/audit.html.j2")
                               .read_text(encoding="utf-8"))
    html = template.render(judge=judge, audit_judge=audit_judge, pct=_pct(summary["fraction_picked"]),
                           n_audited=summary["n_picked"], n_failed=failed, rows=rows, comparisons=comp_rows)
    return summary, html
