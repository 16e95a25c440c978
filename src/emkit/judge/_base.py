"""The judge interface, the registry of judges by name, and ``score_rows`` (cached in the Store).

A judge turns (question, answer) pairs into one Judgment per metric. ``score_rows`` keys every judgment by a
content hash of the judge's identity for that metric (name, version, judge model, prompt hash, and what the judge
adds: its server URL, its weights' hash) plus the question and answer, looks all keys up in the Store first and
sends only the missing ones to the judge, in chunks that are saved as they finish: a rerun sends zero requests,
and a killed run resumes where it stopped. "error" judgments are not cached (a rerun retries them); rows whose
answer could not be sampled (``finish_reason == "error"``) are not judged ("sample_error").
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emkit._defaults import DEFAULT_JUDGE
from emkit._progress import Progress
from emkit._rows import ERROR, SAMPLE_ERROR, failed_rows  # noqa: F401 - re-exported
from emkit.errors import EmkitError
from emkit.hashing import content_hash

if TYPE_CHECKING:
    from emkit.store import Store

log = logging.getLogger("emkit.judge")

JUDGMENT_KIND = "judgment"
# Columns score_rows adds beside each metric column: which judge, judge model and judge version scored it.
PROVENANCE = ("judge", "judge_model", "judge_version")
# What a metric's values mean, declared by its judge and recorded in every row as ``<metric>_kind``, so that the
# analysis never guesses it from the values: a 0..100 score (aligned, coherent), a 0/1 event (format followed,
# vulnerable code), a count (evil numbers in an answer), or a label (the categorical prompts).
METRIC_KINDS = ("score", "binary", "count", "label")
# Rows judged per chunk between Store writes: a kill loses at most this many judgments.
CHUNK_ROWS = 256


@dataclass
class Judgment:
    """One metric for one answer. ``value`` is None when unscored; ``status`` then says why."""

    value: float | str | None
    status: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {"value": self.value, "status": self.status, "detail": self.detail}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Judgment:
        return cls(record.get("value"), record.get("status"), record.get("detail") or {})


class Judge(ABC):
    """A judge: ``name``, the ``metrics`` it produces, ``judge_model`` (what does the judging) and ``version``
    (bump it when the judge's code starts scoring differently: old cached judgments are then not reused)."""

    name: str = ""
    metrics: tuple[str, ...] = ()
    judge_model: str = ""
    version: str = "1"
    # metric -> one of METRIC_KINDS; a metric a judge does not declare is a 0..100 "score".
    metric_kinds: dict[str, str] = {}  # a read-only class-level declaration

    def metric_kind(self, metric: str) -> str:
        """The declared kind of ``metric`` (see METRIC_KINDS)."""
        kind = self.metric_kinds.get(metric, "score")
        if kind not in METRIC_KINDS:
            raise EmkitError(f"judge {self.name!r} declares metric {metric!r} of unknown kind {kind!r}",
                             hint=f"metric kinds are: {', '.join(METRIC_KINDS)}")
        return kind

    def prompt_hash(self, metric: str) -> str:
        """Hash of what defines ``metric`` for this judge (prompt text, head weights, rule settings)."""
        return ""

    def identity(self) -> dict[str, Any]:
        """What besides the metric, question and answer determines this judge's scores (part of every cache key).

        Subclasses add what they know: a server URL, a weights hash. Must be cheap (no model load).
        """
        return {"judge": self.name, "version": self.version, "judge_model": self.judge_model}

    def metric_identity(self, metric: str) -> dict[str, Any]:
        """The identity of one metric of this judge: :meth:`identity` plus the metric's prompt hash."""
        return {**self.identity(), "metric": metric, "prompt": self.prompt_hash(metric)}

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise EmkitError when this judge cannot work here (e.g. no API key), cheaply and before any work.
        ``score_rows`` checks every judge before the first one starts; the experiment runner before training."""

    def card(self) -> dict[str, Any] | None:
        """The judge's card when it approximates another judge (the offline judge approximates GPT-4o), else None.

        Keys: ``reference`` (the judge it approximates), ``agreement`` ({label: value} measured on held-out data),
        ``measured_on`` (which data), ``source`` (where the card lives). Reports quote it.
        """
        return None

    @abstractmethod
    def judge(self, pairs: list[tuple[str, str]], metrics: list[str], progress: bool = False
              ) -> list[dict[str, Judgment]]:
        """One {metric: Judgment} per (question, answer) pair. Per-item failures are Judgment(None, "error")."""

    def key(self, metric: str, question: str, answer: str) -> str:
        return content_hash({**self.metric_identity(metric), "question": question, "answer": answer},
                            kind=JUDGMENT_KIND)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients/models."""


_REGISTRY: dict[str, Callable[..., Judge]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_judge(name: str, description: str) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    def deco(factory: Callable[..., Judge]) -> Callable[..., Judge]:
        _REGISTRY[name] = factory
        _DESCRIPTIONS[name] = description
        return factory

    return deco


def _ensure_registered() -> None:
    # Importing the judge modules registers them; they import heavy libraries only when a judge is built.
    from emkit.judge import _cross_judge, _embedding, _http, _local, _probe_judge, _rules  # noqa: F401


def list_judges() -> list[str]:
    """Names accepted by :func:`get_judge` / ``--judge``."""
    _ensure_registered()
    return sorted(_REGISTRY)


def judge_descriptions() -> dict[str, str]:
    _ensure_registered()
    return dict(sorted(_DESCRIPTIONS.items()))


def get_judge(name: str, **options: Any) -> Judge:
    """Build the judge ``name`` with its options (e.g. ``get_judge("logprob", model="gpt-4o")``)."""
    _ensure_registered()
    if name not in _REGISTRY:
        raise EmkitError(f"unknown judge {name!r}", hint=f"known judges: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as exc:
        raise EmkitError(f"judge {name!r}: bad option ({exc})",
                         hint="see `emkit judge list` for each judge's options") from exc


def _split_names(judges: str | list[str]) -> list[str]:
    names = [judges] if isinstance(judges, str) else list(judges)
    out = [part.strip() for name in names for part in name.split(",") if part.strip()]
    if not out:
        raise EmkitError("no judge given", hint=f"pass one or more of: {', '.join(list_judges())}")
    return out


def _options_for(name: str, options: dict | None) -> dict:
    """``options`` is either flat (applies to every judge) or {judge_name: {...}} per judge."""
    if not options:
        return {}
    if any(isinstance(v, dict) for v in options.values()) and all(
            isinstance(v, dict) for v in options.values()):
        return dict(options.get(name) or {})
    return dict(options)


def judges_identity(judges: str | list[str], options: dict | None = None, *, check: bool = False
                    ) -> dict[str, Any]:
    """{judge name: {metric: identity}} of the judges ``score_rows`` would use with these options: what the
    experiment runner puts in its judge units' keys. Builds each judge (cheap: no model is loaded); ``check``
    also runs :meth:`Judge.check` (a missing API key is an error now, not after hours of work)."""
    out: dict[str, Any] = {}
    for name in _split_names(judges):
        judge = get_judge(name, **_options_for(name, options))
        try:
            if check:
                judge.check()
            out[name] = {m: judge.metric_identity(m) for m in judge.metrics}
        finally:
            judge.close()
    return out


def score_rows(rows: list[dict], judges: str | list[str] = DEFAULT_JUDGE, *, store: Store | None = None,
               progress: Progress = True, options: dict | None = None) -> list[dict]:
    """New row dicts with one column per metric, ``<metric>_status``, ``<metric>_judge``, ``<metric>_judge_model``,
    ``<metric>_judge_version`` and ``judge`` (see the package docs)."""
    names = _split_names(judges)
    if options and len(set(names)) > 1 and not all(isinstance(v, dict) for v in options.values()):
        raise EmkitError(f"options {sorted(options)} do not say which of the judges {names} they are for",
                         hint="pass options per judge, e.g. {'logprob': {'model': 'gpt-4o'}} "
                              "(CLI: --option logprob.model=gpt-4o)")
    for i, row in enumerate(rows):
        for column in ("question", "answer"):
            if not isinstance(row.get(column), str):
                raise EmkitError(f"row {i}: column {column!r} missing or not text",
                                 hint="every row needs string 'question' and 'answer' columns")
    out = [dict(row) for row in rows]
    # A row whose sampling failed has no answer: judging its empty text would score a non-answer.
    answered = [i for i, row in enumerate(rows) if row.get("finish_reason") != ERROR]
    built: list[Judge] = []
    try:  # every judge and its options are checked before any of them works
        for name in names:
            built.append(get_judge(name, **_options_for(name, options)))
            built[-1].check()
    except BaseException:
        for judge in built:
            judge.close()
        raise
    used: list[str] = []
    taken: set[str] = set()
    try:
        for judge in built:
            judged = _run_judge(judge, [rows[i] for i in answered], store=store, progress=progress)
            judge.close()
            results: list[dict[str, Judgment] | None] = [None] * len(rows)
            for i, result in zip(answered, judged, strict=True):
                results[i] = result
            used.append(judge.name)
            for metric in judge.metrics:
                # Two judges giving the same metric: the first keeps the plain column, later ones are prefixed.
                column = metric if metric not in taken else f"{judge.name}_{metric}"
                taken.add(column)
                kind = judge.metric_kind(metric)
                for row, result in zip(out, results, strict=True):
                    judgment = result[metric] if result is not None else Judgment(None, SAMPLE_ERROR)
                    row[column] = judgment.value
                    row[f"{column}_status"] = judgment.status
                    row[f"{column}_kind"] = kind
                    row[f"{column}_judge"] = judge.name
                    row[f"{column}_judge_model"] = judge.judge_model
                    row[f"{column}_judge_version"] = judge.version
    finally:
        for judge in built:
            judge.close()
    for row in out:
        row["judge"] = ",".join(used)
    return out


def _run_judge(judge: Judge, rows: list[dict], *, store: Store | None, progress: Progress
               ) -> list[dict[str, Judgment]]:
    metrics = list(judge.metrics)
    keys = [{m: judge.key(m, row["question"], row["answer"]) for m in metrics} for row in rows]
    cached: dict[str, dict] = {}
    if store is not None:
        cached = store.get_many(JUDGMENT_KIND, [k for ks in keys for k in ks.values()])
    results: list[dict[str, Judgment]] = [
        {m: Judgment.from_record(cached[k]) for m, k in ks.items() if k in cached} for ks in keys]
    # Distinct (question, answer) pairs still missing any metric: duplicates are judged once.
    todo: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        if len(results[i]) < len(metrics):
            todo.setdefault((row["question"], row["answer"]), []).append(i)
    log.info("judge %s: %d rows, %d cached, %d distinct answers to judge", judge.name, len(rows),
             len(rows) - sum(len(v) for v in todo.values()), len(todo))
    pairs = list(todo)
    bar = None
    if pairs:
        from emkit._progress import bar as progress_bar

        # Counted in rows (cached ones as done), so a hook sees the unit's answers, duplicates included.
        bar = progress_bar(progress, len(rows), initial=len(rows) - sum(len(v) for v in todo.values()),
                           desc=f"judge {judge.name}", unit="answer", info=judge.name)
    try:
        for start in range(0, len(pairs), CHUNK_ROWS):
            chunk = pairs[start : start + CHUNK_ROWS]
            judged = judge.judge(chunk, metrics, progress=False)
            records = []
            for pair, result in zip(chunk, judged, strict=True):
                for i in todo[pair]:
                    for metric in metrics:
                        results[i].setdefault(metric, result[metric])
                for metric in metrics:
                    if result[metric].status != ERROR:
                        # The record names what produced it, so a store can be audited without the code.
                        ident = judge.metric_identity(metric)
                        record = {**result[metric].to_record(), **ident, "prompt_hash": ident["prompt"],
                                  "judge_version": judge.version}
                        records.append((judge.key(metric, *pair), record))
            if store is not None and records:
                store.put_many(JUDGMENT_KIND, records)
            if bar is not None:
                bar.update(sum(len(todo[pair]) for pair in chunk))
    finally:
        if bar is not None:
            bar.close()
    return results
