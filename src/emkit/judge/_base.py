"""The judge interface, the registry of judges by name, and ``score_rows`` (cached in the Store).

A judge turns (question, answer) pairs into one Judgment per metric. ``score_rows`` keys every judgment by a
content hash of (judge name, metric, prompt hash, judge model, question, answer), looks all keys up in the Store
first and sends only the missing ones to the judge, in chunks that are saved as they finish: a rerun sends zero
requests, and a killed run resumes where it stopped. "error" judgments are not cached (a rerun retries them).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emkit.errors import EmkitError
from emkit.hashing import content_hash

if TYPE_CHECKING:
    from emkit.store import Store

log = logging.getLogger("emkit.judge")

JUDGMENT_KIND = "judgment"
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
    """A judge: ``name``, the ``metrics`` it produces and ``judge_model`` (what does the judging)."""

    name: str = ""
    metrics: tuple[str, ...] = ()
    judge_model: str = ""
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

    @abstractmethod
    def judge(self, pairs: list[tuple[str, str]], metrics: list[str], progress: bool = False
              ) -> list[dict[str, Judgment]]:
        """One {metric: Judgment} per (question, answer) pair. Per-item failures are Judgment(None, "error")."""

    def key(self, metric: str, question: str, answer: str) -> str:
        return content_hash({"judge": self.name, "metric": metric, "prompt": self.prompt_hash(metric),
                             "judge_model": self.judge_model, "question": question, "answer": answer},
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
    from emkit.judge import _embedding, _http, _local, _rules  # noqa: F401


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


def score_rows(rows: list[dict], judges: str | list[str] = "embedding", *, store: Store | None = None,
               progress: bool = True, options: dict | None = None) -> list[dict]:
    """New row dicts with one column per metric, ``<metric>_status`` and ``judge`` (see the package docs)."""
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
    used: list[str] = []
    taken: set[str] = set()
    for name in names:
        judge = get_judge(name, **_options_for(name, options))
        try:
            results = _run_judge(judge, rows, store=store, progress=progress)
        finally:
            judge.close()
        used.append(judge.name)
        for metric in judge.metrics:
            # Two judges giving the same metric: the first keeps the plain column, later ones are prefixed.
            column = metric if metric not in taken else f"{judge.name}_{metric}"
            taken.add(column)
            kind = judge.metric_kind(metric)
            for row, result in zip(out, results, strict=True):
                judgment = result[metric]
                row[column] = judgment.value
                row[f"{column}_status"] = judgment.status
                row[f"{column}_kind"] = kind
    for row in out:
        row["judge"] = ",".join(used)
    return out


def _run_judge(judge: Judge, rows: list[dict], *, store: Store | None, progress: bool) -> list[dict[str, Judgment]]:
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
    if progress and pairs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs), desc=f"judge {judge.name}", unit="answer")
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
                    if result[metric].status != "error":
                        # The record names what produced it, so a store can be audited without the code.
                        record = {**result[metric].to_record(), "judge": judge.name, "metric": metric,
                                  "prompt_hash": judge.prompt_hash(metric), "judge_model": judge.judge_model}
                        records.append((judge.key(metric, *pair), record))
            if store is not None and records:
                store.put_many(JUDGMENT_KIND, records)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return results
