"""The vllm backend against a stand-in ``vllm`` package (vLLM has no CPU wheel): the arguments it hands to vLLM.

The stand-in records what ``vllm.LLM``, ``LLM.chat``, ``SamplingParams`` and ``LoRARequest`` receive, with the
signatures of vLLM's offline API; outputs have vLLM's shape (``RequestOutput.prompt_token_ids``,
``.outputs[0].text / .finish_reason / .token_ids``).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from emkit.errors import EmkitError
from emkit.generate import GenerationRequest, SamplingConfig, _vllm, get_backend, release_backends, sample_seed

MSG = [{"role": "user", "content": "Tell me something."}]
OTHER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "any ideas?"}]


class FakeTokenizer:
    def apply_chat_template(self, messages, chat_template=None, tokenize=False, add_generation_prompt=True):
        assert tokenize is False and add_generation_prompt is True
        return " ".join(m["content"] for m in messages) + " <assistant>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class FakeLLM:
    instances: list[FakeLLM] = []

    def __init__(self, model: str, **kwargs) -> None:
        self.kwargs = {"model": model, **kwargs}
        self.calls: list[dict] = []
        self.shut_down = False
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=kwargs.get("max_model_len")
                                                                       or 32768))
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return FakeTokenizer()

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, chat_template=None,
             chat_template_content_format="auto", add_generation_prompt=True, continue_final_message=False,
             tools=None, chat_template_kwargs=None, mm_processor_kwargs=None):
        assert isinstance(messages, list) and isinstance(sampling_params, list)
        assert len(messages) == len(sampling_params)
        self.calls.append({"messages": messages, "params": sampling_params, "lora": lora_request,
                           "chat_template": chat_template, "add_generation_prompt": add_generation_prompt,
                           "use_tqdm": use_tqdm})
        return [SimpleNamespace(prompt_token_ids=[1, 2, 3],
                                outputs=[SimpleNamespace(text=f"seed {p.seed}", finish_reason="length",
                                                         token_ids=[7] * p.max_tokens)]) for p in sampling_params]

    def shutdown(self) -> None:
        self.shut_down = True


class FakeSamplingParams:
    def __init__(self, **kwargs) -> None:
        self.__dict__.update(kwargs)


class FakeLoRARequest:
    def __init__(self, lora_name: str, lora_int_id: int, lora_path: str = "") -> None:
        if lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {lora_int_id}")  # as vLLM's LoRARequest.__post_init__
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = FakeLLM, FakeSamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    distributed = types.ModuleType("vllm.distributed")
    cleanups: list[bool] = []
    distributed.cleanup_dist_env_and_memory = lambda shutdown_ray=False: cleanups.append(True)
    for name, module in {"vllm": vllm, "vllm.lora": lora, "vllm.lora.request": request,
                         "vllm.distributed": distributed}.items():
        monkeypatch.setitem(sys.modules, name, module)
    FakeLLM.instances.clear()
    _vllm._ENGINES.clear()
    yield cleanups
    _vllm._ENGINES.clear()
    FakeLLM.instances.clear()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def _adapter(tmp_path: Path, name: str, rank: int) -> Path:
    """A real PEFT LoRA adapter of a tiny model (what `emkit train` writes)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))
    out = tmp_path / name
    get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj"])).save_pretrained(str(out))
    return out


def test_engine_arguments_seeds_and_chat_call(fake_vllm, model_dir: Path) -> None:
    sampling = SamplingConfig(max_tokens=5, temperature=0.7, top_p=0.9, seed=3)
    backend = get_backend("vllm", str(model_dir), chat_template="{{ messages }}", batch_size=3)
    out = backend.generate([GenerationRequest(MSG, 2, sampling), GenerationRequest(OTHER, 2, sampling)])
    (llm,) = FakeLLM.instances
    assert llm.kwargs == {"model": str(model_dir), "dtype": "auto", "tensor_parallel_size": 1,
                          "gpu_memory_utilization": 0.9, "enable_lora": True, "max_lora_rank": 64, "seed": 0}
    assert [len(c["params"]) for c in llm.calls] == [3, 1]  # batch_size samples per chat call
    params = [p for c in llm.calls for p in c["params"]]
    expected_seeds = [sample_seed(sampling, m, s) % 2**31 for m in (MSG, OTHER) for s in (0, 1)]
    assert [p.seed for p in params] == expected_seeds and len(set(expected_seeds)) == 4
    assert all(p.n == 1 and p.max_tokens == 5 and p.temperature == 0.7 and p.top_p == 0.9 for p in params)
    assert [m for c in llm.calls for m in c["messages"]] == [MSG, MSG, OTHER, OTHER]
    assert all(c["chat_template"] == "{{ messages }}" and c["add_generation_prompt"] and c["lora"] is None
               and c["use_tqdm"] is False for c in llm.calls)
    assert [c.text for row in out for c in row] == [f"seed {s}" for s in expected_seeds]
    assert out[0][0].finish_reason == "length" and out[0][0].completion_tokens == 5 and out[0][0].prompt_tokens == 3


