"""Memory arithmetic: KV-cache bytes per token, weights bytes, free memory, and the sampling batch size.

The KV cache of a standard decoder holds, per token, a key and a value vector per layer and KV head:

    kv bytes per token = num_layers x 2 x num_kv_heads x head_dim x dtype bytes

(Qwen2.5-0.5B: 24 x 2 x 2 x 64 x 2 = 12 KiB in bf16; Qwen2.5-7B: 28 x 2 x 4 x 128 x 2 = 56 KiB; Qwen2.5-32B:
64 x 2 x 8 x 128 x 2 = 256 KiB). One sampled row of ~700 tokens (a ~100-token prompt + 600 new) of the 32B model
is therefore 175 MiB; 128 such rows are 22.4 GiB on top of ~61 GiB of weights, which is why a fixed batch of 128
fails on an 80 GB card and the batch is chosen from the memory that is actually free.

Per row :func:`plan_batch` counts (an upper bound; the decode loop is ``emkit.generate._hf``):
- the KV cache of the longest prompt of the batch plus every new token;
- the sampler's per-step buffers over the vocabulary: the logits (model dtype, then fp32), probabilities and
  their cumulative sums in fp64, the top-p sort (fp64 values + int64 indices) and its masks: 48 bytes per
  vocabulary entry (7.0 MiB for Qwen's 152k);
- the prefill's activations when every row has a prompt of its own (hidden states and the MLP's three
  intermediate tensors per prompt token: (4 x hidden + 3 x intermediate) x dtype bytes).
It keeps 10% of the free memory + 1 GiB aside for the allocator's fragmentation and the attention kernels'
work space, and rounds down to a step of a ~x1.5 ladder (..., 64, 96, 128, 192, ...), so that small changes of
free memory between runs do not change the batch (the batch shape changes bf16 text, see ``emkit.generate._hf``).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("emkit.models")

GIB = 1024**3
MIB = 1024**2
# Sampler buffers per vocabulary entry and row (emkit.generate._hf._sample): logits in the model dtype (2) and
# fp32 (4), fp32 softmax (4) and its fp64 copy (8), fp64 cdf (8), top-p sort values (8) + int64 order (8) + the
# mass-before mask (8) = 50, rounded down to 48 as the softmax input is freed before the sort.
SAMPLER_BYTES_PER_VOCAB = 48
RESERVE_FRACTION = 0.10
RESERVE_BYTES = 1 * GIB
# Batch sizes are rounded down to one of these (steps of ~x1.5).
LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def dtype_bytes(dtype: Any) -> int:
    """Bytes of one element of a torch dtype or a name (bf16, float32, ...)."""
    name = str(dtype).replace("torch.", "")
    table = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2, "float32": 4, "fp32": 4, "float": 4,
             "float64": 8, "fp64": 8, "double": 8}
    if name not in table:
        raise ValueError(f"unknown dtype {dtype!r}")
    return table[name]


@dataclass(frozen=True)
class KVShape:
    """What sizes a model's KV cache: layers, KV heads (grouped-query attention shares them) and head size."""

    layers: int
    kv_heads: int
    head_dim: int

    def bytes_per_token(self, element_bytes: int) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * element_bytes

    def formula(self, element_bytes: int) -> str:
        return (f"{self.layers} layers x 2 x {self.kv_heads} KV heads x {self.head_dim} head dim x "
                f"{element_bytes} bytes")


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def kv_shape(config: Any) -> KVShape:
    """The KV shape of a transformers config (multimodal configs: their text part). Needs ``num_hidden_layers``,
    ``num_attention_heads`` and ``hidden_size`` or ``head_dim``; ``num_key_value_heads`` defaults to the heads."""
    text = _text_config(config)
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = getattr(text, "head_dim", None) or int(text.hidden_size) // heads
    return KVShape(int(text.num_hidden_layers), kv_heads, int(head_dim))


def prefill_bytes_per_token(config: Any, element_bytes: int) -> int:
    """Activations the prefill holds per prompt token in one layer: hidden states and the MLP intermediates."""
    text = _text_config(config)
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    inter = int(getattr(text, "intermediate_size", 0) or 0)
    return (4 * hidden + 3 * inter) * element_bytes


