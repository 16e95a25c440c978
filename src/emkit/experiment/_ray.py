"""The Ray executor: every pending unit becomes a Ray task; Ray runs independent ones in parallel.

Dependencies travel as object refs (a sampling task starts when its training task has finished), so the
whole plan is submitted at once and Ray schedules it by each stage's resources (``resources:`` in the spec:
CPUs/GPUs per training, sampling and judging unit). Each task opens the run's SQLite store itself (WAL mode
allows several writer processes on one machine; on a cluster put the run folder on a shared filesystem).
Ray is imported only here, so the local executor needs no Ray.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError, require
from emkit.experiment._plan import UNIT_KINDS, Plan, Unit
from emkit.experiment._units import RunContext, execute, run_log

log = logging.getLogger("emkit.experiment")

# Environment a worker needs to see the same data, caches and stage implementations as the driver.
_ENV_PREFIXES = ("EMKIT_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_NUM_THREADS", "OPENAI_")


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    # The driver's import path (e.g. a test folder holding custom stages) so tasks unpickle the same code.
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _task(unit: Unit, ctx: RunContext, keys: list[str], *dep_records: dict[str, Any]) -> dict[str, Any]:
    """Body of one Ray task (runs in a worker process)."""
    with run_log(ctx.run_dir):
        return execute(unit, ctx, dict(zip(keys, dep_records, strict=True)))


def run_ray(p: Plan, ctx: RunContext, pending: list[Unit], records: dict[str, dict[str, Any]],
            pids: dict[str, int], *, address: str | None = None, progress: bool = True) -> None:
    """Submit every pending unit as a Ray task and wait for all; fills ``records`` and ``pids``."""
    ray = require("ray", "ray", "the Ray executor (--executor ray)")
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": _worker_env()}, "include_dashboard": False,
                                  "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        log.info("ray: %s", f"connecting to {address}" if address else "starting a local Ray instance")
        ray.init(**kwargs)
    try:
        resources = p.spec.resources
        remote = ray.remote(_task)
        # A GPU unit's worker exits after its task (Ray's own default for functions declared with GPUs, which
        # `.options(num_gpus=)` does not set): the models, vLLM engine and CUDA context it held go with it, so
        # the next unit on that GPU starts with the memory free. CPU workers are reused.
        remote_gpu = ray.remote(max_calls=1)(_task)
        worker_ctx = RunContext(run_dir=ctx.run_dir.resolve(), stages=ctx.stages, title=ctx.title, progress=False)
        refs: dict[str, Any] = {}
        for unit in pending:  # plan order: dependencies are submitted before the units that need them
            keys = list(unit.deps)
            args = [refs[k] if k in refs else records[k] for k in keys]
            res = getattr(resources, unit.kind, None)
            options = {"num_cpus": res.cpus, "num_gpus": res.gpus} if res is not None else {"num_cpus": 1}
            fn = remote_gpu if options.get("num_gpus") else remote
            refs[unit.key] = fn.options(name=unit.label.replace(" ", "_"), max_retries=0, **options).remote(
                unit, worker_ctx, keys, *args)
        by_ref = {ref: key for key, ref in refs.items()}
        _wait(ray, p, pending, by_ref, records, pids, progress)
    finally:
        if started_here:
            ray.shutdown()


def _wait(ray: Any, p: Plan, pending: list[Unit], by_ref: dict[Any, str], records: dict[str, dict[str, Any]],
          pids: dict[str, int], progress: bool) -> None:
    """Collect results as tasks finish, with one progress bar per stage (work items, ETA)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    units = {u.key: u for u in pending}
    waiting = list(by_ref)
    with Progress(TextColumn("{task.description:<7}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress) as bar:
        tasks = {kind: bar.add_task(kind, total=sum(u.work for u in pending if u.kind == kind))
                 for kind in UNIT_KINDS if any(u.kind == kind for u in pending)}
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for ref in ready:
                key = by_ref[ref]
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    # A user error inside a task (bad data, missing key) reads as it would locally.
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, EmkitError):
                        raise cause from None
                    raise
                records[key] = record
                pids[key] = record["pid"]
                unit = units[key]
                bar.advance(tasks[unit.kind], unit.work)
                log.info("finished %s in %.1f s (pid %s)", unit.label, record.get("seconds", 0.0), record["pid"])
