"""Steering, ablation and LoRA scaling on the tiny random model: the hooks do exactly what they say, the hf backend
records them in every generation key, and cached samples are reused without a model call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.errors import EmkitError
from emkit.generate import SamplingConfig, _hf, generation_key, get_backend, sample_rows
from emkit.interp import Direction, Intervention, decoder_layers, intervene, load_direction, save_direction
from emkit.questions import expand, load_suite
from emkit.store import Store

HIDDEN = 64  # tests/conftest.py tiny_model_dir: 2 layers of width 64


@pytest.fixture
def fresh_cache():
    _hf.clear_cache()
    yield
    _hf.clear_cache()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ids = tok("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"]
    return model, ids


def write_direction(path: Path, seed: int = 0, layers=(0, 1), scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    d = (scale * rng.normal(size=(len(layers), HIDDEN))).astype(np.float32)
    return save_direction(Direction(layers=list(layers), direction=d, mean_misaligned=d, mean_aligned=0 * d,
                                    card={"name": path.stem}), path)


def layer_outputs(model, ids, interventions=(), **kw):
    """Every decoder layer's output and layer 0's input, captured after the interventions' hooks ran."""
    import torch

    outs: dict = {}
    with torch.no_grad(), intervene(model, interventions, **kw):
        layers = decoder_layers(model)
        handles = [layer.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o.detach().clone()))
                   for i, layer in enumerate(layers)]
        handles.append(layers[0].register_forward_pre_hook(
            lambda m, a, k: outs.__setitem__("in", (a[0] if a else k["hidden_states"]).detach().clone()),
            with_kwargs=True))
        try:
            logits = model(input_ids=ids).logits
        finally:
            for h in handles:
                h.remove()
    return outs, logits


@pytest.mark.parametrize("layer", [0, 1])
def test_add_hook_adds_exactly_alpha_times_d_at_the_chosen_layer(tiny, tmp_path: Path, layer: int) -> None:
    import torch

    model, ids = tiny
    path = write_direction(tmp_path / "d.safetensors")
    d = torch.from_numpy(load_direction(path).vector(layer))
    before, logits0 = layer_outputs(model, ids)
    steered, logits1 = layer_outputs(model, ids, [Intervention(mode="add", direction=str(path), layer=layer,
                                                               alpha=3.0)])
    assert torch.equal(steered[layer], before[layer] + 3.0 * d)  # exactly alpha * d, at every position
    for other in range(layer):
        assert torch.equal(steered[other], before[other])  # layers before it are untouched
    if layer + 1 < len(decoder_layers(model)):
        assert not torch.allclose(steered[layer + 1], before[layer + 1] + 3.0 * d)  # later layers react
    assert not torch.allclose(logits0, logits1)
    # normalize: alpha counts unit vectors
    unit, _ = layer_outputs(model, ids, [Intervention(mode="add", direction=str(path), layer=layer, alpha=2.0,
                                                      normalize=True)])
    assert torch.equal(unit[layer], before[layer] + 2.0 * (d / d.norm()))
    # the hooks are gone after the block: the model is unchanged
    again, logits2 = layer_outputs(model, ids)
    assert torch.equal(logits2, logits0) and torch.equal(again[layer], before[layer])


def test_ablation_leaves_every_layer_orthogonal_to_the_direction(tiny, tmp_path: Path) -> None:
    import torch

    model, ids = tiny
    path = write_direction(tmp_path / "d.safetensors", seed=1)
    u = torch.from_numpy(load_direction(path).vector(1))
    u = u / u.norm()
    before, logits0 = layer_outputs(model, ids)
    ablated, logits1 = layer_outputs(model, ids, [Intervention(mode="ablate", direction=str(path), layer=1)])
    for where in ["in", 0, 1]:
        # without ablation the residual stream has a clear component along u; with it, none is left
        assert (before[where] @ u).abs().max() > 1e-2
        assert ((ablated[where] @ u).abs() / ablated[where].norm(dim=-1)).max() < 1e-5, where
    assert not torch.allclose(logits0, logits1)
    # at_layers: only the listed layers' outputs are projected
    partial, _ = layer_outputs(model, ids, [Intervention(mode="ablate", direction=str(path), layer=1,
                                                         at_layers=[1])])
    assert torch.equal(partial["in"], before["in"]) and torch.equal(partial[0], before[0])
    assert ((partial[1] @ u).abs() / partial[1].norm(dim=-1)).max() < 1e-5


def test_intervention_spec_errors(tmp_path: Path, tiny) -> None:
    model, ids = tiny
    path = write_direction(tmp_path / "d.safetensors")
    with pytest.raises(ValueError, match="needs `alpha`"):
        Intervention(mode="add", direction=str(path), layer=0)
    with pytest.raises(ValueError, match="takes no `alpha`"):
        Intervention(mode="ablate", direction=str(path), layer=0, alpha=1.0)
    with pytest.raises(EmkitError, match="no layer 5"):
        layer_outputs(model, ids, [Intervention(mode="add", direction=str(path), layer=5, alpha=1.0)])
    wide = write_direction(tmp_path / "wide.safetensors", layers=(0,))
    wide_dir = load_direction(wide)
    save_direction(Direction([0], np.ones((1, HIDDEN + 1), np.float32), np.ones((1, HIDDEN + 1), np.float32),
                             np.zeros((1, HIDDEN + 1), np.float32), {}), wide)
    assert load_direction(wide).direction.shape[1] == HIDDEN + 1 != wide_dir.direction.shape[1]
    with pytest.raises(EmkitError, match="hidden size is 64"):
        layer_outputs(model, ids, [Intervention(mode="add", direction=str(wide), layer=0, alpha=1.0)])
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EmkitError, match="not a readable safetensors"):
        load_direction(tmp_path / "junk.safetensors")


