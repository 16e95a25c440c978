"""Which keyword arguments a causal LM's ``forward`` takes: chosen once per model object, then proven by a probe.

Why this exists: transformers 5.2x renamed ``forward(past_key_values=)`` to ``cache=`` (the old name is accepted
with a warning until 5.40), and older releases (5.17, the version on the lent H200 machine, and every 4.x) take
only ``past_key_values``. Their ``forward`` also swallows unknown keywords in ``**kwargs``, so ``cache=`` given to
them vanishes without an error: each decode step then sees one new token and no past, and the sampled text is
garbage. Wrappers hide the signature too: PEFT's ``PeftModel.forward(**kwargs)`` names neither keyword.

So the choice is made in two steps:
1. read the signatures down the chain of pass-through wrappers (``PeftModel.get_base_model()``, DDP's ``.module``)
   and take the first keyword a ``forward`` names explicitly;
2. prove it with a two-token probe (~2 tiny forward passes): prefill one token, then decode a second one with the
   returned cache under the chosen keyword. The cache that comes back must hold 2 positions; a model that ignored
   the keyword starts a fresh cache holding 1. If the signature's choice fails, the other name is tried; if both
   fail, :class:`~emkit.errors.EmkitError` (never a silent cache-less decode).

``logits_to_keep`` (``num_logits_to_keep`` in transformers < 4.50) is passed only where a ``forward`` names it;
without it the prefill returns logits for every position (correct, just more memory).
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from emkit.errors import EmkitError

log = logging.getLogger("emkit.models")

CACHE_NAMES = ("cache", "past_key_values")  # newest first
_KEEP_NAMES = ("logits_to_keep", "num_logits_to_keep")


@dataclass(frozen=True)
class ForwardKwargs:
    """The keywords one model's forward takes. ``decode(cache)`` and ``keep_last()`` build the keyword dicts."""

    cache: str  # "cache" or "past_key_values"
    logits_to_keep: str | None  # "logits_to_keep", "num_logits_to_keep" or None (not accepted)
    reason: str

    def decode(self, cache: Any) -> dict[str, Any]:
        return {self.cache: cache}

    def keep_last(self) -> dict[str, Any]:
        """Ask the prefill for the last position's logits only (saves [batch, prompt, vocab] of memory)."""
        return {self.logits_to_keep: 1} if self.logits_to_keep else {}


# model object -> its kwargs. Weak keys: a model dropped from every cache is not kept alive by this table.
_CHOSEN: weakref.WeakKeyDictionary[Any, ForwardKwargs] = weakref.WeakKeyDictionary()


def forward_kwargs(model: Any) -> ForwardKwargs:
    """The forward keywords of ``model`` (memoised per model object; a new PEFT wrapper is probed anew)."""
    try:
        return _CHOSEN[model]
    except (KeyError, TypeError):
        pass
    chosen = _choose(model)
    try:
        _CHOSEN[model] = chosen
    except TypeError:  # not weak-referenceable: choose again next time (cheap)
        pass
    log.info("forward keywords: %s", chosen.reason)
    return chosen


def cache_of(output: Any) -> Any:
    """The KV cache a forward returned (``cache`` in transformers >= 5.2x, ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def cache_length(cache: Any) -> int | None:
    """Positions held by a cache: ``Cache.get_seq_length()``, or the legacy tuple layout ((k, v), ...)."""
    if cache is None:
        return None
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    try:
        return int(cache[0][0].shape[-2])
    except (TypeError, IndexError, AttributeError):
        return None


def _chain(model: Any) -> Iterator[Any]:
    """The model, then the models it passes its keywords on to unchanged (PEFT wrappers, DDP/FSDP modules)."""
    seen: set[int] = set()
    current = model
    while current is not None and id(current) not in seen and len(seen) < 6:
        seen.add(id(current))
        yield current
        get_base = getattr(current, "get_base_model", None)
        if callable(get_base):
            current = get_base()
        else:
            inner = getattr(current, "module", None)
            current = inner if inner is not None and hasattr(inner, "forward") else None


def _named(module: Any) -> tuple[set[str], bool]:
    """(explicitly named parameters of ``module.forward``, whether it also takes ``**kwargs``)."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    named = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


def _choose(model: Any) -> ForwardKwargs:
    explicit: str | None = None
    where = ""
    keep: str | None = None
    for module in _chain(model):
        named, _ = _named(module)
        if explicit is None:
            found = next((n for n in CACHE_NAMES if n in named), None)
            if found is not None:
                explicit, where = found, type(module).__name__
        if keep is None:
            keep = next((n for n in _KEEP_NAMES if n in named), None)
    order = [explicit] + [n for n in CACHE_NAMES if n != explicit] if explicit else list(CACHE_NAMES)
    failures = []
    for name in order:
        ok, detail = _probe(model, name)
        if ok:
            if name == explicit:
                why = f"{name}= (named by {where}.forward; probe: the cache grew 1 -> 2 positions)"
            elif explicit:
                why = (f"{name}= ({where}.forward names {explicit}= but ignores it; the probe found that {name}= "
                       "is used)")
            else:
                why = f"{name}= (no forward in {type(model).__name__}'s chain names a cache; found by the probe)"
            keep_why = f"{keep}=1" if keep else "no logits_to_keep (full prefill logits)"
            return ForwardKwargs(name, keep, f"{type(model).__name__}: {why}; {keep_why}")
        failures.append(f"{name}=: {detail}")
    raise EmkitError(
        f"{type(model).__name__}.forward does not use a KV cache passed to it ({'; '.join(failures)}); decoding "
        "without one would silently give wrong text",
        hint="use a transformers causal LM (AutoModelForCausalLM) or a wrapper that passes cache=/past_key_values= "
             "on to it")


def _first_device(model: Any) -> Any:
    device = getattr(model, "device", None)
    if device is not None:
        return device
    for param in model.parameters():
        return param.device
    return "cpu"


def _probe(model: Any, name: str) -> tuple[bool, str]:
    """Prefill one token, decode one more with the cache passed as ``name``: was the cache used?"""
    import torch

    device = _first_device(model)
    ids = torch.tensor([[1, 2]], dtype=torch.long, device=device)
    with torch.inference_mode():
        first = model(input_ids=ids[:, :1], use_cache=True)
        cache = cache_of(first)
        before = cache_length(cache)
        if before is None:
            return False, "the prefill returned no cache"
        try:
            second = model(input_ids=ids[:, 1:], attention_mask=torch.ones_like(ids), use_cache=True,
                           **{name: cache})
        except TypeError as exc:  # the keyword is refused outright (no **kwargs to swallow it)
            return False, f"refused ({exc})"
        after = cache_length(cache_of(second))
    if after != before + 1:
        return False, f"ignored (the returned cache holds {after} position(s), expected {before + 1})"
    return True, "used"
