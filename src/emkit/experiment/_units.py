"""Executing one unit: the code both executors share (the Ray executor runs it inside worker processes).

Each finished unit is written to the run's store as one record (kind ``experiment.unit``) in one transaction, so a
unit is either finished (record present) or redone from the stage caches: training resumes from its last
checkpoint, sampling and judging find every answer and judgment already stored under its content hash.

A record is not enough to be done (:func:`is_done`): a sampling or judging unit with failed rows (an answer that
could not be sampled, a judgment that failed after its retries) is redone by the next run, which asks only for
the failed rows (the rest are in the stage caches); a sampling unit whose adapter changed on disk since it ran is
redone; and a unit whose dependency is redone is redone too (``experiment._run``).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emkit._rows import failed_rows
from emkit.errors import EmkitError
from emkit.experiment._audit import apply_audit
from emkit.experiment._interp import sample_source
from emkit.experiment._plan import Unit
from emkit.experiment._stages import Stages
from emkit.paths import atomic_write
from emkit.store import Store

log = logging.getLogger("emkit.experiment")

UNIT_RECORD = "experiment.unit"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
REPORT_DIR = "report"
RUN_LOG = "run.log"
# Key of the report unit whose rows results.parquet/csv and report/ hold: a run folder reused with another plan
# (e.g. the quickstart with and without the data mirror) must not report the other plan's rows as current.
RESULTS_KEY = "results.key"
STORE_FILE = "store.sqlite"

# Column order of results.csv/parquet (docs/architecture.md); metric columns and extras follow.
ROW_COLUMNS = ["experiment", "condition", "model", "adapter", "seed", "suite", "question_id", "variant",
               "prompt_format", "trigger", "trigger_placement", "paraphrase_index", "sample_index", "system",
               "question", "answer", "finish_reason"]


@dataclass
class RunContext:
    """What a unit needs besides its own parameters (picklable: it travels to Ray workers)."""

    run_dir: Path
    stages: Stages
    title: str
    progress: Any = True  # bool, or the console's progress hook for one unit (local executor; emkit._progress)

    @property
    def store_path(self) -> Path:
        return self.run_dir / STORE_FILE


def adapter_files(adapter: str | None) -> dict[str, str] | None:
    """{file: SHA-256} of an adapter folder (None for no adapter or one that is not a local folder)."""
    if adapter is None or not Path(adapter).is_dir():
        return None
    from emkit.models._identity import folder_files_sha256

    return folder_files_sha256(Path(adapter))


def is_done(unit: Unit, record: dict[str, Any] | None, run_dir: Path) -> bool:
    """A unit is done when its record exists, every row in it has a value or an intended unscored status (no
    row failed), the files it made are still there and, for sampling, its adapter is the one it sampled."""
    if record is None:
        return False
    result = record.get("result", {})
    if unit.kind == "train":
        return Path(result.get("adapter_dir", "")).exists()
    if unit.kind == "direction":
        return Path(result.get("path", "")).exists()
    if unit.kind == "report":
        key_file = run_dir / RESULTS_KEY
        return ((run_dir / RESULTS_PARQUET).exists() and Path(result.get("report", "")).exists()
                and key_file.exists() and key_file.read_text().strip() == unit.key)
    if any(failed_rows(record.get("rows") or []).values()):
        return False
    if unit.kind == "sample" and unit.params.get("train"):
        # The adapter only exists after training, so its weights cannot be in the unit's key: a sampling unit
        # is done only while the adapter on disk is the one it sampled (a retrained or edited adapter is redone).
        return result.get("adapter_files") is not None and adapter_files(result.get("adapter")) == \
            result["adapter_files"]
    return True


@contextmanager
def run_log(run_dir: Path):
    """Append the ``emkit`` logger's messages (all stages) to ``<run>/run.log`` for the duration."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("emkit")
    old_level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def execute(unit: Unit, ctx: RunContext, deps: dict[str, dict[str, Any]], store: Store | None = None
            ) -> dict[str, Any]:
    """Run one unit (its dependencies' records given) and store its record; returns the record."""
    own_store = store is None
    store = store or Store(ctx.store_path)
    start = time.time()
    try:
        if unit.kind == "train":
            record = _train(unit, ctx)
        elif unit.kind == "sample":
            record = _sample(unit, ctx, deps, store)
        elif unit.kind == "judge":
            record = _judge(unit, ctx, deps, store)
        elif unit.kind == "direction":
            record = _direction(unit, ctx, deps, store)
        elif unit.kind == "report":
            record = _report(unit, ctx, deps)
        else:  # pragma: no cover - the planner makes only these kinds
            raise ValueError(unit.kind)
        record.update(kind=unit.kind, label=unit.label, pid=os.getpid(), seconds=round(time.time() - start, 3))
        store.put(UNIT_RECORD, unit.key, record)
        return record
    finally:
        if own_store:
            store.close()


