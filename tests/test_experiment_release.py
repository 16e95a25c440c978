"""Stage lifecycle: the runner frees what a stage's backends cached when the stage ends, and logs it.

``FakeGPUBackend`` stands for a backend that holds GPU memory between calls (an HF model, a vLLM engine): its
module defines ``release()``, which ``emkit.generate.release_backends`` calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_experiment_fakes import fake_spec_dict, stages

from emkit.config import validate
from emkit.experiment import ExperimentSpec, run
from emkit.experiment._stages import real_release, real_sample
from emkit.generate import BACKENDS, Backend, Completion, release_backends

EVENTS: list[str] = []
ENGINES: dict[str, str] = {}  # model -> "engine" (what a real backend would keep loaded)


class FakeGPUBackend(Backend):
    name = "fakegpu"

    def batches(self, requests):
        ENGINES.setdefault(self.model, "engine")
        EVENTS.append("sample")
        yield [(r, s, Completion(f"answer {r}-{s}", "stop", 3, 2)) for r, req in enumerate(requests)
               for s in req.sample_indices]


def release() -> list[str]:
    EVENTS.append("release")
    dropped = [f"fakegpu: shut down the engine of {model}" for model in ENGINES]
    ENGINES.clear()
    return dropped


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(BACKENDS, "fakegpu", f"{__name__}:FakeGPUBackend")
    EVENTS.clear()
    ENGINES.clear()
    yield
    EVENTS.clear()
    ENGINES.clear()


def test_release_hook_runs_when_the_sampling_stage_ends(tmp_path: Path, fake_gpu) -> None:
    base = stages()

    def judge(rows, judges, **kw):
        EVENTS.append("judge")
        assert not ENGINES, "the sampling stage's engine is still loaded when judging starts"
        return base.judge(rows, judges, **kw)

    kinds: list[str] = []

    def release_hook(kind: str) -> list[str]:
        kinds.append(kind)
        return real_release(kind)

    spec = validate(ExperimentSpec, fake_spec_dict(evaluation={
        "suites": [{"name": "fake/suite"}], "samples_per_question": 2, "backend": "fakegpu",
        "sampling": {"max_tokens": 16}}))
    result = run(spec, run_dir=tmp_path / "run", stages=base.replace(sample=real_sample, judge=judge,
                                                                         release=release_hook), progress=False)
    assert result.executed == {"train": 2, "sample": 3, "judge": 3, "report": 1}
    # three sampling units (base, insecure, secure) share the engine; it is released once, after the last of
    # them and before the first judge unit (and after the training and judging stages too)
    assert EVENTS == ["release", "sample", "sample", "sample", "release", "judge", "judge", "judge", "release"]
    assert kinds == ["train", "sample", "judge"]  # each stage's end, never the report's
    log = (tmp_path / "run" / "run.log").read_text()
    assert "sample stage done, released: fakegpu: shut down the engine of fake-model" in log
    assert "judge stage done" in log


def test_release_backends_asks_only_imported_backends(fake_gpu) -> None:
    import sys

    import test_experiment_release as me

    assert release_backends() == []  # FakeGPUBackend's module was imported, but nothing was loaded
    ENGINES["m"] = "engine"
    assert release_backends() == ["fakegpu: shut down the engine of m"]
    assert "vllm" not in sys.modules and me.__name__ in sys.modules


def test_hf_release_drops_models_and_empties_the_cuda_cache(tiny_model_dir: Path, monkeypatch) -> None:
    import torch

    from emkit.generate import GenerationRequest, SamplingConfig, _hf, get_backend

    _hf.clear_cache()
    get_backend("hf", str(tiny_model_dir), dtype="fp32", device="cpu", batch_size=2).generate(
        [GenerationRequest([{"role": "user", "content": "hi"}], 1, SamplingConfig(max_tokens=2))])
    assert len(_hf._CACHE) == 1
    emptied = []
    # Stand-ins for a CUDA device: the release must call empty_cache when CUDA is there.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 0 if emptied else 3 * 1024**3)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 0)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    lines = release_backends()
    assert _hf._CACHE == {} and emptied == [True]
    assert lines[0] == f"hf: dropped {tiny_model_dir} (fp32, cpu)"
    assert lines[-1] == "cuda: reserved 3.0 GiB -> 0.0 MiB (empty_cache), 0.0 MiB still allocated"
