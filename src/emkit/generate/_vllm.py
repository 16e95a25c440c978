"""``vllm``: GPU sampling with vLLM's offline ``LLM`` class; LoRA adapters through ``LoRARequest`` on one engine.

vLLM is an optional extra (no CPU wheel; it pins its own torch), imported only here. How each piece follows vLLM's
documented API (``vllm.LLM``, ``LLM.chat``, ``SamplingParams``, ``vllm.lora.request.LoRARequest``):
- engine: ``LLM(model=folder, dtype=, tensor_parallel_size=, gpu_memory_utilization=, max_model_len=,
  enable_lora=True, max_lora_rank=, seed=0)``. ``max_model_len`` (prompt + answer tokens) is passed only when
  set; unset, vLLM derives it from the model config. The engine is cached under *every* argument, and a process
  holds one engine at a time: each takes ``gpu_memory_utilization`` of the GPU, so a second one beside it would
  not fit. The experiment runner shuts it down when the sampling stage ends (:func:`release`).
- prompts: ``LLM.chat(conversations, sampling_params=[...], lora_request=, chat_template=,
  add_generation_prompt=True)``; the chat template is the model's unless the ``chat_template`` option gives one.
  Before sampling, each prompt is formatted with the engine's tokenizer and its length plus ``max_tokens`` is
  checked against the engine's ``max_model_len``: vLLM would refuse the prompt or cut the answer short.
- seeds: each sample is its own request, ``SamplingParams(n=1, seed=...)``, the seed derived from (seed,
  messages, sample index) as for the hf backend (folded to 31 bits), so a resumed run draws the same samples.
- LoRA: ``LoRARequest(lora_name=, lora_int_id=, lora_path=)`` with an id derived from the adapter's content
  (vLLM tells adapters apart by that positive integer); an adapter of rank above ``max_lora_rank`` is refused
  before the engine starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError, require
from emkit.generate._backend import Backend, Result
from emkit.generate._hf import _local_identity, _read_template
from emkit.generate._types import Completion, GenerationRequest, sample_seed

log = logging.getLogger("emkit.generate")

# Engine arguments (sorted items) -> vllm.LLM. At most one entry: see the module docstring.
_ENGINES: dict[tuple[tuple[str, Any], ...], Any] = {}


def release() -> list[str]:
    """Shut every cached engine down (its worker processes and GPU memory); one log line each."""
    lines = []
    for key, llm in list(_ENGINES.items()):
        _shutdown(llm)
        lines.append(f"vllm: shut down the engine of {dict(key)['model']}")
    _ENGINES.clear()
    if lines:
        import sys

        distributed = sys.modules.get("vllm.distributed")
        cleanup = getattr(distributed, "cleanup_dist_env_and_memory", None)
        if cleanup is None:
            try:
                from vllm.distributed import cleanup_dist_env_and_memory as cleanup
            except ImportError:  # older vLLM: dropping the engine and empty_cache is all there is
                cleanup = None
        if cleanup is not None:
            cleanup()  # tears down vLLM's process groups, gc.collect(), torch.cuda.empty_cache()
    return lines


def _shutdown(llm: Any) -> None:
    """``LLM.shutdown()`` where vLLM has it, else the engine core's ``shutdown()`` (V1), else nothing to call."""
    shutdown = getattr(llm, "shutdown", None)
    if callable(shutdown):
        shutdown()
        return
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if callable(getattr(core, "shutdown", None)):
        core.shutdown()


