"""The audit step of a judge unit (spec ``judges.audit``): a seeded random subsample of each sampling unit's
answers is scored by a gold judge as well, so the report can give prediction-powered (audited) rates.

The planner calls :func:`audit_params` (what goes into the judge unit and its key), :func:`check_audit`,
:func:`audit_seconds` and :func:`audit_cost`; the judge unit calls :func:`apply_audit` after its own judges.
Which answers are audited is ``emkit.analysis.audit_selection(row keys, fraction, seed)``: a function of each
answer's generation key, so a rerun (or a resumed run) audits the same answers and finds their gold judgments
in the store. The rows gain ``audited`` (bool) and the audit judge's columns with an ``audit_`` prefix
(``audit_aligned``, ``audit_aligned_status``, ..., ``audit_judge``); rows not picked get ``audit_<metric>`` =
None and ``audit_<metric>_status`` = "not_audited".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emkit.errors import ConfigError, EmkitError

if TYPE_CHECKING:
    from emkit.experiment._plan import Plan
    from emkit.experiment._spec import ExperimentSpec
    from emkit.experiment._stages import Stages

log = logging.getLogger("emkit.experiment")

PREFIX = "audit_"
NOT_AUDITED = "not_audited"


def audit_params(spec: ExperimentSpec) -> dict[str, Any] | None:
    """The audit settings a judge unit carries (None without an audit)."""
    audit = spec.judges.audit
    return None if audit is None else audit.model_dump(mode="json")


def audit_key_part(spec: ExperimentSpec) -> dict[str, Any]:
    """Added to the judge unit's key only when there is an audit, so specs without one keep their keys."""
    params = audit_params(spec)
    return {} if params is None else {"audit": params}


def check_audit(spec: ExperimentSpec, stages: Stages) -> None:
    """A misspelt audit judge fails at planning time, not after the sampling."""
    audit = spec.judges.audit
    if audit is None or stages.judge_names is None:
        return
    known = stages.judge_names()
    if audit.judge not in known:
        raise ConfigError(f"judges.audit.judge: unknown judge {audit.judge!r}",
                          hint=f"known judges: {', '.join(known)}")


def audited_answers(spec: ExperimentSpec, answers: int) -> float:
    """Expected number of audited answers among ``answers`` (the selection is a Bernoulli sample)."""
    audit = spec.judges.audit
    return 0.0 if audit is None else answers * audit.fraction


def audit_seconds(spec: ExperimentSpec, answers: int, judge_seconds: Callable[..., float]) -> float:
    """Time of the audit step of one judge unit (``judge_seconds`` is the planner's per-judge time model)."""
    audit = spec.judges.audit
    if audit is None:
        return 0.0
    return judge_seconds([audit.judge], audit.options, round(audited_answers(spec, answers)))


def audit_cost(p: Plan, is_paid: Callable[[str, dict[str, Any]], bool], per_call_usd: float
               ) -> tuple[float, str] | None:
    """(USD, note) of the audit's API calls: only the audited fraction of the answers, 2 prompts each."""
    audit = p.spec.judges.audit
    if audit is None or not is_paid(audit.judge, audit.options):
        return None
    answers = audited_answers(p.spec, sum(u.work for u in p.of_kind("judge")))
    calls = round(answers) * 2  # aligned + coherent
    return calls * per_call_usd, (f"~{calls} audit calls ({audit.judge} on ~{round(answers)} answers, "
                                  f"{100 * audit.fraction:g}% of them)")


def apply_audit(rows: list[dict[str, Any]], scored: list[dict[str, Any]], audit: dict[str, Any],
                judge: Callable[..., list[dict[str, Any]]], *, store: Any, progress: bool) -> list[dict[str, Any]]:
    """``scored`` (the unit's judged rows) with the audit columns added; ``rows`` are the unit's sampled rows
    (what the audit judge sees, without the other judges' columns); ``judge`` is ``Stages.judge``."""
    from emkit.analysis import audit_selection

    missing = [i for i, row in enumerate(rows) if not isinstance(row.get("key"), str)]
    if missing:
        raise EmkitError(f"audit: row {missing[0]} has no generation 'key', so it cannot be picked reproducibly",
                         hint="the sampler writes 'key' on every row; custom stages must too")
    picked = audit_selection([row["key"] for row in rows], audit["fraction"], audit["seed"])
    index = [i for i, p in enumerate(picked) if p]
    log.info("audit: %d of %d answers (%.0f%%) to judge with %s", len(index), len(rows), 100 * audit["fraction"],
             audit["judge"])
    judged = judge([rows[i] for i in index], [audit["judge"]], store=store, progress=progress,
                   options=audit["options"] or None) if index else []
    if len(judged) != len(index):
        raise RuntimeError(f"audit: the judge returned {len(judged)} rows for {len(index)} answers")
    # The audit judge's columns are the ones it added to the rows it was given (metrics, statuses, "judge" and
    # whatever provenance columns score_rows writes), in the order it wrote them.
    added: list[str] = []
    for i, row in zip(index, judged, strict=True):
        added.extend(c for c in row if c not in rows[i] and c not in added)
    out = [dict(row, audited=bool(p)) for row, p in zip(scored, picked, strict=True)]
    for row in out:
        for column in added:
            row[PREFIX + column] = NOT_AUDITED if column.endswith("_status") else None
    for i, row in zip(index, judged, strict=True):
        for column in added:
            out[i][PREFIX + column] = row.get(column)
    return out
