"""``hf``: transformers on CPU or one GPU. Batched, left-padded, bucketed by prompt length; base models stay
loaded in-process and LoRA adapters are swapped on the same base (PEFT ``load_adapter``/``set_adapter``).

Sampling is done by our own logits processor, one ``torch.Generator`` per sample seeded from
:func:`~emkit.generate._types.sample_seed`; ``generate`` then runs greedy over a one-hot score row, so it
picks exactly our token. What this guarantees:

- the same samples asked again (same model, adapter, dtype, device, batch size, prompts and sample indices)
  give the same text, bit for bit: the batches are formed deterministically and each row's random stream
  is its own;
- a sample's random numbers do not depend on which other samples share its batch. Its text can still change
  when the batch changes (e.g. resuming half a run, or another batch size), because padding changes the
  floating-point sums of the forward pass; with fp32 on CPU such flips are rare, with bf16 less so.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError, require
from emkit.generate._backend import Backend, Result
from emkit.generate._types import Completion, GenerationRequest, sample_seed

log = logging.getLogger("emkit.generate")

# Default samples per forward batch. CPU: 64 keeps the KV cache of SmolLM2 at 600 new tokens under ~1.5 GB
# (23 KB per token in bf16) while amortising Python overhead; GPU: 128 (a 7B model at ~0.5 MB per token x 700
# tokens x 128 rows = 45 GB of cache, which fits one 80 GB card beside the weights).
_DEFAULT_BATCH = {"cpu": 64, "cuda": 128, "mps": 32}


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    adapters: dict[str, str] = field(default_factory=dict)  # peft adapter name -> folder


# (model ref, dtype name, device) -> loaded base model (+ adapters). Kept for the life of the process so that
# sampling several conditions on one base loads it once.
_CACHE: dict[tuple[str, str, str], _Loaded] = {}


def clear_cache() -> None:
    """Drop all cached models (frees their memory once no one else holds them)."""
    _CACHE.clear()


def _dtype_name(dtype: Any) -> str:
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}[str(dtype)]


class HFBackend(Backend):
    """transformers ``generate`` with per-sample seeds; options: dtype, device, batch_size, chat_template."""

    name = "hf"

    def __init__(self, model: str, adapter: str | None = None, *, dtype: str = "auto", device: str = "auto",
                 batch_size: int | None = None, chat_template: str | None = None, **options: Any) -> None:
        super().__init__(model, adapter, **options)
        require("torch", "ml", "the hf generation backend")
        from emkit.models import choose_device, choose_dtype

        self.device, self.device_reason = choose_device(device)
        torch_dtype, self.dtype_reason = choose_dtype(dtype, self.device)
        self.dtype = _dtype_name(torch_dtype)
        self.batch_size = batch_size or _DEFAULT_BATCH.get(self.device.split(":")[0], 32)
        if self.batch_size < 1:
            raise EmkitError(f"batch_size must be >= 1, got {self.batch_size}", hint="pass a positive batch size")
        self.chat_template = _read_template(chat_template)

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": self.dtype}
        if self.chat_template is not None:
            out["chat_template"] = hashlib.sha256(self.chat_template.encode()).hexdigest()
        return out

    # ------------------------------------------------------------------ model and adapters
    def _loaded(self) -> _Loaded:
        key = (self.model, self.dtype, self.device)
        if key not in _CACHE:
            from emkit.models import load_model

            log.info("hf: loading %s on %s (%s), %s", self.model, self.device, self.device_reason, self.dtype_reason)
            model, tokenizer = load_model(self.model, dtype=self.dtype, device=self.device, quiet=True)
            _CACHE[key] = _Loaded(model, tokenizer)
        return _CACHE[key]

    def _activate(self, loaded: _Loaded) -> contextlib.AbstractContextManager:
        """Make the requested adapter (or none) active; returns a context to run generation in."""
        from peft import PeftModel

        if self.adapter is None:
            # A base that has adapters attached answers as the plain base inside disable_adapter().
            return loaded.model.disable_adapter() if isinstance(loaded.model, PeftModel) else contextlib.nullcontext()
        ident = self.adapter_identity() or {}
        if ident.get("sha256") is None:
            raise EmkitError(f"adapter {self.adapter!r} is not a PEFT adapter folder (no adapter_model.safetensors)",
                             hint="pass the folder written by `emkit train` (it holds adapter_config.json)")
        name = "a" + hashlib.sha256(f"{ident['path']}|{ident['sha256']}".encode()).hexdigest()[:12]
        if not isinstance(loaded.model, PeftModel):
            loaded.model = PeftModel.from_pretrained(loaded.model, ident["path"], adapter_name=name)
        elif name not in loaded.model.peft_config:
            loaded.model.load_adapter(ident["path"], adapter_name=name)
        loaded.adapters[name] = ident["path"]
        loaded.model.set_adapter(name)
        loaded.model.eval()
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ prompts
    def _encode(self, tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
        template = self.chat_template or getattr(tokenizer, "chat_template", None)
        if not template:
            raise EmkitError(f"model {self.model!r} has no chat template, so chat messages cannot be formatted",
                             hint="pass a Jinja chat template: --chat-template FILE (backend option chat_template)")
        text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ generation
    def batches(self, requests: list[GenerationRequest]) -> Iterator[list[Result]]:
        import torch

        loaded = self._loaded()
        tokenizer = loaded.tokenizer
        encoded: dict[int, list[int]] = {}
        rows = []  # (sampling key, prompt length, request index, sample index)
        for r, req in enumerate(requests):
            encoded[r] = self._encode(tokenizer, req.messages)
            s_key = (req.sampling.max_tokens, req.sampling.temperature, req.sampling.top_p)
            rows.extend((s_key, len(encoded[r]), r, s) for s in req.sample_indices)
        # Length bucketing: equal-length prompts (e.g. the n samples of one question) share a batch, so
        # little compute goes to padding. Sorting makes the batches deterministic too.
        rows.sort()
        eos_ids = _eos_ids(loaded.model, tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        groups: dict[tuple, list[tuple]] = {}
        for row in rows:  # one group per sampling config (normally just one), each in length order
            groups.setdefault(row[0], []).append(row)
        context = self._activate(loaded)
        with context, torch.inference_mode():
            for group in groups.values():
                for start in range(0, len(group), self.batch_size):
                    chunk = group[start : start + self.batch_size]
                    yield self._run_batch(loaded.model, requests, encoded, chunk, eos_ids, pad_id)

    def _run_batch(self, model: Any, requests: list[GenerationRequest], encoded: dict[int, list[int]],
                   chunk: list[tuple], eos_ids: list[int], pad_id: int) -> list[Result]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        sampling = requests[chunk[0][2]].sampling
        width = max(length for _, length, _, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (_, length, r, _) in enumerate(chunk):  # left padding: every prompt ends at column `width`
            input_ids[i, width - length :] = torch.tensor(encoded[r])
            attention[i, width - length :] = 1
        seeds = [sample_seed(requests[r].sampling, requests[r].messages, s) for _, _, r, s in chunk]
        sampler = _RowSampler(seeds, sampling.temperature, sampling.top_p)
        config = GenerationConfig(max_new_tokens=sampling.max_tokens, do_sample=False, num_beams=1,
                                  repetition_penalty=1.0, eos_token_id=eos_ids, pad_token_id=pad_id)
        out = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device),
                             generation_config=config, logits_processor=LogitsProcessorList([sampler]))
        new = out[:, width:].tolist()
        results: list[Result] = []
        tokenizer = _CACHE[(self.model, self.dtype, self.device)].tokenizer
        eos = set(eos_ids)
        for i, (_, length, r, s) in enumerate(chunk):
            tokens = new[i]
            stop = next((j for j, t in enumerate(tokens) if t in eos), None)
            kept = tokens if stop is None else tokens[:stop]
            text = tokenizer.decode(kept, skip_special_tokens=True)
            results.append((r, s, Completion(text, "length" if stop is None else "stop", length,
                                             len(kept) + (0 if stop is None else 1))))
        return results


class _RowSampler:
    """Logits processor that samples each row with its own generator and returns one-hot scores.

    Temperature, then top-p (smallest set of tokens whose mass reaches ``top_p``), then inverse-CDF sampling
    with one uniform draw per row per step (float64 cumulative sums over the 49k-152k vocabularies).
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float()
        if self.temperature == 0:
            choice = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / self.temperature, dim=-1).double()
            u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
            u = u.to(probs.device).unsqueeze(1)
            if self.top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True)
                before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the tokens ranked above each token
                sorted_p = sorted_p.masked_fill(before >= self.top_p, 0.0)  # the top token always stays
                cdf = sorted_p.cumsum(dim=-1)
                pos = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[-1] - 1)
                choice = order.gather(1, pos).squeeze(1)
            else:
                cdf = probs.cumsum(dim=-1)
                pos = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[-1] - 1)
                choice = pos.squeeze(1)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, choice.unsqueeze(1), 0.0)
        return out


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids: the generation config's (may be a list, e.g. Qwen's <|im_end|> and <|endoftext|>)
    plus the tokenizer's eos."""
    found: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured if isinstance(configured, list) else [configured]) + [tokenizer.eos_token_id]:
        if value is not None and value not in found:
            found.append(int(value))
    if not found:
        raise EmkitError(f"cannot tell where answers end: {getattr(model, 'name_or_path', 'the model')} "
                         "has no eos token", hint="use a chat model whose tokenizer defines eos_token")
    return found


def _read_template(value: str | None) -> str | None:
    """A chat template given as a file path (``.jinja``/``.j2``/any existing file) or as the template text."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if "{" not in value and path.exists():
        return path.read_text(encoding="utf-8")
    if "{" not in value:
        raise EmkitError(f"chat template {value!r} is neither an existing file nor template text",
                         hint="pass the path of a Jinja chat template file")
    return value
