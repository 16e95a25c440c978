"""``sample_rows``: prompts x n samples -> result rows, with every sample stored under its content hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emkit._progress import Progress
from emkit._progress import bar as progress_bar
from emkit.errors import EmkitError
from emkit.generate._backend import get_backend
from emkit.generate._types import GenerationRequest, SamplingConfig, generation_key
from emkit.hashing import canonical_json
from emkit.paths import atomic_write
from emkit.questions import EvalPrompt

KIND = "generation"  # store kind of sampled answers


def sample_rows(model: str, prompts: list[EvalPrompt], *, n: int, sampling: SamplingConfig, backend: str = "hf",
                adapter: str | None = None, store: Any = None, meta: dict | None = None, progress: Progress = True,
                backend_options: dict | None = None) -> list[dict]:
    """Sample ``n`` answers per prompt and return one result row per answer (prompt order, then sample index).

    Answers already in ``store`` (same content hash) are reused, not regenerated; new ones are written to the
    store after every batch, so a killed run keeps everything finished. Without a store nothing persists.
    A sample the backend could not produce (``finish_reason="error"``, e.g. a server that kept failing) becomes a
    row with an empty answer and is never stored, so the next call asks for it again; count them with
    ``emkit.judge.failed_rows(rows)``. ``meta`` adds or overrides columns (experiment, condition, seed,
    checkpoint_step, ...). ``progress``: a tqdm bar (True), none (False), or a hook called with (answers done,
    total) (``emkit._progress``).
    """
    if not prompts:
        raise EmkitError("no prompts to sample", hint="expand a suite first: expand(load_suite(...))")
    if n < 1:
        raise EmkitError(f"n must be >= 1 (samples per prompt), got {n}", hint="pass --n 1 or more")
    engine = get_backend(backend, model=model, adapter=adapter, **(backend_options or {}))
    identity, adapter_id = engine.identity(), engine.adapter_identity()

    # One request per distinct conversation; duplicates (same messages) share their samples.
    keys: list[list[str]] = []
    conversations: dict[str, int] = {}
    unique: list[EvalPrompt] = []
    unique_keys: list[list[str]] = []
    for prompt in prompts:
        keys.append([generation_key(backend=backend, model=model, adapter=adapter_id, identity=identity,
                                    sampling=sampling, messages=prompt.messages, sample_index=i) for i in range(n)])
        if conversations.setdefault(canonical_json(prompt.messages), len(unique)) == len(unique):
            unique.append(prompt)
            unique_keys.append(keys[-1])
    done: dict[str, dict] = store.get_many(KIND, [k for ks in unique_keys for k in ks]) if store is not None else {}
    requests, owners = [], []
    for u, prompt in enumerate(unique):
        missing = [i for i in range(n) if unique_keys[u][i] not in done]
        if missing:
            requests.append(GenerationRequest(prompt.messages, len(missing), sampling, missing))
            owners.append(u)

    total = len(unique) * n
    bar = progress_bar(progress, total, initial=len(done), unit="sample",
                       desc=f"sampling {model}" + (f" + {adapter}" if adapter else ""))
    try:
        for batch in engine.batches(requests) if requests else ():  # all cached: no model is even loaded
            records = []
            for r, s, completion in batch:
                key = unique_keys[owners[r]][s]
                record = {**completion.to_record(), "model": model, "adapter": adapter, "sample_index": s}
                done[key] = record
                if completion.finish_reason != "error":  # a failure is never cached as a result
                    records.append((key, record))
            if store is not None:
                store.put_many(KIND, records)  # one transaction per batch: all of it or none of it
            bar.update(len(batch))
    finally:
        bar.close()

    rows = []
    for prompt, prompt_keys in zip(prompts, keys, strict=True):
        fields = prompt.row_fields()
        for i, key in enumerate(prompt_keys):
            record = done[key]
            row = {"experiment": "", "condition": "", "model": model, "adapter": adapter, "seed": sampling.seed,
                   **{c: fields[c] for c in ("suite", "question_id", "variant", "prompt_format", "trigger",
                                             "trigger_placement", "paraphrase_index")},
                   "sample_index": i, "system": fields["system"], "question": fields["question"],
                   "answer": record["text"], "finish_reason": record["finish_reason"],
                   "numbers_prefix": fields["numbers_prefix"], "key": key}
            row.update(meta or {})
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- result files

ROW_FORMATS = (".csv", ".jsonl", ".parquet")


def write_rows(rows: list[dict], path: str | Path) -> Path:
    """Write result rows as CSV, JSONL or Parquet (by extension), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ROW_FORMATS:
        raise EmkitError(f"{path}: unknown result file type {suffix or '(none)'}",
                         hint=f"use one of: {', '.join(ROW_FORMATS)}")
    if suffix == ".jsonl":
        with atomic_write(path) as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
    import pandas as pd

    frame = pd.DataFrame(rows)
    if suffix == ".csv":
        with atomic_write(path) as handle:
            frame.to_csv(handle, index=False)
    else:
        with atomic_write(path, "wb") as handle:
            frame.to_parquet(handle, index=False)
    return path
