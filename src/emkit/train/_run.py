"""``train(config)``: validate data, find finished or interrupted work, dispatch to a backend."""

from __future__ import annotations

import logging
from pathlib import Path

from emkit._progress import Progress
from emkit.config import write_resolved
from emkit.errors import EmkitError
from emkit.train._config import TrainConfig
from emkit.train._data import load_conversations, split_rows
from emkit.train._meta import RESULT_FILE, RUN_FILE, TrainResult, base_metadata, read_json, write_json
from emkit.train._mitigations import apply_mitigations, load_mitigation_data

log = logging.getLogger("emkit.train")


def _finished(out: Path, run_hash: str) -> TrainResult | None:
    stored = read_json(out / RESULT_FILE)
    if stored is None:
        return None
    if stored.get("run_hash") != run_hash:
        raise EmkitError(f"{out} holds a finished run with a different config or data",
                         hint="choose another output_dir (--out), or delete the folder to retrain")
    result = TrainResult.from_json(stored, out)
    result.skipped = True
    return result


def train(config: TrainConfig, progress: Progress = True) -> TrainResult:
    """Run (or resume, or skip) one fine-tuning run; see ``emkit.train`` for the contract. ``progress``: bars
    (True), none (False), or a hook called with (step, max_steps, "loss x") after each step."""
    from emkit.train._local import is_main_process

    # Data first: a missing file or a row without an assistant turn fails here, before any model loads.
    rows, files = load_conversations(config.data)
    # Data the mitigations read (interleaved safe rows, KL reference): their bytes are part of the run's identity.
    extra_rows, extra_files = load_mitigation_data(config)
    run_hash = config.run_hash([f.sha256 for f in files + extra_files])
    out = config.resolved_output_dir()
    done = _finished(out, run_hash)
    if done is not None:
        log.info("%s: already trained (%d steps); nothing to do", out, done.steps)
        return done
    previous = read_json(out / RUN_FILE)
    if previous is not None and previous.get("run_hash") != run_hash:
        raise EmkitError(f"{out} holds checkpoints of a run with a different config or data, so it cannot resume",
                         hint="use another output_dir (--out), or delete the folder to start over")
    train_rows, eval_rows = split_rows(rows, config.subset, config.eval_fraction, config.seed)
    train_rows, eval_rows, kl_rows = apply_mitigations(config, train_rows, eval_rows, extra_rows)
    log.info("data: %d rows from %s -> %d train, %d eval", len(rows), ", ".join(f.name for f in files),
             len(train_rows), len(eval_rows))
    metadata = base_metadata(config, run_hash, files)
    if extra_files:
        metadata["mitigation_data"] = [{"name": f.name, "path": str(f.path), "sha256": f.sha256, "rows": f.rows}
                                       for f in extra_files]
    resolved = config.model_copy(update={"output_dir": out})
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        write_resolved(resolved, out / "config.yaml")
        write_json(out / RUN_FILE, {"run_hash": run_hash, "backend": config.backend, "model": config.model,
                                    "data_sha256": [f.sha256 for f in files]})
    if config.backend == "openai":
        from emkit.train._openai import train_openai

        return train_openai(config, out, train_rows, eval_rows, run_hash, metadata, progress)
    from emkit.train._local import train_local

    return train_local(config, out, train_rows, eval_rows, run_hash, metadata, progress, kl_rows=kl_rows)
