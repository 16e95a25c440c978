"""Content hashes: the identity of every unit of work (a sample, a judgment, a training run).

A hash covers everything that determines the result, serialised canonically (sorted keys, no whitespace),
so that re-running finds finished work and changed inputs never reuse stale results.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# Bump when the meaning of stored records changes; it is part of every content hash.
FORMAT_VERSION = 1


def _default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot hash object of type {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON for hashing (sorted keys, compact, unicode kept)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def content_hash(obj: Any, *, kind: str = "") -> str:
    """SHA-256 hex of ``kind`` + format version + the canonical JSON of ``obj``."""
    payload = f"{kind}\x00{FORMAT_VERSION}\x00{canonical_json(obj)}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
