"""Residual-stream activations of judged answers: per decoder layer, the mean over the answer's tokens.

Each row is re-read as the conversation it came from (its system prompt, if any, and its question as the
user message, through the model's chat template with the generation prompt) followed by its answer's tokens;
one forward pass (no sampling) gives the output of every requested decoder layer, averaged over the answer
positions only. The pass stops after the last requested layer (no final norm or LM head: those would cost a
[batch x tokens x vocabulary] logits tensor, ~3 GB for 32 rows of 300 tokens with Qwen's 152k vocabulary).

Every row's activations are stored in the Store (kind ``interp.activation``) under a content hash of the model,
the adapter's weights (SHA-256), the backend identity (dtype, chat template), the layer set and the row's
messages and answer, after each batch: a rerun loads nothing and calls no model; a killed run keeps its batches.
The model comes from the ``hf`` generation backend (same loading, adapters and in-process cache as sampling).
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emkit.errors import EmkitError
from emkit.hashing import content_hash

log = logging.getLogger("emkit.interp")

ACTIVATION_KIND = "interp.activation"
POOLING = "mean over answer tokens, output of each decoder layer"
# Rows per forward pass. CPU: 8 rows x ~300 tokens of a 0.5B model is ~1 s a batch and ~0.3 GB of attention
# buffers; GPU: 32.
DEFAULT_BATCH = {"cpu": 8, "cuda": 32, "mps": 8}
# Longer answers are cut here (the paper's answers stop at 600 new tokens).
MAX_ANSWER_TOKENS = 1024


@dataclass
class Activations:
    """``values[i, j]``: row i's mean activation at decoder layer ``layers[j]`` (float32, NaN for a row whose
    answer has no tokens); ``tokens[i]``: how many answer tokens were averaged."""

    layers: list[int]
    values: np.ndarray  # [rows, len(layers), hidden]
    tokens: np.ndarray  # [rows] int
    model: str
    adapter: str | None


def row_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation a result row answered: its system prompt (when it had one) and its question."""
    for column in ("question", "answer"):
        if not isinstance(row.get(column), str):
            raise EmkitError(f"a result row has no text in column {column!r}",
                             hint="pass result rows from `emkit sample`/`emkit run` (question and answer columns)")
    system = row.get("system")
    # A missing system prompt reads back as None, NaN (parquet) or "" (CSV, and emkit.analysis.load_results):
    # all three mean "none" (the chat template's default), and an empty system prompt is never sampled on purpose.
    if system is None or (isinstance(system, float) and math.isnan(system)) or system == "":
        system = None
    return ([{"role": "system", "content": str(system)}] if system is not None else []) + [
        {"role": "user", "content": row["question"]}]


class _Stop(Exception):
    """Raised by the hook of the last requested layer: nothing after it is needed."""


def _encode_prompt(tokenizer: Any, template: str | None, messages: list[dict[str, str]]) -> list[int]:
    template = template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise EmkitError("the model has no chat template, so the questions cannot be formatted",
                         hint="pass a chat template (backend option chat_template)")
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _pack(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.float32).tobytes()).decode("ascii")


def _unpack(record: dict[str, Any]) -> np.ndarray:
    shape = tuple(record["shape"])
    return np.frombuffer(base64.b64decode(record["data"]), dtype=np.float32).reshape(shape)


def collect_activations(rows: Sequence[dict[str, Any]], model: str, adapter: str | None = None, *,
                        layers: Sequence[int] | None = None, store: Any = None, batch_size: int | None = None,
                        progress: bool = True, backend_options: dict[str, Any] | None = None) -> Activations:
    """Activations of ``rows`` (result rows with question/answer/system) read by ``model`` (+ ``adapter``).

    ``layers``: decoder-layer indices (default: all). ``backend_options``: ``hf`` options (dtype, device,
    chat_template); interventions are not allowed here (a direction is measured on the unmodified model).
    """
    from emkit.generate import get_backend

    options = dict(backend_options or {})
    options.pop("batch_size", None)  # the sampler's batch size is not this pass's
    if options.get("interventions") or options.get("lora_scale") is not None:
        raise EmkitError("activations are read from the unmodified model: interventions/lora_scale are not allowed",
                         hint="drop them from the backend options of the direction")
    engine = get_backend("hf", model, adapter, **options)
    ident = {"model": model, "adapter": engine.adapter_identity(), "backend": engine.identity(),
             "layers": sorted(set(layers)) if layers is not None else "all", "pooling": POOLING}
    if adapter is not None and (ident["adapter"] or {}).get("sha256") is None:
        raise EmkitError(f"adapter {adapter!r} is not a PEFT adapter folder (no adapter_model.safetensors)",
                         hint="pass the folder written by `emkit train` (it holds adapter_config.json)")
    messages = [row_messages(r) for r in rows]
    keys = [content_hash({**ident, "messages": m, "answer": r["answer"]}, kind=ACTIVATION_KIND)
            for m, r in zip(messages, rows, strict=True)]
    found: dict[str, dict[str, Any]] = store.get_many(ACTIVATION_KIND, keys) if store is not None else {}
    missing = [i for i, k in enumerate(keys) if k not in found]
    if missing:
        _compute(engine, [rows[i] for i in missing], [messages[i] for i in missing], [keys[i] for i in missing],
                 layers, found, store, batch_size, progress, total=len(set(keys)), done=len(set(keys) & set(found)))
    first = found[keys[0]] if keys else None
    used = list(first["layers"]) if first else sorted(set(layers or []))
    hidden = first["hidden"] if first else 0
    values = np.full((len(rows), len(used), hidden), np.nan, dtype=np.float32)
    tokens = np.zeros(len(rows), dtype=np.int64)
    for i, key in enumerate(keys):
        record = found[key]
        tokens[i] = record["tokens"]
        if record["tokens"]:
            values[i] = _unpack(record)
    return Activations(layers=used, values=values, tokens=tokens, model=model, adapter=adapter)


