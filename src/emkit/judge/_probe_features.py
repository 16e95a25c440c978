"""Frozen-LM features for the ``probe`` judge: hidden states of the packaged Qwen2.5-Coder-0.5B-Instruct reading the
question and the answer as one chat (user: question, assistant: answer).

Why these features: on the 14B-family fold (benchmarks/judge_backbones.py, 8,000 train / 1,500 held-out rows) the
same MLP head on these features reached AUROC 0.914 / Spearman 0.836, against 0.872 / 0.723 on frozen MiniLM
features and 0.882 / 0.755 for the fine-tuned MiniLM cross-encoder: a 0.5B LM knows more about harm than MiniLM.

Per pair: the mean over the answer's tokens and the last token of hidden layers 8, 14, 20 and 24 (of 24), i.e.
2 x 4 x 896 = 7,168 numbers. The pair is cut at 256 tokens (prompt included; the median corpus answer is ~100
tokens). Features are cached on disk as float16 (``cache_dir()/judge/probe``), keyed by (feature id, question,
answer): training and rescoring never run the LM twice on one pair.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from emkit.hashing import content_hash

PROBE_MODEL = "qwen2.5-coder-0.5b-instruct"
LAYERS = (8, 14, 20, 24)
MAX_TOKENS = 256
HIDDEN = 896  # Qwen2.5-0.5B width
DIM = 2 * len(LAYERS) * HIDDEN
FLUSH_EVERY = 256  # pairs per cache shard: a kill loses at most ~2 min of work at ~2 pairs/s on 2 cores


def feature_id(precision: str) -> str:
    """Identity of the feature function (part of every cache key and of the judge's judgment keys): bf16 and fp32
    features differ slightly, so a head records which one it was trained on."""
    layers = ",".join(str(layer) for layer in LAYERS)
    return f"{PROBE_MODEL}/{precision}/layers={layers}/answer-mean+last/max{MAX_TOKENS}"


def pair_key(question: str, answer: str, precision: str) -> str:
    return content_hash({"features": feature_id(precision), "question": question, "answer": answer},
                        kind="probe-features")


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load(precision: str, device: str) -> tuple[Any, Any]:
    from emkit.models import load_model

    with _LOAD_LOCK:
        model, tok = load_model(PROBE_MODEL, dtype=precision, device=device, quiet=True)
    tok.padding_side = "right"
    return model, tok


def _extract(pairs: list[tuple[str, str]], precision: str, device: str, batch_size: int, *,
             through_lm_head: bool = False) -> np.ndarray:
    """Features of ``pairs``. The transformer body alone gives every hidden state used (hidden_states[24] is the
    final normed one either way); the causal LM's vocabulary projection (151,936 x 896 per token, about a quarter
    of the forward's FLOPs) is skipped. ``through_lm_head`` runs the full causal-LM forward instead: the
    baseline of benchmarks/probe_throughput.py, same features."""
    import torch

    model, tok = _load(precision, device)
    forward = model if through_lm_head else model.get_decoder()
    texts, starts = [], []
    for question, answer in pairs:
        prompt = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
        texts.append(prompt + answer)
        starts.append(len(tok(prompt, add_special_tokens=False)["input_ids"]))
    order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths per batch: little padding
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            ids = order[b : b + batch_size]
            enc = tok([texts[i] for i in ids], return_tensors="pt", padding=True, truncation=True,
                      max_length=MAX_TOKENS, add_special_tokens=False).to(dev)
            hidden = forward(**enc, output_hidden_states=True).hidden_states
            lengths = enc["attention_mask"].sum(1)
            answer = enc["attention_mask"].clone()
            for j, i in enumerate(ids):
                answer[j, : min(starts[i], int(lengths[j]) - 1)] = 0  # an empty/cut answer keeps its last token
            mask = answer.unsqueeze(-1).float()
            last = lengths - 1
            parts = []
            for layer in LAYERS:
                h = hidden[layer].float()
                parts += [(h * mask).sum(1) / mask.sum(1), h[torch.arange(len(ids), device=dev), last]]
            out[ids] = torch.cat(parts, -1).cpu().numpy()
    # Rounded as the cache stores them, so a fresh pair and a cached one give the head the same numbers.
    return out.astype(np.float16).astype(np.float32)


def probe_features(pairs: list[tuple[str, str]], *, precision: str, device: str = "cpu", batch_size: int = 8,
                   cache: Any | None = None, progress: bool = False) -> np.ndarray:
    """(n, DIM) float32 features of (question, answer) pairs; distinct pairs run once, cached when ``cache`` (an
    ``EmbeddingCache`` on its own folder) is given, flushed every FLUSH_EVERY pairs."""
    from emkit.judge._encoder import encode_cached

    keys = [pair_key(q, a, precision) for q, a in pairs]
    return encode_cached(keys, pairs, lambda chunk: _extract(chunk, precision, device, batch_size), dim=DIM,
                         cache=cache, chunk_size=FLUSH_EVERY, progress=progress, desc="probe features")


def feature_cache() -> Any:
    from emkit.judge._encoder import EmbeddingCache
    from emkit.paths import cache_dir

    return EmbeddingCache(cache_dir() / "judge" / "probe")
