"""forward_kwargs: the KV-cache keyword a model's forward really uses, proven by a probe (tiny models on CPU).

The wrappers below stand for what the lent GPU machine and older transformers give: a forward that names
``past_key_values`` and swallows everything else in ``**kwargs`` (``cache=`` given to it is silently dropped), a
forward that names nothing, and one that ignores every cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from emkit.errors import EmkitError
from emkit.generate import GenerationRequest, SamplingConfig, _hf, get_backend
from emkit.models import cache_of, forward_kwargs

MSG = [{"role": "user", "content": "Tell me something."}]


def _tiny(vocab: int = 96):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


class _Wrapper(nn.Module):
    """Exposes what the hf backend reads besides forward (device, config, generation_config)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @property
    def device(self):
        return self.inner.device

    @property
    def config(self):
        return self.inner.config

    @property
    def generation_config(self):
        return self.inner.generation_config


class OldStyle(_Wrapper):
    """transformers < 5.2x: names past_key_values, swallows unknown keywords (cache= vanishes)."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                logits_to_keep=0, **kwargs):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          cache=past_key_values, use_cache=use_cache, logits_to_keep=logits_to_keep)


class Opaque(_Wrapper):
    """forward(**kwargs) that passes past_key_values on (as the cache) and drops every keyword it does not know."""

    def forward(self, **kwargs):
        known = {k: kwargs[k] for k in ("input_ids", "attention_mask", "position_ids", "use_cache") if k in kwargs}
        return self.inner(**known, cache=kwargs.get("past_key_values"))


class Deaf(_Wrapper):
    """Ignores any cache: every call starts from scratch."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return self.inner(input_ids=input_ids, use_cache=True)


def test_plain_model_uses_the_keyword_its_signature_names() -> None:
    model = _tiny()
    chosen = forward_kwargs(model)
    assert chosen.cache in ("cache", "past_key_values")
    assert chosen.cache in __import__("inspect").signature(model.forward).parameters
    assert chosen.logits_to_keep == "logits_to_keep"
    assert forward_kwargs(model) is chosen  # memoised per model object


def test_a_forward_that_swallows_cache_is_caught() -> None:
    """The bug of issue 13: passing cache= to this forward decodes without a cache. The probe picks past_key_values."""
    model = OldStyle(_tiny())
    chosen = forward_kwargs(model)
    assert chosen.cache == "past_key_values"
    assert "OldStyle" in chosen.reason
    # The choice matters: decoding one token with the cache under the swallowed name drops the past.
    ids = torch.tensor([[5, 7, 9]])
    with torch.inference_mode():
        full = model(input_ids=ids).logits[0, -1]
        prefix = cache_of(model(input_ids=ids[:, :2], use_cache=True))
        right = model(input_ids=ids[:, 2:], attention_mask=torch.ones_like(ids), use_cache=True,
                      **chosen.decode(prefix)).logits[0, -1]
        prefix = cache_of(model(input_ids=ids[:, :2], use_cache=True))
        wrong = model(input_ids=ids[:, 2:], attention_mask=torch.ones_like(ids), use_cache=True,
                      cache=prefix).logits[0, -1]
    assert torch.allclose(right, full, atol=1e-5)
    assert not torch.allclose(wrong, full, atol=1e-3)


def test_a_forward_that_names_nothing_is_probed() -> None:
    chosen = forward_kwargs(Opaque(_tiny()))
    assert chosen.cache == "past_key_values" and chosen.logits_to_keep is None
    assert "found by the probe" in chosen.reason


def test_a_forward_that_ignores_every_cache_is_an_error() -> None:
    with pytest.raises(EmkitError, match="does not use a KV cache"):
        forward_kwargs(Deaf(_tiny()))


def test_peft_wrapper_is_seen_through() -> None:
    from peft import LoraConfig, get_peft_model

    base = _tiny()
    peft = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    assert forward_kwargs(peft).cache == forward_kwargs(base).cache
    assert forward_kwargs(peft).logits_to_keep == "logits_to_keep"  # named by the base, passed on by PEFT


def _greedy(backend) -> list[str]:
    out = backend.generate([GenerationRequest(MSG, 2, SamplingConfig(max_tokens=8, temperature=0, seed=0))])
    return [c.text for c in out[0]]


def test_hf_backend_decodes_through_an_old_style_forward(tiny_model_dir: Path) -> None:
    """End to end: the hf backend on the OldStyle wrapper gives the plain model's greedy text (it used to pass
    cache= unconditionally, which this wrapper drops: every step then saw one token and no past)."""
    from transformers import AutoModelForCausalLM

    _hf.clear_cache()
    try:
        plain = get_backend("hf", str(tiny_model_dir), dtype="fp32", device="cpu", batch_size=4)
        expected = _greedy(plain)
        loaded = _hf._CACHE[(str(tiny_model_dir), "fp32", "cpu")]
        inner = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
        loaded.model = OldStyle(inner)
        assert _greedy(plain) == expected
    finally:
        _hf.clear_cache()