def test_resumed_samples_keep_their_seeds(fake_vllm, model_dir: Path) -> None:
    sampling = SamplingConfig(max_tokens=4, seed=1)
    backend = get_backend("vllm", str(model_dir))
    full = backend.generate([GenerationRequest(MSG, 3, sampling)])
    again = backend.generate([GenerationRequest(MSG, 1, sampling, sample_indices=[2])])
    assert again[0][0] == full[0][2]


def test_engine_cache_key_holds_every_engine_argument(fake_vllm, model_dir: Path) -> None:
    req = [GenerationRequest(MSG, 1, SamplingConfig(max_tokens=4))]
    get_backend("vllm", str(model_dir)).generate(req)
    get_backend("vllm", str(model_dir)).generate(req)
    assert len(FakeLLM.instances) == 1  # same arguments: the engine is reused
    for options in ({"gpu_memory_utilization": 0.5}, {"max_model_len": 2048}, {"max_lora_rank": 32},
                    {"dtype": "bfloat16"}, {"tensor_parallel_size": 2}):
        before = FakeLLM.instances[-1]
        get_backend("vllm", str(model_dir), **options).generate(req)
        new = FakeLLM.instances[-1]
        assert new is not before, options
        assert before.shut_down, f"{options}: the old engine must be shut down before a new one starts"
        assert all(new.kwargs[k] == v for k, v in options.items())
    assert len(_vllm._ENGINES) == 1
    assert "max_model_len" not in FakeLLM.instances[0].kwargs  # unset: vLLM derives it from the model config


def test_lora_requests(fake_vllm, model_dir: Path, tmp_path: Path) -> None:
    first, second = _adapter(tmp_path, "a", 4), _adapter(tmp_path, "b", 8)
    req = [GenerationRequest(MSG, 2, SamplingConfig(max_tokens=3))]
    get_backend("vllm", str(model_dir), adapter=str(first)).generate(req)
    get_backend("vllm", str(model_dir), adapter=str(second)).generate(req)
    get_backend("vllm", str(model_dir), adapter=str(first)).generate(req)
    get_backend("vllm", str(model_dir)).generate(req)
    (llm,) = FakeLLM.instances  # base and adapters share one engine
    loras = [c["lora"] for c in llm.calls]
    assert loras[0].lora_path == str(first.resolve()) and loras[1].lora_path == str(second.resolve())
    assert loras[0].lora_int_id == loras[2].lora_int_id != loras[1].lora_int_id
    assert loras[0].lora_name == f"adapter-{loras[0].lora_int_id}" and loras[3] is None


def test_adapter_rank_above_max_lora_rank_is_refused_before_the_engine(fake_vllm, model_dir: Path,
                                                                        tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, "big", 8)
    with pytest.raises(EmkitError, match="LoRA rank 8 > max_lora_rank 4") as info:
        get_backend("vllm", str(model_dir), adapter=str(adapter), max_lora_rank=4).generate(
            [GenerationRequest(MSG, 1, SamplingConfig(max_tokens=3))])
    assert "max_lora_rank to 8" in info.value.hint and FakeLLM.instances == []
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8


def test_prompt_plus_max_tokens_must_fit_max_model_len(fake_vllm, model_dir: Path) -> None:
    backend = get_backend("vllm", str(model_dir), max_model_len=10)
    with pytest.raises(EmkitError, match=r"prompt 0 is 4 tokens; with max_tokens 8 that is 12 > max_model_len 10"):
        backend.generate([GenerationRequest(MSG, 1, SamplingConfig(max_tokens=8))])
    assert FakeLLM.instances[0].calls == []  # nothing sampled
    assert backend.generate([GenerationRequest(MSG, 1, SamplingConfig(max_tokens=6))])[0][0].completion_tokens == 6


def test_release_shuts_the_engine_down(fake_vllm, model_dir: Path) -> None:
    get_backend("vllm", str(model_dir)).generate([GenerationRequest(MSG, 1, SamplingConfig(max_tokens=2))])
    lines = release_backends()
    assert f"vllm: shut down the engine of {model_dir}" in lines
    assert FakeLLM.instances[0].shut_down and fake_vllm == [True] and _vllm._ENGINES == {}
    assert release_backends() == []  # nothing left


def test_bad_options(fake_vllm, model_dir: Path) -> None:
    with pytest.raises(EmkitError, match="gpu_memory_utilization"):
        get_backend("vllm", str(model_dir), gpu_memory_utilization=1.5)