@dataclass(frozen=True)
class BatchPlan:
    """The chosen batch size and the numbers behind it (``reason`` is printed once per choice)."""

    batch_size: int
    reason: str
    row_bytes: int  # memory one row needs (upper bound)
    kv_bytes_per_token: int
    budget_bytes: int  # free memory minus the reserve
    fits: int  # rows that fit the budget before rounding and the cap


def plan_batch(config: Any, *, element_bytes: int, prompt_tokens: int, new_tokens: int, free_bytes: int,
               cap: int, vocab_size: int | None = None, device: str = "cuda", layer_share: float = 1.0
               ) -> BatchPlan:
    """Rows per forward batch that fit ``free_bytes`` (memory free after the weights are loaded).

    ``layer_share``: the fraction of the layers (so of the KV cache) on this device when a model is split over
    several (device_map="auto"); the caller takes the smallest plan over the devices.
    """
    text = _text_config(config)
    vocab = int(vocab_size or getattr(text, "vocab_size", 0) or 0)
    shape = kv_shape(config)
    kv_token = shape.bytes_per_token(element_bytes)
    tokens = prompt_tokens + new_tokens
    kv_row = int(kv_token * tokens * layer_share)
    sampler_row = vocab * SAMPLER_BYTES_PER_VOCAB
    prefill_row = prefill_bytes_per_token(config, element_bytes) * prompt_tokens
    row = kv_row + sampler_row + prefill_row
    budget = int(free_bytes * (1 - RESERVE_FRACTION)) - RESERVE_BYTES
    fits = max(0, budget // row) if row > 0 else cap
    stepped = max((s for s in LADDER if s <= fits), default=0)
    batch = max(1, min(cap, stepped))
    what = (f"{_fmt(free_bytes)} free on {device}, {_fmt(budget)} usable; KV cache "
            f"{kv_token / 1024:.0f} KiB/token ({shape.formula(element_bytes)})"
            + (f" x {layer_share:.2f} of the layers" if layer_share < 1 else "")
            + f" x {tokens} tokens ({prompt_tokens} prompt + {new_tokens} new) = {_fmt(kv_row)}/row, "
              f"+ sampler {_fmt(sampler_row)} + prefill {_fmt(prefill_row)} = {_fmt(row)}/row -> {fits} rows fit")
    if fits < 1:
        reason = (f"batch 1: even one row does not fit ({what}); expect out-of-memory: lower max_tokens, or "
                  "spread the model over more GPUs")
    elif batch == cap and fits > cap:
        reason = f"batch {batch}: {what}, capped at {cap}"
    else:
        reason = f"batch {batch}: {what}, rounded down to {batch}"
    return BatchPlan(batch, reason, row, kv_token, budget, int(fits))


def _fmt(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if abs(n) >= GIB else f"{n / MIB:.1f} MiB"


# --------------------------------------------------------------------------- measuring


def free_bytes(device: str) -> int | None:
    """Memory a new allocation on ``device`` can use: CUDA free memory plus what PyTorch holds cached but unused;
    on CPU, MemAvailable; None where unknown (e.g. MPS)."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(0, cached))
    if device == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def layer_devices(model: Any) -> dict[str, float]:
    """Share of the decoder layers on each device: ``{"cuda:0": 1.0}`` for a model on one device; from
    ``hf_device_map`` for a split one (entries like ``model.layers.12``)."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map or len(set(map(str, device_map.values()))) <= 1:
        device = str(getattr(model, "device", "cpu"))
        if device_map:
            only = next(iter(device_map.values()))
            device = _device_name(only)
        return {device: 1.0}
    counts: dict[str, int] = {}
    for name, where in device_map.items():
        parts = name.split(".")
        if "layers" in parts or "h" in parts:
            device = _device_name(where)
            counts[device] = counts.get(device, 0) + 1
    total = sum(counts.values())
    if not total:
        return {_device_name(next(iter(device_map.values()))): 1.0}
    return {device: n / total for device, n in counts.items()}


def _device_name(where: Any) -> str:
    if isinstance(where, int):
        return f"cuda:{where}"
    return str(where)


def weights_bytes(folder: str | Path, element_bytes: int | None = None) -> int:
    """Bytes the weights in ``folder`` take in memory: from the safetensors headers (element counts, times
    ``element_bytes`` when the model is loaded in another dtype than stored); ``.bin`` files by size."""
    folder = Path(folder)
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            import json

            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            total += count * (element_bytes or _DTYPE_BYTES.get(info["dtype"], 4))
    if total == 0:
        total = sum(p.stat().st_size for p in folder.glob("*.bin"))
    return total


# Leave room beside the weights: on one GPU at least 2 GiB (a batch of a few rows); with several GPUs to spread
# over, a model taking more than half of one GPU's free memory is split instead, so that the KV cache gets the
# room of all of them (Qwen2.5-32B, 61 GiB, on two 80 GB cards: ~95 GiB for the cache instead of ~16).
MIN_ROOM_BYTES = 2 * GIB
SPLIT_FRACTION = 0.5


def choose_device_map(folder: str | Path, element_bytes: int, device: str) -> tuple[Any, str]:
    """How ``from_pretrained`` places the weights: ``(device_map, reason)``.

    CUDA: ``{"": "cuda:N"}`` when the weights fit the device (loaded straight onto it, never staged in host RAM
    as ``.to(device)`` would), else ``"auto"`` (accelerate spreads the layers over the visible GPUs, then CPU RAM).
    Other devices: ``None`` (load, then ``.to(device)``).
    """
    if not device.startswith("cuda"):
        return None, f"weights loaded on {device}"
    import torch

    index = torch.device(device).index
    pinned = index is not None
    index = torch.cuda.current_device() if index is None else index
    need = weights_bytes(folder, element_bytes)
    free = free_bytes(f"cuda:{index}") or 0
    gpus = torch.cuda.device_count()
    spread = not pinned and gpus > 1
    limit = SPLIT_FRACTION * free if spread else free - MIN_ROOM_BYTES
    if need <= limit:
        return {"": f"cuda:{index}"}, (f"device_map cuda:{index}: {_fmt(need)} of weights, {_fmt(free)} free "
                                       "(loaded straight onto the GPU)")
    if spread:
        return "auto", (f"device_map=auto: {_fmt(need)} of weights > {SPLIT_FRACTION:.0%} of the {_fmt(free)} free "
                        f"on cuda:{index}; layers spread over {gpus} GPUs")
    return "auto", (f"device_map=auto: {_fmt(need)} of weights do not fit the {_fmt(free)} free on cuda:{index} "
                    f"with {_fmt(MIN_ROOM_BYTES)} to spare; the layers that do not fit stay in CPU RAM (slow)")


def release_accelerator_memory() -> str | None:
    """Collect garbage and hand PyTorch's cached CUDA blocks back to the driver (``torch.cuda.empty_cache()``), so
    the next stage, another process or a vLLM engine can have them. Returns what was freed on CUDA, or None when
    torch is not loaded or no CUDA device is there (on CPU, dropping the references is all it takes)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free nothing
    if torch is None or not torch.cuda.is_available():
        return None
    before = sum(torch.cuda.memory_reserved(i) for i in range(torch.cuda.device_count()))
    torch.cuda.empty_cache()
    after = sum(torch.cuda.memory_reserved(i) for i in range(torch.cuda.device_count()))
    allocated = sum(torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count()))
    return (f"cuda: reserved {_fmt(before)} -> {_fmt(after)} (empty_cache), {_fmt(allocated)} still allocated")


def auto_batch_size(model: Any, *, prompt_tokens: int, new_tokens: int, cap: int) -> BatchPlan:
    """:func:`plan_batch` for a loaded model, from the memory free now on each device that holds its layers
    (the smallest plan wins); ``cap`` when no device reports its free memory (e.g. MPS)."""
    element = dtype_bytes(getattr(model, "dtype", "float32"))
    plans = []
    for device, share in layer_devices(model).items():
        free = free_bytes(device)
        if free is not None:
            plans.append(plan_batch(model.config, element_bytes=element, prompt_tokens=prompt_tokens,
                                    new_tokens=new_tokens, free_bytes=free, cap=cap, device=device,
                                    layer_share=share))
    if not plans:
        kv = kv_shape(model.config).bytes_per_token(element)
        return BatchPlan(cap, f"batch {cap}: free memory of {', '.join(layer_devices(model))} unknown (the default)",
                         0, kv, 0, cap)
    return min(plans, key=lambda plan: plan.batch_size)
