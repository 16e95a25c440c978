"""``hf``: transformers on CPU or one GPU, with our own KV-cache decode loop. Base models stay loaded in-process
and LoRA adapters are swapped on the same base (PEFT ``load_adapter``/``set_adapter``/``disable_adapter``).

Why a custom loop rather than ``model.generate``: (1) each distinct prompt is prefilled once and its cache copied
to its n samples (a question's 16 samples share one prefill); (2) rows that finished are dropped from the
batch, so short answers stop costing compute; (3) each row samples with its own ``torch.Generator`` seeded
from :func:`~emkit.generate._types.sample_seed`. Batches are left-padded and bucketed by prompt length.

What is guaranteed:
- the same samples asked again (same model, adapter, dtype, device, batch size, prompts and sample indices)
  give the same text, bit for bit: batches are formed deterministically and each row's random stream is its own;
- a sample's random numbers do not depend on which other samples share its batch. Its text can still change
  when the batch changes (e.g. resuming half a run, or another batch size), because padding and batch shape
  change the floating-point sums of the forward pass; with fp32 such flips are rare, with bf16 less so.

Batch size: the backend option ``batch_size`` when given; else chosen per sampling config from the memory free
after loading and the model's KV-cache bytes per token (``emkit.models.plan_batch``; printed with its reason),
capped at 512 rows on CUDA and 64 on CPU. Pass ``batch_size`` for bit-exact repeats across machines.
The forward keywords (``cache=`` or ``past_key_values=``, ``logits_to_keep``) come from
``emkit.models.forward_kwargs``, which proves the cache keyword with a probe (a forward that swallowed it in
``**kwargs`` would decode without a cache).

Lifecycle: loaded bases stay in a process-wide cache so the conditions of one stage share one load; the
experiment runner calls :func:`release` when the sampling stage ends (models dropped, CUDA cache emptied).
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

# Most samples per forward batch; below that the batch is chosen from free memory (emkit.models.plan_batch).
# CPU: 64 amortises Python overhead and is compute-bound beyond (SmolLM2's KV cache at 700 tokens is ~15 MiB a
# row); CUDA: 512 (the per-row random draws of a 512-row step take ~0.8 ms, measured on the 2-core CPU here with
# torch 2.13, small against a forward pass over 512 rows); MPS: 32 (free memory unknown there).
_MAX_BATCH = {"cpu": 64, "cuda": 512, "mps": 32}


# LoRA adapters kept attached to one base (r=32 on all projections of a 0.5B model is ~35 MB each).
_MAX_ADAPTERS = 8


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


def release() -> list[str]:
    """Drop every cached model (one line each, for the log). ``emkit.generate.release_backends`` calls this when
    a stage ends, then ``torch.cuda.empty_cache()``; on CPU dropping the references frees the memory."""
    dropped = [f"hf: dropped {model} ({dtype}, {device})" for model, dtype, device in _CACHE]
    _CACHE.clear()
    return dropped


def _dtype_name(dtype: Any) -> str:
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}[str(dtype)]


class HFBackend(Backend):
    """transformers with per-sample seeds; options: dtype, device, batch_size, chat_template, interventions
    (steering/ablation, see emkit.interp.Intervention), lora_scale (multiplies the adapter's LoRA scaling)."""

    name = "hf"

    def __init__(self, model: str, adapter: str | None = None, *, dtype: str = "auto", device: str = "auto",
                 batch_size: int | None = None, chat_template: str | None = None,
                 interventions: list[dict[str, Any]] | None = None, lora_scale: float | None = None,
                 **options: Any) -> None:
        super().__init__(model, adapter, **options)
        require("torch", "ml", "the hf generation backend")
        from emkit.interp import parse_interventions

        # Steering / ablation hooks and the LoRA scale multiplier (emkit.interp), part of the identity below.
        self.interventions = parse_interventions(interventions)
        self.lora_scale = None if lora_scale is None else float(lora_scale)
        if self.lora_scale is not None and adapter is None:
            raise EmkitError(f"lora_scale {lora_scale} needs an adapter to scale", hint="pass an adapter, or drop "
                                                                                     "lora_scale")
        from emkit.models import choose_device, choose_dtype

        self.device, self.device_reason = choose_device(device)
        torch_dtype, self.dtype_reason = choose_dtype(dtype, self.device)
        self.dtype = _dtype_name(torch_dtype)
        if batch_size is not None and batch_size < 1:
            raise EmkitError(f"batch_size must be >= 1, got {batch_size}", hint="pass a positive batch size")
        self.batch_size_option = batch_size  # None: chosen from free memory when the model is loaded
        self.batch_size = batch_size  # the size in use (set by batches() when chosen automatically)
        self._plans: dict[tuple[int, int], Any] = {}  # (prompt tokens, new tokens) -> emkit.models.BatchPlan
        self.batch_plan: Any = None  # the plan in use (None when batch_size was given)
        self.chat_template = _read_template(chat_template)

    def identity(self) -> dict[str, Any]:
        from emkit.interp import intervention_identity

        # Interventions add keys only when present, so unsteered samples keep their keys.
        return {**_local_identity(self.model, self.dtype, self.chat_template),
                **intervention_identity(self.interventions, self.lora_scale)}

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
        loaded.adapters.pop(name, None)
        loaded.adapters[name] = ident["path"]  # most recently used last
        while len(loaded.adapters) > _MAX_ADAPTERS:  # evict the least recently used (never the one in use)
            oldest = next(iter(loaded.adapters))
            loaded.model.delete_adapter(oldest)
            del loaded.adapters[oldest]
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
        with self.active() as (model, _):
            for key, group in groups.items():
                size = self._batch_size_for(model, prompt_tokens=group[-1][1], new_tokens=key[0])
                for start in range(0, len(group), size):
                    chunk = group[start : start + size]
                    yield self._run_batch(model, requests, encoded, chunk, eos_ids, pad_id)

    @contextlib.contextmanager
    def active(self) -> Iterator[tuple[Any, Any]]:
        """``(model, tokenizer)`` with this backend's adapter active and its interventions applied, in inference
        mode (sampling runs in it; emkit.interp reads activations through it with the same weights)."""
        import torch

        from emkit.interp import intervene

        loaded = self._loaded()
        with self._activate(loaded), torch.inference_mode(), intervene(loaded.model, self.interventions,
                                                                       lora_scale=self.lora_scale):
            yield loaded.model, loaded.tokenizer

    def _batch_size_for(self, model: Any, *, prompt_tokens: int, new_tokens: int) -> int:
        """The option when given, else the memory-aware plan (printed once per prompt/answer length)."""
        if self.batch_size_option is not None:
            return self.batch_size_option
        key = (prompt_tokens, new_tokens)
        if key not in self._plans:
            from emkit.models._memory import auto_batch_size

            cap = _MAX_BATCH.get(self.device.split(":")[0], 32)
            plan = auto_batch_size(model, prompt_tokens=prompt_tokens, new_tokens=new_tokens, cap=cap)
            log.info("hf: %s (backend option batch_size overrides)", plan.reason)
            self._plans[key] = plan
        self.batch_plan = self._plans[key]
        self.batch_size = self.batch_plan.batch_size
        return self.batch_size

    def _run_batch(self, model: Any, requests: list[GenerationRequest], encoded: dict[int, list[int]],
                   chunk: list[tuple], eos_ids: list[int], pad_id: int) -> list[Result]:
        """Decode one batch with a KV cache: prefill each distinct prompt once, copy its cache to its samples,
        then sample step by step, dropping finished rows from the batch so they cost nothing more."""
        import torch

        from emkit.models import cache_of, forward_kwargs

        kwargs = forward_kwargs(model)
        sampling = requests[chunk[0][2]].sampling
        device = model.device
        prompts = list(dict.fromkeys(r for _, _, r, _ in chunk))  # distinct prompts, in batch order
        width = max(len(encoded[r]) for r in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, r in enumerate(prompts):  # left padding: every prompt ends at column `width`
            input_ids[i, width - len(encoded[r]) :] = torch.tensor(encoded[r])
            mask[i, width - len(encoded[r]) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        input_ids, mask, positions = input_ids.to(device), mask.to(device), positions.to(device)
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    **kwargs.keep_last())
        cache = cache_of(out)
        # Prefill once per prompt (16 samples of a question share it), then one cache row per sample.
        owner = torch.tensor([prompts.index(r) for _, _, r, _ in chunk], device=device)
        cache.batch_select_indices(owner)
        logits, mask, last = out.logits[:, -1, :][owner], mask[owner], positions[owner, -1]
        gens = [torch.Generator().manual_seed(sample_seed(requests[r].sampling, requests[r].messages, s))
                for _, _, r, s in chunk]
        tokens: list[list[int]] = [[] for _ in chunk]
        stopped = [False] * len(chunk)
        active = list(range(len(chunk)))  # batch position -> row of `chunk`
        eos = set(eos_ids)
        for step in range(sampling.max_tokens):
            choice = _sample(logits, [gens[a] for a in active], sampling.temperature, sampling.top_p)
            for a, token in zip(active, choice.tolist(), strict=True):
                if not stopped[a]:
                    tokens[a].append(token)
                    stopped[a] = token in eos
            if step == sampling.max_tokens - 1:
                break
            keep = [i for i, a in enumerate(active) if not stopped[a]]
            if not keep:
                break
            # Drop finished rows once they are >= 1/8 of the batch (each drop copies the cache once).
            if len(active) - len(keep) >= max(1, len(active) // 8):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, last, choice = mask[index], last[index], choice[index]
                active = [active[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            last = last + 1
            out = model(input_ids=choice.unsqueeze(1), attention_mask=mask, position_ids=last.unsqueeze(1),
                        use_cache=True, **kwargs.decode(cache))
            cache = cache_of(out)
            logits = out.logits[:, -1, :]
        tokenizer = _CACHE[(self.model, self.dtype, self.device)].tokenizer
        results: list[Result] = []
        for row, (_, length, r, s) in zip(tokens, chunk, strict=True):
            stop = row[-1] in eos if row else False
            text = tokenizer.decode(row[:-1] if stop else row, skip_special_tokens=True)
            results.append((r, s, Completion(text, "stop" if stop else "length", length, len(row))))
        return results


def _local_identity(model: str, dtype: str, chat_template: str | None) -> dict[str, Any]:
    """What besides the model's name and the adapter changes a local backend's samples: the weights behind the
    name (packaged pin, folder file hashes and the tokenizer's own chat template, or hub commit: see
    ``emkit.models.model_identity``), the dtype and a custom chat template."""
    from emkit.models import model_identity

    out: dict[str, Any] = {"dtype": dtype, "model": model_identity(model)}
    if chat_template is not None:
        out["chat_template"] = hashlib.sha256(chat_template.encode()).hexdigest()
    return out


def _sample(logits: Any, generators: list[Any], temperature: float, top_p: float) -> Any:
    """One token per row, each row drawn with its own generator (so a row's draws ignore its batch mates).

    Temperature, then top-p (smallest set of tokens whose mass reaches ``top_p``), then inverse-CDF sampling
    with one uniform per row per step; float64 cumulative sums over the 49k-152k token vocabularies.
    """
    import torch

    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1).double()
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators]).to(probs.device)
    u = u.unsqueeze(1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the tokens ranked above each token
        sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)  # the top token always stays
        cdf = sorted_p.cumsum(dim=-1)
        pos = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[-1] - 1)
        return order.gather(1, pos).squeeze(1)
    cdf = probs.cumsum(dim=-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=cdf.shape[-1] - 1).squeeze(1)


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
