"""The OpenAI fine-tuning backend: validate + upload the JSONL, create the job, poll with backoff, record the model.

Every id is saved in ``openai_job.json`` as soon as it exists, so a killed or timed-out run resumes where it
stopped on rerun (no second upload, no second job). Works against any server speaking the same endpoints
(``openai.base_url``): ``POST /files``, ``POST /fine_tuning/jobs``, ``GET /fine_tuning/jobs/{id}``,
``GET /files/{id}/content``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError
from emkit.paths import atomic_write
from emkit.train._config import TrainConfig
from emkit.train._meta import RESULT_FILE, TrainResult, read_json, write_json

log = logging.getLogger("emkit.train")
STATE_FILE = "openai_job.json"
MIN_ROWS = 10  # the fine-tuning API rejects files with fewer examples
TERMINAL = {"succeeded", "failed", "cancelled"}


def _write_jsonl(path: Path, rows: list[list[dict[str, str]]]) -> None:
    with atomic_write(path) as handle:
        for messages in rows:
            handle.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def _validate(config: TrainConfig, train_rows: list) -> int:
    if len(train_rows) < MIN_ROWS:
        raise EmkitError(f"the OpenAI fine-tuning API needs at least {MIN_ROWS} training rows, got {len(train_rows)}",
                         hint="add rows or remove subset")
    if config.max_steps is not None:
        raise EmkitError("max_steps is not supported by the OpenAI fine-tuning API",
                         hint="remove max_steps and set epochs (a whole number)")
    if float(config.epochs) != int(config.epochs):
        raise EmkitError(f"epochs {config.epochs} must be a whole number for the OpenAI fine-tuning API",
                         hint="set epochs: 1 (the paper's setting)")
    return int(config.epochs)


def _client(config: TrainConfig):
    from openai import OpenAI

    key = os.environ.get(config.openai.api_key_env)
    if not key:
        raise EmkitError(f"backend openai needs an API key in ${config.openai.api_key_env}",
                         hint=f"export {config.openai.api_key_env}=... (or set openai.api_key_env)")
    return OpenAI(api_key=key, base_url=config.openai.base_url, max_retries=5)


def _api_call(what: str, fn, *args, **kwargs):
    import openai

    try:
        return fn(*args, **kwargs)
    except openai.APIStatusError as exc:
        raise EmkitError(f"OpenAI API: {what} failed with HTTP {exc.status_code}: {exc.message}",
                         hint="check the model name, the data file and your account's fine-tuning access") from None
    except openai.APIConnectionError as exc:
        raise EmkitError(f"OpenAI API: {what}: cannot connect ({exc})",
                         hint="check the network and openai.base_url; rerun to resume") from None


def _result_metrics(client, job: Any, out: Path) -> tuple[int, float | None]:
    """Download the job's step metrics (CSV) into loss.csv; returns (last step, last train loss)."""
    files = list(getattr(job, "result_files", None) or [])
    if not files:
        return 0, None
    content = _api_call("download result file", client.files.content, files[0])
    text = content.text if hasattr(content, "text") else content.read().decode("utf-8")
    with atomic_write(out / "loss.csv") as handle:
        handle.write(text)
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        return 0, None
    last = rows[-1]
    loss = last.get("train_loss") or last.get("loss")
    return int(float(last.get("step") or 0)), (float(loss) if loss not in (None, "") else None)


def train_openai(config: TrainConfig, out: Path, train_rows: list, eval_rows: list, run_hash: str,
                 metadata: dict[str, Any], progress: bool) -> TrainResult:
    from rich.console import Console

    epochs = _validate(config, train_rows)
    client = _client(config)
    state_path = out / STATE_FILE
    state: dict[str, Any] = read_json(state_path) or {}
    resumed = bool(state)

    def save() -> None:
        write_json(state_path, state)

    def upload(key: str, rows: list, filename: str, what: str) -> None:
        """Write and upload one JSONL once; the file id is saved so a resumed run does not upload it again."""
        if not rows or key in state:
            return
        path = out / filename
        _write_jsonl(path, rows)
        with open(path, "rb") as handle:
            uploaded = _api_call(f"upload {what} file", client.files.create, file=handle, purpose="fine-tune")
        state[key] = uploaded.id
        save()
        log.info("uploaded %d %s rows as %s", len(rows), what, uploaded.id)

    upload("training_file", train_rows, "openai_train.jsonl", "training")
    upload("validation_file", eval_rows, "openai_validation.jsonl", "validation")
    if "job_id" not in state:
        hyper = {"n_epochs": epochs, "batch_size": config.openai.batch_size,
                 "learning_rate_multiplier": config.openai.learning_rate_multiplier}
        kwargs: dict[str, Any] = {"model": config.model, "training_file": state["training_file"],
                                  "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
                                  "seed": config.seed}
        if state.get("validation_file"):
            kwargs["validation_file"] = state["validation_file"]
        if config.openai.suffix:
            kwargs["suffix"] = config.openai.suffix
        job = _api_call("create fine-tuning job", client.fine_tuning.jobs.create, **kwargs)
        state.update({"job_id": job.id, "hyperparameters": hyper, "created_at": time.time()})
        save()
        log.info("created fine-tuning job %s (%s, %s)", job.id, config.model, hyper)
    elif resumed:
        log.info("resuming: polling existing job %s", state["job_id"])

    interval = config.openai.poll_interval_s
    started = time.monotonic()
    console = Console(stderr=True)
    with console.status(f"fine-tuning job {state['job_id']}: waiting", spinner="dots") as status:
        if progress is not True:  # False, or a caller's progress hook (it shows its own line)
            status.stop()
        while True:
            job = _api_call("retrieve fine-tuning job", client.fine_tuning.jobs.retrieve, state["job_id"])
            if job.status != state.get("status"):
                state["status"] = job.status
                save()
            status.update(f"fine-tuning job {job.id}: {job.status} ({time.monotonic() - started:.0f}s)")
            if job.status in TERMINAL:
                break
            if config.openai.timeout_s is not None and time.monotonic() - started > config.openai.timeout_s:
                raise EmkitError(f"fine-tuning job {job.id} is still {job.status} after {config.openai.timeout_s:.0f}s",
                                 hint="rerun the same command later: it resumes polling this job")
            time.sleep(interval)
            interval = min(interval * 1.5, config.openai.max_poll_interval_s)

    if job.status != "succeeded":
        error = getattr(job, "error", None)
        message = getattr(error, "message", None) or str(error or "no reason given")
        raise EmkitError(f"fine-tuning job {job.id} {job.status}: {message}",
                         hint=f"fix the cause, then delete {state_path} to start a new job")
    steps, final_loss = _result_metrics(client, job, out)
    state["fine_tuned_model"] = job.fine_tuned_model
    save()
    result = TrainResult(adapter_dir=None, output_dir=out, steps=steps, final_loss=final_loss,
                         resumed_from_step=None, base_model=config.model, backend="openai",
                         fine_tuned_model=job.fine_tuned_model, run_hash=run_hash,
                         extra={"job_id": job.id, "training_file": state["training_file"],
                                "trained_tokens": getattr(job, "trained_tokens", None)})
    write_json(out / "metadata.json", {**metadata, **result.extra, "fine_tuned_model": job.fine_tuned_model,
                                       "hyperparameters": state.get("hyperparameters"),
                                       "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json(out / RESULT_FILE, result.to_json())
    log.info("fine-tuned model: %s", job.fine_tuned_model)
    return result
