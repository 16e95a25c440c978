"""Sampling answers: one request/completion interface over the ``hf``, ``vllm``, ``openai`` and ``mock`` backends,
with every sample stored under its content hash so reruns skip finished work.

>>> from emkit.generate import SamplingConfig, sample_rows
>>> rows = sample_rows("smollm2-135m-instruct", prompts, n=100, sampling=SamplingConfig(seed=0), store=store)

Signatures:
- ``SamplingConfig(max_tokens=600, temperature=1.0, top_p=1.0, seed=0)`` (pydantic, extra keys forbidden).
- ``GenerationRequest(messages, n=1, sampling=SamplingConfig(), sample_indices=None)``;
  ``Completion(text, finish_reason, prompt_tokens, completion_tokens)``.
- ``get_backend(name: str, model: str, adapter: str | None = None, **options) -> Backend`` with
  ``Backend.generate(requests) -> list[list[Completion]]`` and ``Backend.batches(requests)`` yielding lists of
  ``(request_index, sample_index, Completion)`` per finished batch. Options: hf (dtype, device, batch_size,
  chat_template), vllm (dtype, tensor_parallel_size, gpu_memory_utilization, max_model_len, max_lora_rank,
  chat_template, batch_size), openai (base_url, api_key, concurrency, timeout_s, max_retries, backoff_s,
  backoff_max_s, batch_size), mock (answers, batch_size).
- ``sample_rows(model: str, prompts: list[EvalPrompt], *, n: int, sampling: SamplingConfig, backend: str = "hf",
  adapter: str | None = None, store: Store | None = None, meta: dict | None = None, progress=True,
  backend_options: dict | None = None) -> list[dict]``: result rows (docs/architecture.md) plus ``key``;
  ``progress``: True (a bar), False, or a hook(done, total, info) (``emkit._progress``).
- ``write_rows(rows, path) -> Path``: CSV / JSONL / Parquet by extension, atomically.
- ``release_backends() -> list[str]``: drop the models/engines backends keep for reuse and empty the CUDA cache
  (the experiment runner calls it when a stage ends; a backend module opts in with ``release() -> list[str]``).
- ``generation_key(...)``, ``sample_seed(sampling, messages, sample_index)``: the content hash and the
  per-sample seed (seeded HF runs repeat exactly; see ``emkit.generate._hf`` for what is guaranteed).
"""

from emkit.generate._backend import BACKENDS, Backend, get_backend, release_backends
from emkit.generate._sample import KIND, write_rows
from emkit.generate._sample import sample_rows as sample_rows
from emkit.generate._types import Completion, GenerationRequest, SamplingConfig, generation_key, sample_seed

__all__ = ["BACKENDS", "KIND", "Backend", "Completion", "GenerationRequest", "SamplingConfig", "generation_key",
           "get_backend", "release_backends", "sample_rows", "sample_seed", "write_rows"]
