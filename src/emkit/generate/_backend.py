"""The backend interface and the registry that maps a backend name to its class (imported only when used)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError
from emkit.generate._types import Completion, GenerationRequest

# name -> "module:Class". Heavy libraries (torch, vllm, openai) are imported by the backend module itself.
BACKENDS: dict[str, str] = {
    "hf": "emkit.generate._hf:HFBackend",
    "vllm": "emkit.generate._vllm:VLLMBackend",
    "openai": "emkit.generate._openai:OpenAIBackend",
    "mock": "emkit.generate._mock:MockBackend",
}

# One finished sample: (index of the request in the list given to ``batches``, its sample index, the answer).
Result = tuple[int, int, Completion]


class Backend:
    """Samples completions. Subclasses implement :meth:`batches`; everything else builds on it.

    ``batches`` yields lists of finished samples as soon as each batch is done, so callers can persist them
    before the next batch starts (a kill then loses at most one batch of work).
    """

    name = "base"

    def __init__(self, model: str, adapter: str | None = None, **options: Any) -> None:
        if options:
            raise EmkitError(f"backend {self.name!r} got unknown options: {', '.join(sorted(options))}",
                             hint="check backend_options / the CLI flags for this backend")
        self.model = model
        self.adapter = adapter

    def identity(self) -> dict[str, Any]:
        """Settings that change the sampled text (part of every content hash), e.g. the dtype."""
        return {}

    def adapter_identity(self) -> dict[str, Any] | None:
        """What identifies the adapter in content hashes: its path and the SHA-256 of its weights file."""
        return adapter_identity(self.adapter)

    def batches(self, requests: list[GenerationRequest]) -> Iterator[list[Result]]:
        raise NotImplementedError

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        """All completions, ``out[i][j]`` being sample ``requests[i].sample_indices[j]``."""
        found: dict[tuple[int, int], Completion] = {}
        for batch in self.batches(requests):
            found.update(((r, s), c) for r, s, c in batch)
        return [[found[(r, s)] for s in req.sample_indices] for r, req in enumerate(requests)]


def adapter_identity(adapter: str | None) -> dict[str, Any] | None:
    """``{"path", "sha256"}`` of a PEFT adapter folder; a retrained adapter at the same path gets new hashes."""
    if adapter is None:
        return None
    from emkit.hashing import file_sha256

    path = Path(adapter).expanduser()
    for weights in ("adapter_model.safetensors", "adapter_model.bin"):
        if (path / weights).exists():
            return {"path": str(path.resolve()), "sha256": file_sha256(path / weights)}
    return {"path": str(adapter), "sha256": None}


def release_backends() -> list[str]:
    """Free what the backends cached for reuse (HF models, vLLM engines) and empty the CUDA cache.

    Each backend module may define ``release() -> list[str]`` (one line per thing dropped, for the log); only
    modules already imported are asked, so this never imports torch or vllm. Called by the experiment runner
    when a stage ends, so the next stage (or the judge's model) gets the GPU memory back.
    """
    import sys

    from emkit.models._memory import release_accelerator_memory

    lines: list[str] = []
    for target in BACKENDS.values():
        release = getattr(sys.modules.get(target.split(":")[0]), "release", None)
        if callable(release):
            lines.extend(release())
    freed = release_accelerator_memory()
    if freed:
        lines.append(freed)
    return lines


def get_backend(name: str, model: str, adapter: str | None = None, **options: Any) -> Backend:
    """Instantiate the backend ``name`` for ``model`` (+ optional adapter) with backend-specific options."""
    if name not in BACKENDS:
        raise EmkitError(f"unknown generation backend {name!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    module_name, cls_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(model, adapter, **options)
