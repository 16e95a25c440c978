"""Executing one unit: the code both executors share (the Ray executor runs it inside worker processes).

Each finished unit is written to the run's store as one record (kind ``experiment.unit``) in one transaction, so a
unit is either finished (record present) or redone from the stage caches: training resumes from its last
checkpoint, sampling and judging find every answer and judgment already stored under its content hash.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError
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
ROW_COLUMNS = ["experiment", "condition", "model", "adapter", "seed", "suite", "question_id", "variant", "trigger",
               "paraphrase_index", "sample_index", "system", "question", "answer", "finish_reason"]


@dataclass
class RunContext:
    """What a unit needs besides its own parameters (picklable: it travels to Ray workers)."""

    run_dir: Path
    stages: Stages
    title: str
    progress: bool = True

    @property
    def store_path(self) -> Path:
        return self.run_dir / STORE_FILE


def is_done(unit: Unit, record: dict[str, Any] | None, run_dir: Path) -> bool:
    """A unit is done when its record exists and the files it made are still there."""
    if record is None:
        return False
    result = record.get("result", {})
    if unit.kind == "train":
        return Path(result.get("adapter_dir", "")).exists()
    if unit.kind == "report":
        key_file = run_dir / RESULTS_KEY
        return ((run_dir / RESULTS_PARQUET).exists() and Path(result.get("report", "")).exists()
                and key_file.exists() and key_file.read_text().strip() == unit.key)
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
    adapter = deps[p["train"]]["result"]["adapter_dir"] if p["train"] else None
    rows = ctx.stages.sample(p["model"], p["prompts"], n=p["n"], sampling=p["sampling"], backend=p["backend"],
                             adapter=adapter, store=store, meta=p["meta"], progress=ctx.progress,
                             backend_options=p["backend_options"])
    rows = [{**row, **p["meta"]} for row in rows]  # experiment/condition/seed always set, whatever the backend
    expected = len(p["prompts"]) * p["n"]
    if len(rows) != expected:
        raise RuntimeError(f"{unit.label}: the sampler returned {len(rows)} rows, expected {expected}")
    return {"result": {"rows": len(rows), "adapter": adapter}, "rows": rows}


def _judge(unit: Unit, ctx: RunContext, deps: dict[str, dict[str, Any]], store: Store) -> dict[str, Any]:
    p = unit.params
    rows = deps[p["sample"]]["rows"]
    scored = ctx.stages.judge(rows, p["judges"], store=store, progress=ctx.progress, options=p["options"])
    if len(scored) != len(rows):
        raise RuntimeError(f"{unit.label}: the judge returned {len(scored)} rows for {len(rows)} answers")
    return {"result": {"rows": len(scored)}, "rows": scored}


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
