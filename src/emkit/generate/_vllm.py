"""``vllm``: GPU sampling with vLLM; LoRA adapters through ``LoRARequest`` on one engine per base model.

vLLM is an optional extra (no CPU wheel; it pins its own torch), imported only here. Each sample is its own
request with ``n=1`` and its own seed, so results repeat exactly for the same engine settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from emkit.errors import require
from emkit.generate._backend import Backend, Result
from emkit.generate._hf import _local_identity, _read_template
from emkit.generate._types import Completion, GenerationRequest, sample_seed

# (model folder, dtype, tensor parallel size) -> vllm.LLM, kept for the life of the process.
_ENGINES: dict[tuple[str, str, int], Any] = {}


class VLLMBackend(Backend):
    """Options: dtype ("auto"), tensor_parallel_size, gpu_memory_utilization, max_model_len, max_lora_rank,
    chat_template, batch_size (samples handed to vLLM at once; each batch is stored before the next)."""

    name = "vllm"

    def __init__(self, model: str, adapter: str | None = None, *, dtype: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, max_lora_rank: int = 64,
                 chat_template: str | None = None, batch_size: int = 1024, **options: Any) -> None:
        super().__init__(model, adapter, **options)

        self.dtype, self.tp, self.gpu_mem = dtype, tensor_parallel_size, gpu_memory_utilization
        self.max_model_len, self.max_lora_rank, self.batch_size = max_model_len, max_lora_rank, batch_size
        self.chat_template = _read_template(chat_template)

    def identity(self) -> dict[str, Any]:
        return _local_identity(self.model, self.dtype, self.chat_template)

    def _engine(self) -> Any:
        vllm = require("vllm", "vllm", "the vllm generation backend")
        from emkit.models import resolve_model

        folder = str(resolve_model(self.model))
        key = (folder, self.dtype, self.tp)
        if key not in _ENGINES:
            _ENGINES[key] = vllm.LLM(model=folder, dtype=self.dtype, tensor_parallel_size=self.tp,
                                     gpu_memory_utilization=self.gpu_mem, max_model_len=self.max_model_len,
                                     enable_lora=True, max_lora_rank=self.max_lora_rank, seed=0)
        return _ENGINES[key]

    def batches(self, requests: list[GenerationRequest]) -> Iterator[list[Result]]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        llm = self._engine()
        lora = None
        if self.adapter is not None:
            ident = self.adapter_identity() or {}
            # vLLM tells adapters apart by a positive integer id; derive it from the adapter's content.
            lora_id = int(hashlib.sha256(f"{ident.get('path')}|{ident.get('sha256')}".encode()).hexdigest()[:7], 16) + 1
            lora = LoRARequest(f"adapter-{lora_id}", lora_id, str(ident.get("path", self.adapter)))
        jobs = [(r, s) for r, req in enumerate(requests) for s in req.sample_indices]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            params = [SamplingParams(n=1, max_tokens=requests[r].sampling.max_tokens,
                                     temperature=requests[r].sampling.temperature, top_p=requests[r].sampling.top_p,
                                     top_k=-1, repetition_penalty=1.0,
                                     seed=sample_seed(requests[r].sampling, requests[r].messages, s) % 2**31)
                      for r, s in chunk]
            outputs = llm.chat([requests[r].messages for r, _ in chunk], sampling_params=params, use_tqdm=False,
                               lora_request=lora, chat_template=self.chat_template, add_generation_prompt=True)
            batch: list[Result] = []
            for (r, s), output in zip(chunk, outputs, strict=True):
                answer = output.outputs[0]
                batch.append((r, s, Completion(answer.text, answer.finish_reason or "stop",
                                               len(output.prompt_token_ids or []), len(answer.token_ids))))
            yield batch
