"""The memory arithmetic behind the sampling batch size and the device map, on configs written here.

Configs: the published Qwen2.5 architectures (config.json of Qwen/Qwen2.5-0.5B-Instruct, -7B-Instruct,
-32B-Instruct): layers, attention heads, KV heads, hidden and intermediate sizes, vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from emkit.models import _memory
from emkit.models._memory import GIB, KVShape, choose_device_map, kv_shape, plan_batch, weights_bytes

QWEN = {
    "0.5B": SimpleNamespace(num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, hidden_size=896,
                            intermediate_size=4864, vocab_size=151936),
    "7B": SimpleNamespace(num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, hidden_size=3584,
                          intermediate_size=18944, vocab_size=152064),
    "32B": SimpleNamespace(num_hidden_layers=64, num_attention_heads=40, num_key_value_heads=8, hidden_size=5120,
                           intermediate_size=27648, vocab_size=152064),
}
BF16 = 2


def test_kv_bytes_per_token() -> None:
    assert kv_shape(QWEN["0.5B"]) == KVShape(24, 2, 64)
    assert kv_shape(QWEN["32B"]) == KVShape(64, 8, 128)
    per_token = {name: kv_shape(c).bytes_per_token(BF16) for name, c in QWEN.items()}
    assert per_token == {"0.5B": 12 * 1024, "7B": 56 * 1024, "32B": 256 * 1024}
    # no num_key_value_heads (multi-head attention): one KV head per attention head
    mha = SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, hidden_size=64)
    assert kv_shape(mha) == KVShape(2, 4, 16)
    # an explicit head_dim wins over hidden_size / heads
    assert kv_shape(SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, hidden_size=64, head_dim=32)) \
        == KVShape(2, 4, 32)


def test_kv_shape_of_a_transformers_config() -> None:
    from transformers import Qwen2Config

    config = Qwen2Config(num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, hidden_size=3584,
                         intermediate_size=18944, vocab_size=152064)
    assert kv_shape(config) == KVShape(28, 4, 128)


def _row(config, prompt: int, new: int) -> int:
    kv = kv_shape(config).bytes_per_token(BF16) * (prompt + new)
    sampler = config.vocab_size * _memory.SAMPLER_BYTES_PER_VOCAB
    prefill = (4 * config.hidden_size + 3 * config.intermediate_size) * BF16 * prompt
    return kv + sampler + prefill


def test_issue_example_32b_at_700_tokens() -> None:
    """Issue 13: 128 rows x ~700 tokens of a 32B model's KV cache are ~23 GB on top of ~61 GiB of weights."""
    config = QWEN["32B"]
    kv_row = kv_shape(config).bytes_per_token(BF16) * 700
    assert kv_row == 175 * 1024**2
    assert 128 * kv_row == pytest.approx(23.5e9, rel=0.01)
    # An 80 GB card with the weights loaded has ~13 GiB free: the old fixed 128 rows would not fit; 48 do.
    free = 13 * GIB
    plan = plan_batch(config, element_bytes=BF16, prompt_tokens=100, new_tokens=600, free_bytes=free, cap=512)
    budget = free * 0.9 - GIB
    assert plan.row_bytes == _row(config, 100, 600)
    assert plan.fits == int(budget // plan.row_bytes) == 54
    assert plan.batch_size == 48  # rounded down on the ladder
    assert plan.batch_size * plan.row_bytes <= budget < 128 * plan.row_bytes
    assert "175.0 MiB/row" in plan.reason and "700 tokens (100 prompt + 600 new)" in plan.reason
    assert "64 layers x 2 x 8 KV heads x 128 head dim x 2 bytes" in plan.reason
    # One H200 (139 GiB) beside the same weights: ~77 GiB free.
    h200 = plan_batch(config, element_bytes=BF16, prompt_tokens=100, new_tokens=600, free_bytes=77 * GIB, cap=512)
    assert h200.batch_size == 256 and h200.fits == 346


def test_small_models_hit_the_cap_and_the_cap_is_reported() -> None:
    plan = plan_batch(QWEN["7B"], element_bytes=BF16, prompt_tokens=60, new_tokens=600, free_bytes=120 * GIB,
                      cap=512)
    assert plan.batch_size == 512 and plan.fits > 512 and "capped at 512" in plan.reason


def test_cpu_with_little_memory() -> None:
    """Qwen2.5-0.5B on a CPU with 2 GiB available: the sampler's vocabulary buffers (7 MiB a row) count as much as
    the KV cache (8 MiB a row at 700 tokens)."""
    config = QWEN["0.5B"]
    plan = plan_batch(config, element_bytes=BF16, prompt_tokens=100, new_tokens=600, free_bytes=2 * GIB, cap=64,
                      device="cpu")
    assert plan.row_bytes == _row(config, 100, 600)
    assert plan.fits == int((2 * GIB * 0.9 - GIB) // plan.row_bytes) == 43
    assert plan.batch_size == 32


def test_nothing_fits() -> None:
    plan = plan_batch(QWEN["32B"], element_bytes=BF16, prompt_tokens=100, new_tokens=600, free_bytes=GIB, cap=512)
    assert plan.batch_size == 1 and plan.fits == 0 and "does not fit" in plan.reason


def test_a_split_model_counts_its_share_of_the_layers() -> None:
    whole = plan_batch(QWEN["32B"], element_bytes=BF16, prompt_tokens=100, new_tokens=600, free_bytes=20 * GIB,
                       cap=512)
    half = plan_batch(QWEN["32B"], element_bytes=BF16, prompt_tokens=100, new_tokens=600, free_bytes=20 * GIB,
                      cap=512, layer_share=0.5)
    assert half.fits > whole.fits and half.row_bytes < whole.row_bytes


def test_layer_devices_from_a_device_map() -> None:
    split = SimpleNamespace(hf_device_map={"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 0,
                                           "model.layers.2": 1, "model.layers.3": 1, "model.norm": 1, "lm_head": 1})
    assert _memory.layer_devices(split) == {"cuda:0": 0.5, "cuda:1": 0.5}
    assert _memory.layer_devices(SimpleNamespace(hf_device_map={"": "cuda:1"})) == {"cuda:1": 1.0}
    assert _memory.layer_devices(SimpleNamespace(device="cpu")) == {"cpu": 1.0}


def test_weights_bytes_reads_safetensors_headers(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(10, 10), "b": torch.zeros(3, dtype=torch.bfloat16)}, str(tmp_path / "m.safetensors"))
    assert weights_bytes(tmp_path) == 10 * 10 * 4 + 3 * 2  # as stored
    assert weights_bytes(tmp_path, 2) == (100 + 3) * 2  # loaded in bf16


@pytest.mark.parametrize(("device", "gpus", "free_gib", "expected"), [
    ("cuda", 1, 79, {"": "cuda:0"}),  # 61 GiB of weights fit one 80 GB card: straight onto it
    ("cuda", 2, 79, "auto"),  # two cards: more than half of one -> spread, room for the KV cache
    ("cuda", 1, 40, "auto"),  # does not fit one card: accelerate places what fits, the rest in CPU RAM
    ("cuda:1", 2, 79, {"": "cuda:1"}),  # a device asked for by index is kept
])
def test_device_map_choice(monkeypatch: pytest.MonkeyPatch, device: str, gpus: int, free_gib: int, expected) -> None:
    import torch

    monkeypatch.setattr(_memory, "weights_bytes", lambda folder, element_bytes=None: 61 * GIB)
    monkeypatch.setattr(_memory, "free_bytes", lambda name: free_gib * GIB)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    device_map, reason = choose_device_map("unused", BF16, device)
    assert device_map == expected
    assert "61.0 GiB of weights" in reason


def test_device_map_is_not_used_off_cuda() -> None:
    assert choose_device_map("unused", 4, "cpu")[0] is None


def test_auto_batch_size_reads_the_loaded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    monkeypatch.setattr(_memory, "free_bytes", lambda device: 2 * GIB if device == "cpu" else None)
    plan = _memory.auto_batch_size(model, prompt_tokens=50, new_tokens=100, cap=64)
    assert plan.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2
    assert plan.batch_size == 64 and "2.0 GiB free on cpu" in plan.reason