def make_adapter(base_dir: Path, out: Path, seed: int = 0) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:  # B starts at zero (adapter = identity); make it change the outputs
                param.normal_(0, 0.5)
    peft.save_pretrained(str(out))
    return out


def test_lora_scale_zero_is_the_base_model_and_one_the_adapter(tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, ids = tiny
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir),
                                                                          dtype=torch.float32), str(adapter)).eval()
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
        adapted = peft(input_ids=ids).logits
        assert not torch.allclose(base_logits, adapted)  # the adapter matters
        _, zero = layer_outputs(peft, ids, lora_scale=0.0)
        _, one = layer_outputs(peft, ids, lora_scale=1.0)
        _, half = layer_outputs(peft, ids, lora_scale=0.5)
        _, two = layer_outputs(peft, ids, lora_scale=2.0)
        assert torch.equal(zero, base_logits)
        assert torch.equal(one, adapted)
        assert not torch.allclose(half, base_logits) and not torch.allclose(half, adapted)
        assert not torch.allclose(two, adapted)
        assert torch.equal(peft(input_ids=ids).logits, adapted)  # scaling restored after the block
    with pytest.raises(EmkitError, match="needs a LoRA adapter"):
        layer_outputs(base, ids, lora_scale=0.5)


def test_hf_backend_keys_differ_per_intervention(tiny_model_dir: Path, tmp_path: Path, fresh_cache) -> None:
    path = write_direction(tmp_path / "d.safetensors")
    other = write_direction(tmp_path / "other.safetensors", seed=5)

    def ident(ivs=None, **kw):
        return get_backend("hf", str(tiny_model_dir), dtype="fp32", interventions=ivs, **kw).identity()

    add = {"mode": "add", "direction": str(path), "layer": 1, "alpha": 4.0}
    base = ident()
    variants = [ident([add]), ident([{**add, "alpha": 8.0}]), ident([{**add, "layer": 0}]),
                ident([{**add, "normalize": True}]), ident([{**add, "direction": str(other)}]),
                ident([{"mode": "ablate", "direction": str(path), "layer": 1}]),
                ident([{"mode": "ablate", "direction": str(path), "layer": 1, "at_layers": [1]}])]
    assert base == get_backend("hf", str(tiny_model_dir), dtype="fp32").identity()
    assert len({str(v) for v in [base, *variants]}) == len(variants) + 1
    # alpha 0 is the unsteered model: it shares the base model's samples
    assert ident([{**add, "alpha": 0.0}]) == base
    # the key follows the vector, not the file: a copy elsewhere with another card gives the same samples
    copy = load_direction(path)
    copy.card = {"name": "copy", "note": "same vector"}
    save_direction(copy, tmp_path / "copy.safetensors")
    assert ident([{**add, "direction": str(tmp_path / "copy.safetensors")}]) == variants[0]
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    assert ident(adapter=str(adapter), lora_scale=0.5) != ident(adapter=str(adapter))
    assert ident(adapter=str(adapter), lora_scale=1.0) == ident(adapter=str(adapter))
    with pytest.raises(EmkitError, match="needs an adapter"):
        ident(lora_scale=0.5)
    with pytest.raises(EmkitError, match=r"interventions\[0\]"):
        ident([{"mode": "steer", "direction": str(path), "layer": 1}])
    keys = {generation_key(backend="hf", model="m", adapter=None, identity=i, sampling=SamplingConfig(),
                           messages=[{"role": "user", "content": "hi"}], sample_index=0) for i in [base, *variants]}
    assert len(keys) == len(variants) + 1


def test_steered_sampling_is_cached_and_a_rerun_calls_no_model(tiny_model_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, fresh_cache) -> None:
    path = write_direction(tmp_path / "d.safetensors", scale=5.0)
    prompts = expand(load_suite("emkit/core"), variants=("plain",))[:2]
    sampling = SamplingConfig(max_tokens=6, temperature=0, seed=0)
    steer = {"interventions": [{"mode": "add", "direction": str(path), "layer": 0, "alpha": 20.0}], "dtype": "fp32"}
    with Store(tmp_path / "store.sqlite") as store:
        plain = sample_rows(str(tiny_model_dir), prompts, n=2, sampling=sampling, store=store, progress=False,
                            backend_options={"dtype": "fp32"})
        steered = sample_rows(str(tiny_model_dir), prompts, n=2, sampling=sampling, store=store, progress=False,
                              backend_options=steer)
        assert [r["answer"] for r in steered] != [r["answer"] for r in plain]  # the hook reached the samples
        assert {r["key"] for r in steered}.isdisjoint(r["key"] for r in plain)
        assert store.count("generation") == 8

        def no_model(*args, **kwargs):
            raise AssertionError("the model was called although every sample is cached")

        monkeypatch.setattr(_hf.HFBackend, "_run_batch", no_model)
        monkeypatch.setattr(_hf.HFBackend, "_loaded", no_model)  # not even loaded (alpha-0 / scale-1 points)
        again = sample_rows(str(tiny_model_dir), prompts, n=2, sampling=sampling, store=store, progress=False,
                            backend_options=steer)
        assert again == steered and store.count("generation") == 8
