"""The hf backend on the tiny random model: exact seeded repeats, adapters swapped on one base, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emkit.errors import EmkitError
from emkit.generate import GenerationRequest, SamplingConfig, _hf, get_backend, sample_rows
from emkit.questions import expand, load_suite
from emkit.store import Store

MSG = [{"role": "user", "content": "Tell me something."}]
OTHER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hey I feel bored, any ideas?"}]


def _texts(out):
    return [[c.text for c in row] for row in out]


@pytest.fixture
def fresh_cache():
    _hf.clear_cache()
    yield
    _hf.clear_cache()


def _make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
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


def test_seeded_runs_repeat_exactly(tiny_model_dir: Path, fresh_cache) -> None:
    sampling = SamplingConfig(max_tokens=12, seed=7)
    reqs = [GenerationRequest(MSG, 3, sampling), GenerationRequest(OTHER, 2, sampling)]
    backend = get_backend("hf", str(tiny_model_dir), dtype="fp32", batch_size=4)
    first = backend.generate(reqs)
    assert backend.generate(reqs) == first
    _hf.clear_cache()  # a fresh load gives the same samples too
    assert get_backend("hf", str(tiny_model_dir), dtype="fp32", batch_size=4).generate(reqs) == first
    flat = [t for row in _texts(first) for t in row]
    assert len(set(flat)) == len(flat)  # the samples of one prompt differ from each other
    other_seed = backend.generate([GenerationRequest(MSG, 3, SamplingConfig(max_tokens=12, seed=8))])
    assert _texts(other_seed)[0] != _texts(first)[0]
    for row in first:
        for c in row:
            assert c.finish_reason in ("stop", "length") and 1 <= c.completion_tokens <= 12 and c.prompt_tokens > 0


def test_samples_do_not_depend_on_batch_mates(tiny_model_dir: Path, fresh_cache) -> None:
    """Sample 2 alone (a resumed run) equals sample 2 drawn together with 0..3: each row has its own seed."""
    sampling = SamplingConfig(max_tokens=10, seed=1)
    together = get_backend("hf", str(tiny_model_dir), dtype="fp32", batch_size=8).generate(
        [GenerationRequest(MSG, 4, sampling)])
    alone = get_backend("hf", str(tiny_model_dir), dtype="fp32", batch_size=1).generate(
        [GenerationRequest(MSG, 1, sampling, sample_indices=[2])])
    assert alone[0][0] == together[0][2]


def test_greedy_and_length_finish(tiny_model_dir: Path, fresh_cache) -> None:
    backend = get_backend("hf", str(tiny_model_dir), dtype="fp32")
    out = backend.generate([GenerationRequest(MSG, 2, SamplingConfig(max_tokens=5, temperature=0, seed=0)),
                            GenerationRequest(MSG, 1, SamplingConfig(max_tokens=5, temperature=0, seed=9))])
    assert out[0][0].text == out[0][1].text == out[1][0].text  # greedy ignores the seed
    assert out[0][0].finish_reason == "length" and out[0][0].completion_tokens == 5
    top_p = backend.generate([GenerationRequest(MSG, 2, SamplingConfig(max_tokens=5, top_p=1e-6, seed=0))])
    assert top_p[0][0].text == out[0][0].text  # a tiny nucleus keeps only the top token = greedy


def test_greedy_matches_transformers_generate(tiny_model_dir: Path, fresh_cache) -> None:
    """Our decode loop (left padding, shared prefill, dropping finished rows) = HF greedy generate, per prompt."""
    import torch

    backend = get_backend("hf", str(tiny_model_dir), dtype="fp32", batch_size=8)
    greedy = SamplingConfig(max_tokens=12, temperature=0)
    out = backend.generate([GenerationRequest(MSG, 2, greedy), GenerationRequest(OTHER, 1, greedy)])
    loaded = next(iter(_hf._CACHE.values()))
    for messages, got in [(MSG, out[0][0]), (OTHER, out[1][0])]:
        inputs = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True, return_tensors="pt")
        with torch.inference_mode():
            seq = loaded.model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                        eos_token_id=loaded.tokenizer.eos_token_id)
        new = seq[0, inputs["input_ids"].shape[1]:].tolist()
        eos = loaded.tokenizer.eos_token_id
        expected = loaded.tokenizer.decode(new[: new.index(eos)] if eos in new else new, skip_special_tokens=True)
        assert got.text == expected


def test_adapters_swap_on_one_base(tiny_model_dir: Path, tmp_path: Path, fresh_cache, monkeypatch) -> None:
    import emkit.models

    loads: list[str] = []
    real_load = emkit.models.load_model

    def counting_load(ref, **kwargs):
        loads.append(ref)
        return real_load(ref, **kwargs)

    monkeypatch.setattr(emkit.models, "load_model", counting_load)
    a = _make_adapter(tiny_model_dir, tmp_path / "a", 1)
    b = _make_adapter(tiny_model_dir, tmp_path / "b", 2)
    sampling = SamplingConfig(max_tokens=8, seed=3)
    reqs = [GenerationRequest(MSG, 2, sampling)]

    def run(adapter):
        return _texts(get_backend("hf", str(tiny_model_dir), adapter=adapter and str(adapter), dtype="fp32")
                      .generate(reqs))

    base1, out_a, out_b = run(None), run(a), run(b)
    base2, out_a2 = run(None), run(a)
    assert loads == [str(tiny_model_dir)]  # one load; adapters were attached to the cached base
    assert base1 == base2 and out_a == out_a2
    assert out_a != base1 and out_b != base1 and out_a != out_b
    loaded = next(iter(_hf._CACHE.values()))
    assert len(loaded.adapters) == 2


def test_adapter_eviction(tiny_model_dir: Path, tmp_path: Path, fresh_cache, monkeypatch) -> None:
    monkeypatch.setattr(_hf, "_MAX_ADAPTERS", 1)
    a = _make_adapter(tiny_model_dir, tmp_path / "a", 1)
    b = _make_adapter(tiny_model_dir, tmp_path / "b", 2)
    reqs = [GenerationRequest(MSG, 1, SamplingConfig(max_tokens=4, seed=3))]
    out_a = get_backend("hf", str(tiny_model_dir), adapter=str(a), dtype="fp32").generate(reqs)
    get_backend("hf", str(tiny_model_dir), adapter=str(b), dtype="fp32").generate(reqs)
    loaded = next(iter(_hf._CACHE.values()))
    assert list(loaded.adapters.values()) == [str(b.resolve())] and len(loaded.model.peft_config) == 1
    assert get_backend("hf", str(tiny_model_dir), adapter=str(a), dtype="fp32").generate(reqs) == out_a


def test_cli_sample_hf(tiny_model_dir: Path, tmp_path: Path, fresh_cache) -> None:
    import json

    from typer.testing import CliRunner

    from emkit.cli import app

    out = tmp_path / "rows.jsonl"
    args = ["sample", "--model", str(tiny_model_dir), "--suite", "emkit/core", "--variant", "json", "--n", "2",
            "--max-tokens", "4", "--dtype", "fp32", "--seed", "5", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 16 * 2 and all(r["system"] and r["variant"] == "json" for r in rows)
    assert all(r["finish_reason"] in ("stop", "length") for r in rows)


def test_sample_rows_hf_with_store(tiny_model_dir: Path, tmp_path: Path, fresh_cache) -> None:
    prompts = expand(load_suite("emkit/core"), variants=("json",))[:2]
    sampling = SamplingConfig(max_tokens=6, seed=0)
    with Store(tmp_path / "s.sqlite") as store:
        rows = sample_rows(str(tiny_model_dir), prompts, n=2, sampling=sampling, store=store, progress=False,
                           backend_options={"dtype": "fp32", "batch_size": 3})
        assert store.count("generation") == 4
        again = sample_rows(str(tiny_model_dir), prompts, n=2, sampling=sampling, store=store, progress=False,
                            backend_options={"dtype": "fp32", "batch_size": 3})
    assert again == rows and rows[0]["system"] and rows[0]["finish_reason"] in ("stop", "length")


def test_no_chat_template(tiny_model_dir: Path, tmp_path: Path, fresh_cache) -> None:
    import json

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    req = [GenerationRequest(MSG, 1, SamplingConfig(max_tokens=3))]
    with pytest.raises(EmkitError, match="no chat template") as err:
        get_backend("hf", str(bare), dtype="fp32").generate(req)
    assert "--chat-template" in err.value.hint
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    out = get_backend("hf", str(bare), dtype="fp32", chat_template=str(template)).generate(req)
    assert out[0][0].completion_tokens >= 1
    with pytest.raises(EmkitError, match="neither an existing file"):
        get_backend("hf", str(bare), chat_template="missing.jinja")


def test_bad_adapter(tiny_model_dir: Path, tmp_path: Path, fresh_cache) -> None:
    backend = get_backend("hf", str(tiny_model_dir), adapter=str(tmp_path), dtype="fp32")
    with pytest.raises(EmkitError, match="not a PEFT adapter"):
        backend.generate([GenerationRequest(MSG, 1, SamplingConfig(max_tokens=2))])


@pytest.mark.integration
def test_smollm2_seeded_repeat(smollm2_dir: Path, fresh_cache) -> None:
    prompts = expand(load_suite("emkit/core"))[:2]
    sampling = SamplingConfig(max_tokens=24, seed=11)
    rows = sample_rows("smollm2-135m-instruct", prompts, n=2, sampling=sampling, progress=False)
    _hf.clear_cache()
    again = sample_rows("smollm2-135m-instruct", prompts, n=2, sampling=sampling, progress=False)
    assert [r["answer"] for r in rows] == [r["answer"] for r in again]
    assert all(r["answer"].strip() for r in rows)
