"""Which judges scored a report, stated at its top: per metric the judge, judge model and judge version (from the
``<metric>_judge*`` provenance columns ``score_rows`` writes; older files only have the ``judge`` column), and for
a judge that approximates another one (the offline judge approximates GPT-4o) its measured agreement, read from
the judge's card (:meth:`emkit.judge.Judge.card`), with the advice to confirm with an API judge."""

from __future__ import annotations

from typing import Any

import pandas as pd

from emkit.analysis import metric_columns

CONFIRM = ("Confirm the rates with an API judge before quoting them: `emkit judge score results.csv --judge logprob "
           "--out judged.csv` (GPT-4o by default; --option logprob.base_url=... for another OpenAI-compatible "
           "server), then `emkit report judged.csv`")


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) or value is pd.NA else str(value)


def judges_summary(df: pd.DataFrame) -> dict[str, Any]:
    """``{"metrics": {metric: [{judge, judge_model, judge_version, rows}]}, "offline": [...], "text": str}``."""
    metrics: dict[str, list[dict[str, Any]]] = {}
    for metric in metric_columns(df):
        scored = df[pd.to_numeric(df[metric], errors="coerce").notna()]
        if f"{metric}_judge" in df.columns:
            keys = [scored[f"{metric}_judge{s}"].map(_text) if f"{metric}_judge{s}" in df.columns
                    else pd.Series("", index=scored.index) for s in ("", "_model", "_version")]
        elif "judge" in df.columns:  # files written before per-metric provenance: the judge(s) of the row
            keys = [scored["judge"].map(_text), pd.Series("", index=scored.index), pd.Series("", index=scored.index)]
        else:
            keys = [pd.Series("", index=scored.index)] * 3
        groups = pd.DataFrame({"judge": keys[0], "judge_model": keys[1], "judge_version": keys[2]})
        entries = []
        for (judge, model, version), part in groups.groupby(["judge", "judge_model", "judge_version"], sort=True):
            entries.append({"judge": judge or "unknown", "judge_model": model or None, "judge_version": version or None,
                            "rows": len(part)})
        metrics[metric] = entries
    offline = _offline(metrics)
    return {"metrics": metrics, "offline": offline, "text": _describe(metrics, offline)}


def _offline(metrics: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Cards of the judges that approximate another judge (their card says so), once per judge and model."""
    from emkit.errors import EmkitError
    from emkit.judge import get_judge, list_judges

    known = set(list_judges())
    seen: dict[tuple[str, str | None], dict[str, Any]] = {}
    for metric, entries in metrics.items():
        for entry in entries:
            name, model = entry["judge"], entry["judge_model"]
            if name not in known:
                continue
            key = (name, model)
            if key not in seen:
                try:
                    judge = get_judge(name)  # the judge with its default settings (the shipped head)
                except EmkitError:
                    continue
                try:
                    card = judge.card()
                    default_model = judge.judge_model
                finally:
                    judge.close()
                if card is None:
                    continue
                same = model is None or model == default_model
                seen[key] = {"judge": name, "judge_model": model or default_model, "metrics": [],
                             "reference": card.get("reference"),
                             "agreement": card.get("agreement") if same else {},
                             "measured_on": card.get("measured_on") if same else
                             "no card for this judge model (the card describes the shipped default)",
                             "source": card.get("source"), "advice": CONFIRM}
            if key in seen and metric not in seen[key]["metrics"]:
                seen[key]["metrics"].append(metric)
    return list(seen.values())


def _who(entry: dict[str, Any]) -> str:
    text = entry["judge"]
    if entry["judge_model"]:
        version = f", version {entry['judge_version']}" if entry["judge_version"] else ""
        text += f" ({entry['judge_model']}{version})"
    return text


def _describe(metrics: dict[str, list[dict[str, Any]]], offline: list[dict[str, Any]]) -> str:
    parts = []
    for metric, entries in metrics.items():
        if not entries:  # no answer got a value (e.g. format_ok where no prompt asked for a format)
            parts.append(f"{metric}: no scored answers")
        elif len(entries) == 1:
            parts.append(f"{metric}: {_who(entries[0])}")
        else:
            parts.append(f"{metric}: " + "; ".join(f"{_who(e)} on {e['rows']} answers" for e in entries))
    text = ("Scored by " + "; ".join(parts) + ".") if parts else "No judge scores in these results."
    for card in offline:
        agreement = ", ".join(f"{label} {value:g}" if isinstance(value, int | float) else f"{label} {value}"
                              for label, value in (card["agreement"] or {}).items())
        measured = f"measured agreement: {agreement} ({card['measured_on']})" if agreement else card["measured_on"]
        text += (f" {', '.join(card['metrics'])}: the offline judge '{card['judge']}' approximates "
                 f"{card['reference'] or 'an API judge'}; {measured}. {card['advice']}.")
    return text
