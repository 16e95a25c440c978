"""Automatic device and dtype choice, each returned with the reason (printed once per load)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

log = logging.getLogger("emkit.models")


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def choose_device(requested: str = "auto") -> tuple[str, str]:
    """('cuda'|'mps'|'cpu', reason)."""
    import torch

    if requested != "auto":
        return requested, "requested"
    if torch.cuda.is_available():
        return "cuda", f"CUDA GPU found ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps", "Apple MPS found"
    return "cpu", "no GPU found"


def choose_dtype(requested: str = "auto", device: str = "cpu"):
    """(torch.dtype, reason). bf16 on GPUs and on CPUs with AVX512-BF16/AMX (fast bf16 matmuls), else fp32."""
    import torch

    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if requested != "auto":
        if requested not in names:
            from emkit.errors import EmkitError

            raise EmkitError(f"unknown dtype {requested!r}", hint="use one of: auto, bf16, fp16, fp32")
        return names[requested], "requested"
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16: GPU supports bfloat16"
        return torch.float16, "fp16: GPU lacks bfloat16"
    if device == "mps":
        return torch.float16, "fp16: Apple MPS"
    flags = _cpu_flags()
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return torch.bfloat16, "bf16: CPU supports AVX512-BF16/AMX"
    return torch.float32, "fp32: CPU has no AVX512-BF16/AMX (bf16 would be emulated and slow)"