def _compute(engine: Any, rows: list[dict[str, Any]], messages: list[list[dict[str, str]]], keys: list[str],
             layers: Sequence[int] | None, found: dict[str, dict[str, Any]], store: Any, batch_size: int | None,
             progress: bool, *, total: int, done: int) -> None:
    import torch
    from tqdm.auto import tqdm

    from emkit.interp._hooks import decoder_layers

    with engine.active() as (model, tokenizer):
        blocks = decoder_layers(model)
        used = sorted(set(layers)) if layers is not None else list(range(len(blocks)))
        bad = [x for x in used if not 0 <= x < len(blocks)]
        if bad:
            raise EmkitError(f"layers {bad} do not exist: {engine.model} has {len(blocks)} decoder layers",
                             hint=f"use layers in 0..{len(blocks) - 1}")
        device = next(model.parameters()).device
        size = batch_size or DEFAULT_BATCH.get(device.type, 8)
        # Tokenize once; sort by length so a batch holds similar lengths (little padding); dedupe equal texts.
        todo: dict[str, tuple[list[int], int]] = {}
        for row, msgs, key in zip(rows, messages, keys, strict=True):
            if key in todo:
                continue
            prompt = _encode_prompt(tokenizer, engine.chat_template, msgs)
            answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"][:MAX_ANSWER_TOKENS]
            todo[key] = (prompt + answer, len(prompt))
        # (length, key): the same rows form the same batches whatever order they come in, so the same answers
        # always get bit-identical activations (batch shape changes the floating-point sums)
        order = sorted(todo, key=lambda k: (len(todo[k][0]), k))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        state: dict[str, Any] = {}

        def capture(index: int, last: bool):
            def hook(module: Any, args: Any, output: Any) -> None:
                hidden = (output[0] if isinstance(output, tuple) else output).float()
                weights = state["answer_mask"].to(hidden.device)
                sums = (hidden * weights.unsqueeze(-1)).sum(dim=1)
                state["means"][index] = (sums / weights.sum(dim=1, keepdim=True).clamp(min=1)).cpu()
                if last:
                    raise _Stop

            return hook

        handles = [blocks[x].register_forward_hook(capture(j, j == len(used) - 1)) for j, x in enumerate(used)]
        bar = tqdm(total=total, initial=done, desc=f"activations {engine.model}", unit="answer",
                   disable=not progress, dynamic_ncols=True)
        try:
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                width = max(len(todo[k][0]) for k in chunk)
                ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                answer_mask = torch.zeros((len(chunk), width), dtype=torch.float32)
                for i, k in enumerate(chunk):  # right padding: positions 0..len-1 as in sampling
                    seq, n_prompt = todo[k]
                    ids[i, :len(seq)] = torch.tensor(seq)
                    mask[i, :len(seq)] = 1
                    answer_mask[i, n_prompt:len(seq)] = 1.0
                state.update(answer_mask=answer_mask, means=[None] * len(used))
                try:
                    model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
                except _Stop:
                    pass
                stacked = torch.stack(state["means"], dim=1).numpy()  # [batch, layers, hidden]
                records = []
                for i, k in enumerate(chunk):
                    n_answer = int(answer_mask[i].sum())
                    record = {"layers": used, "hidden": int(stacked.shape[2]), "tokens": n_answer,
                              "shape": [len(used), int(stacked.shape[2])]}
                    if n_answer:
                        record["data"] = _pack(stacked[i])
                    found[k] = record
                    records.append((k, record))
                if store is not None:
                    store.put_many(ACTIVATION_KIND, records)  # one transaction per batch
                bar.update(len(chunk))
        finally:
            bar.close()
            for handle in handles:
                handle.remove()