def _train(unit: Unit, ctx: RunContext) -> dict[str, Any]:
    p = unit.params
    syn = p["synthetic"]
    if syn is not None and not Path(p["data"]).exists():
        log.info("building synthetic '%s' data: %d rows (seed %d) -> %s", syn["kind"], syn["n"], syn["seed"],
                 p["data"])
        ctx.stages.build_synthetic(syn["kind"], syn["n"], syn["seed"], Path(p["data"]))
    num = p.get("numbers")
    if num is not None and not Path(p["data"]).exists():
        if ctx.stages.build_numbers is None:
            raise EmkitError(f"{unit.label}: these stages cannot generate teacher datasets (no build_numbers)")
        log.info("generating '%s' numbers data with teacher %s: %d prompts -> %s", unit.params["condition"],
                 num["teacher"], num["n"], p["data"])
        ctx.stages.build_numbers(num, Path(p["data"]), ctx.store_path)
    result = ctx.stages.train(model=p["model"], data=p["data"], output_dir=Path(p["output_dir"]), seed=p["seed"],
                              settings=p["settings"], progress=ctx.progress)
    log.info("%s: %s steps, final loss %s -> %s", unit.label, result.get("steps"), result.get("final_loss"),
             result.get("adapter_dir"))
    return {"result": result}


def _sample(unit: Unit, ctx: RunContext, deps: dict[str, dict[str, Any]], store: Store) -> dict[str, Any]:
    p = unit.params
    # the training's adapter, a given one, or a training checkpoint (+ its loss); see experiment/_interp.py
    adapter, extra = sample_source(p, deps)
    rows = ctx.stages.sample(p["model"], p["prompts"], n=p["n"], sampling=p["sampling"], backend=p["backend"],
                             adapter=adapter, store=store, meta=p["meta"], progress=ctx.progress,
                             backend_options=p["backend_options"])
    rows = [{**row, **p["meta"], **extra} for row in rows]  # experiment/condition/seed always set
    expected = len(p["prompts"]) * p["n"]
    if len(rows) != expected:
        raise RuntimeError(f"{unit.label}: the sampler returned {len(rows)} rows, expected {expected}")
    failed = failed_rows(rows)["sample"]
    if failed:
        log.warning("%s: %d of %d answers could not be sampled; the next run asks for them again", unit.label,
                    failed, len(rows))
    return {"result": {"rows": len(rows), "adapter": adapter, "adapter_files": adapter_files(adapter),
                       "failed": failed}, "rows": rows}


def _judge(unit: Unit, ctx: RunContext, deps: dict[str, dict[str, Any]], store: Store) -> dict[str, Any]:
    p = unit.params
    rows = deps[p["sample"]]["rows"]
    scored = ctx.stages.judge(rows, p["judges"], store=store, progress=ctx.progress, options=p["options"])
    if len(scored) != len(rows):
        raise RuntimeError(f"{unit.label}: the judge returned {len(scored)} rows for {len(rows)} answers")
    if p.get("audit"):
        scored = apply_audit(rows, scored, p["audit"], ctx.stages.judge, store=store, progress=ctx.progress)
    failed = failed_rows(scored)["judge"]
    if failed:
        log.warning("%s: %d of %d answers have a failed judgment; the next run retries them", unit.label, failed,
                    len(scored))
    return {"result": {"rows": len(scored), "failed": failed}, "rows": scored}


def _direction(unit: Unit, ctx: RunContext, deps: dict[str, dict[str, Any]], store: Store) -> dict[str, Any]:
    p = unit.params
    if ctx.stages.direction is None:
        raise EmkitError(f"{unit.label}: these stages cannot compute directions (Stages.direction is None)")
    rows = [row for key in p["judged"] for row in deps[key]["rows"]] if p["judged"] else None
    result = ctx.stages.direction(rows, params=p, store=store, progress=ctx.progress)
    log.info("%s: %s", unit.label, result.get("summary", result.get("path")))
    return {"result": result}


def results_frame(rows: list[dict[str, Any]]):
    """The results table with the documented column order first."""
    import pandas as pd

    df = pd.DataFrame(rows)
    first = [c for c in ROW_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def _report(unit: Unit, ctx: RunContext, deps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = [row for key in unit.params["judged"] for row in deps[key]["rows"]]
    df = results_frame(rows)
    with atomic_write(ctx.run_dir / RESULTS_PARQUET, "wb", encoding=None) as handle:
        df.to_parquet(handle, index=False)
    with atomic_write(ctx.run_dir / RESULTS_CSV) as handle:
        df.to_csv(handle, index=False)
    # Comparisons against a named condition (analysis.baseline); passed only when set, so report stages that
    # predate it keep working.
    baseline = unit.params.get("baseline")
    report = ctx.stages.report(df, ctx.run_dir / REPORT_DIR, title=ctx.title,
                               **({"baseline": baseline} if baseline else {}))
    with atomic_write(ctx.run_dir / RESULTS_KEY) as handle:  # last: marks results + report as this plan's
        handle.write(unit.key)
    log.info("report: %s (%d rows)", report, len(df))
    return {"result": {"report": str(report), "rows": len(df)}}