class VLLMBackend(Backend):
    """Options: dtype ("auto"), tensor_parallel_size, gpu_memory_utilization, max_model_len, max_lora_rank,
    chat_template, batch_size (samples handed to vLLM at once; each batch is stored before the next)."""

    name = "vllm"

    def __init__(self, model: str, adapter: str | None = None, *, dtype: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, max_lora_rank: int = 64,
                 chat_template: str | None = None, batch_size: int = 1024, **options: Any) -> None:
        super().__init__(model, adapter, **options)
        if not 0 < gpu_memory_utilization <= 1:
            raise EmkitError(f"vllm: gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}",
                             hint="the fraction of GPU memory the engine may take, e.g. 0.9")
        if batch_size < 1 or tensor_parallel_size < 1 or max_lora_rank < 1 or (max_model_len or 1) < 1:
            raise EmkitError("vllm: batch_size, tensor_parallel_size, max_lora_rank and max_model_len must be >= 1")
        self.dtype, self.tp, self.gpu_mem = dtype, tensor_parallel_size, gpu_memory_utilization
        self.max_model_len, self.max_lora_rank, self.batch_size = max_model_len, max_lora_rank, batch_size
        self.chat_template = _read_template(chat_template)

    def identity(self) -> dict[str, Any]:
        return _local_identity(self.model, self.dtype, self.chat_template)

    def engine_args(self, folder: str) -> dict[str, Any]:
        """Every argument the engine is built with (and cached under)."""
        args: dict[str, Any] = {"model": folder, "dtype": self.dtype, "tensor_parallel_size": self.tp,
                                "gpu_memory_utilization": self.gpu_mem, "enable_lora": True,
                                "max_lora_rank": self.max_lora_rank, "seed": 0}
        if self.max_model_len is not None:
            args["max_model_len"] = self.max_model_len
        return args

    def _engine(self) -> Any:
        vllm = require("vllm", "vllm", "the vllm generation backend")
        from emkit.models import resolve_model

        args = self.engine_args(str(resolve_model(self.model)))
        key = tuple(sorted(args.items()))
        if key not in _ENGINES:
            if _ENGINES:
                log.info("vllm: engine arguments changed; shutting the running engine down first")
                for line in release():
                    log.info("%s", line)
            log.info("vllm: starting an engine: %s", ", ".join(f"{k}={v}" for k, v in args.items()))
            _ENGINES[key] = vllm.LLM(**args)
        return _ENGINES[key]

    def _lora(self) -> Any:
        if self.adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        ident = self.adapter_identity() or {}
        path = str(ident.get("path", self.adapter))
        # vLLM tells adapters apart by a positive integer id: derive it from the adapter's content.
        lora_id = int(hashlib.sha256(f"{path}|{ident.get('sha256')}".encode()).hexdigest()[:7], 16) + 1
        return LoRARequest(lora_name=f"adapter-{lora_id}", lora_int_id=lora_id, lora_path=path)

    def _check_adapter_rank(self) -> None:
        if self.adapter is None:
            return
        config = Path(self.adapter).expanduser() / "adapter_config.json"
        if not config.exists():
            raise EmkitError(f"vllm: {self.adapter} holds no adapter_config.json (not a PEFT LoRA adapter)",
                             hint="pass the adapter folder written by `emkit train`")
        rank = int(json.loads(config.read_text(encoding="utf-8")).get("r", 0))
        if rank > self.max_lora_rank:
            raise EmkitError(f"vllm: adapter {self.adapter} has LoRA rank {rank} > max_lora_rank "
                             f"{self.max_lora_rank}", hint=f"set the backend option max_lora_rank to {rank} or more")

    def _check_lengths(self, llm: Any, requests: list[GenerationRequest]) -> None:
        """Prompt + max_tokens must fit the engine's max_model_len (vLLM refuses longer prompts)."""
        limit = getattr(getattr(getattr(llm, "llm_engine", None), "model_config", None), "max_model_len", None)
        limit = limit or self.max_model_len
        if not limit or not requests:
            return
        tokenizer = llm.get_tokenizer()
        for i, req in enumerate(requests):
            text = tokenizer.apply_chat_template(req.messages, chat_template=self.chat_template, tokenize=False,
                                                 add_generation_prompt=True)
            length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if length + req.sampling.max_tokens > limit:
                raise EmkitError(
                    f"vllm: prompt {i} is {length} tokens; with max_tokens {req.sampling.max_tokens} that is "
                    f"{length + req.sampling.max_tokens} > max_model_len {limit}",
                    hint="raise the backend option max_model_len (the model's context allows it?) or lower "
                         "sampling.max_tokens")

    def batches(self, requests: list[GenerationRequest]) -> Iterator[list[Result]]:
        self._check_adapter_rank()  # before the engine: loading takes minutes
        llm = self._engine()
        from vllm import SamplingParams

        self._check_lengths(llm, requests)
        lora = self._lora()
        jobs = [(r, s) for r, req in enumerate(requests) for s in req.sample_indices]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            # One request per sample, each with its own seed (31 bits: what every vLLM version takes).
            params = [SamplingParams(n=1, max_tokens=requests[r].sampling.max_tokens,
                                     temperature=requests[r].sampling.temperature, top_p=requests[r].sampling.top_p,
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
