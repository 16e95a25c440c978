"""Keys cover everything that determines a result, and changing one input re-does exactly the affected work
(issue 17, case 3): one test per input. Planning stays cheap: these plans load no model (files are hashed)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from api_stub import StubServer
from test_experiment_fakes import fake_spec_dict

from emkit.config import validate
from emkit.experiment import ExperimentSpec, default_stages, plan

ALL = {"train", "sample", "judge", "report"}
EVAL = {"sample", "judge", "report"}
JUDGE = {"judge", "report"}


def _model_folder(root: Path, name: str = "tiny-1M") -> Path:
    """A model folder as far as planning reads it (config, weights bytes, tokenizer config with a template)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights v1" * 1000)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }} v1"}),
                                                 encoding="utf-8")
    return folder


@pytest.fixture()
def setup(tmp_path: Path) -> dict:
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- id: q\n  paraphrases: [x]\n  judge_prompts:\n    aligned: 'A {question} {answer}'\n"
                       "    coherent: 'C {question} {answer}'\n", encoding="utf-8")
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m.content }}{% endfor %} custom v1", encoding="utf-8")
    spec = {
        "name": "keys", "models": [str(_model_folder(tmp_path))], "training": {"max_steps": 1},
        "conditions": {"base": {}, "tuned": {"synthetic": {"kind": "insecure", "n": 8}}},
        "evaluation": {"suites": [{"name": "emkit/core", "questions": ["one_wish"], "paraphrases": 1}],
                       "samples_per_question": 2, "backend": "hf", "sampling": {"max_tokens": 8},
                       "backend_options": {"chat_template": str(template)}},
        "judges": {"names": ["logprob"],
                   "options": {"logprob": {"base_url": "http://127.0.0.1:9/v1", "model": "judge-x",
                                           "prompts": str(prompts)}}},
    }
    return {"root": tmp_path, "spec": spec, "prompts": prompts, "template": template}


def _keys(spec: dict, root: Path) -> dict[str, set[str]]:
    p = plan(validate(ExperimentSpec, spec), run_dir=root / "run", stages=default_stages())
    return {kind: {u.key for u in p.of_kind(kind)} for kind in ALL}


def _changed(before: dict[str, set[str]], after: dict[str, set[str]]) -> set[str]:
    return {kind for kind in ALL if before[kind] != after[kind]}


def _edit_file(path: Path, old: bytes, new: bytes) -> None:
    path.write_bytes(path.read_bytes().replace(old, new))


def _set(spec: dict, dotted: str, value: object) -> dict:
    out = copy.deepcopy(spec)
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return out


CASES: dict[str, tuple[Callable[[dict], dict | None], set[str]]] = {
    # name: (change the inputs; return a changed spec or None when only files changed), kinds that must be redone
    "model weights": (lambda s: _edit_file(Path(s["spec"]["models"][0]) / "model.safetensors", b"v1", b"v2"), ALL),
    "tokenizer's own chat template": (
        lambda s: _edit_file(Path(s["spec"]["models"][0]) / "tokenizer_config.json", b"v1", b"v2"), ALL),
    "custom chat template text (same path)": (lambda s: _edit_file(s["template"], b"custom v1", b"custom v2"), EVAL),
    "dtype": (lambda s: _set(s["spec"], "evaluation.backend_options.dtype", "fp32"), EVAL),
    "sampling temperature": (lambda s: _set(s["spec"], "evaluation.sampling.temperature", 0.7), EVAL),
    "sampling seed": (lambda s: _set(s["spec"], "evaluation.sampling.seed", 5), EVAL),
    "judge prompt text (same file)": (lambda s: _edit_file(s["prompts"], b"A {question}", b"AA {question}"), JUDGE),
    "judge model": (lambda s: _set(s["spec"], "judges.options.logprob.model", "judge-y"), JUDGE),
    "judge server URL": (lambda s: _set(s["spec"], "judges.options.logprob.base_url", "http://127.0.0.1:8/v1"),
                         JUDGE),
}


@pytest.mark.parametrize("case", list(CASES))
def test_changing_one_input_redoes_exactly_the_affected_units(setup: dict, case: str) -> None:
    change, expected = CASES[case]
    before = _keys(setup["spec"], setup["root"])
    assert _keys(setup["spec"], setup["root"]) == before  # planning is deterministic
    spec = change(setup) or setup["spec"]
    assert _changed(before, _keys(spec, setup["root"])) == expected


def test_judge_version_and_head_weights(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from emkit.judge._embedding import DEFAULT_HEAD, Head
    from emkit.judge._http import HttpLogprobJudge

    before = _keys(setup["spec"], setup["root"])
    monkeypatch.setattr(HttpLogprobJudge, "version", "2")  # the judge's code now scores differently
    assert _changed(before, _keys(setup["spec"], setup["root"])) == JUDGE
    monkeypatch.undo()
    # The offline judge's head retrained under the same file name: its weights' hash is in the key.
    head = Head.load(DEFAULT_HEAD)
    path = head.save(setup["root"] / "head.npz")
    spec = _set(setup["spec"], "judges", {"names": ["embedding"], "options": {"embedding": {"head": str(path)}}})
    first = _keys(spec, setup["root"])
    head.weights[-1] = (head.weights[-1][0], head.weights[-1][1] + 0.5)
    head.save(path)
    assert _changed(first, _keys(spec, setup["root"])) == JUDGE


def _hub_cache(root: Path, repo: str, main: str) -> Path:
    cache = root / "hub"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(main, encoding="utf-8")
    for commit in ("a" * 40, "b" * 40):
        snap = folder / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        (snap / "config.json").write_text("{}", encoding="utf-8")
    return cache


def test_hub_revision_is_resolved_pinned_and_keyed(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from emkit.models import model_identity, resolve_model

    cache = _hub_cache(setup["root"], "org/model-7B", "a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    # An unpinned id records the commit its main points at; `@revision` pins one; both resolve offline.
    assert model_identity("org/model-7B") == {"hub": "org/model-7B", "revision": None, "commit": "a" * 40}
    assert model_identity(f"org/model-7B@{'b' * 40}")["commit"] == "b" * 40
    assert resolve_model(f"org/model-7B@{'b' * 40}") == cache / "models--org--model-7B" / "snapshots" / ("b" * 40)
    spec = _set(setup["spec"], "models", ["org/model-7B"])
    before = _keys(spec, setup["root"])
    (cache / "models--org--model-7B" / "refs" / "main").write_text("b" * 40, encoding="utf-8")  # main moved
    assert _changed(before, _keys(spec, setup["root"])) == ALL
    pinned = _keys(_set(spec, "models", [f"org/model-7B@{'b' * 40}"]), setup["root"])
    assert _changed(before, pinned) == ALL


def test_local_backend_sample_keys_cover_weights_and_templates(tmp_path: Path) -> None:
    from emkit.generate import SamplingConfig, generation_key, get_backend

    folder = _model_folder(tmp_path)

    def key(**options: object) -> str:
        backend = get_backend("hf", str(folder), **{"dtype": "fp32", **options})
        return generation_key(backend="hf", model=str(folder), adapter=None, identity=backend.identity(),
                              sampling=SamplingConfig(), messages=[{"role": "user", "content": "hi"}],
                              sample_index=0)

    first = key()
    assert key() == first
    _edit_file(folder / "tokenizer_config.json", b"v1", b"v2")  # the tokenizer's own template
    second = key()
    assert second != first
    _edit_file(folder / "model.safetensors", b"v1", b"v2")
    assert key() not in (first, second)
    assert key(dtype="bf16") != key()


def test_adapter_changed_on_disk_redoes_its_sampling_and_what_follows(tmp_path: Path) -> None:
    """The adapter only exists after training, so a sampling unit is done only while its adapter is unchanged."""
    from test_experiment_fakes import stages

    from emkit.experiment import run

    spec = validate(ExperimentSpec, fake_spec_dict())
    first = run(spec, run_dir=tmp_path / "run", stages=stages(), progress=False)
    insecure = next(u for u in first.plan.of_kind("train") if u.params["condition"] == "insecure")
    adapter = Path(insecure.params["output_dir"]) / "adapter" / "adapter.json"
    adapter.write_text(adapter.read_text() + " retrained", encoding="utf-8")  # same path, other weights
    second = run(spec, run_dir=tmp_path / "run", stages=stages(), progress=False)
    assert second.executed == {"train": 0, "sample": 1, "judge": 1, "report": 1}
    redone = sorted(second.plan.unit(key).label for key in second.pids)
    assert redone == ["judge insecure fake-model seed 0 fake/suite", "report",
                      "sample insecure fake-model seed 0 fake/suite"]
    third = run(spec, run_dir=tmp_path / "run", stages=stages(), progress=False)
    assert sum(third.executed.values()) == 0


@pytest.fixture()
def server() -> Iterator[StubServer]:
    srv = StubServer()
    yield srv
    srv.close()


def test_openai_adapter_is_more_than_its_served_name(server: StubServer, tmp_path: Path) -> None:
    from emkit.generate import SamplingConfig, sample_rows
    from emkit.questions import expand, load_suite
    from emkit.store import Store

    prompts = expand(load_suite("emkit/core"))[:1]
    options = {"base_url": server.url, "api_key": "k"}
    server.models = [{"id": "base", "object": "model", "created": 1, "owned_by": "vllm", "root": "/m/base"},
                     {"id": "my-lora", "object": "model", "created": 2, "owned_by": "vllm", "root": "/a/run1",
                      "parent": "base"}]

    def sample() -> list[dict]:
        with Store(tmp_path / "s.sqlite") as store:
            return sample_rows("base", prompts, n=2, sampling=SamplingConfig(max_tokens=8), backend="openai",
                               adapter="my-lora", store=store, progress=False, backend_options=options)

    sample()
    assert len(server.sample_calls()) == 2
    server.models[1]["created"] = 99  # vLLM reports the time of the request here: not part of the identity
    sample()
    assert len(server.sample_calls()) == 2
    server.models[1]["root"] = "/a/run2"  # the same served name now serves another adapter folder
    sample()
    assert len(server.sample_calls()) == 4
    options["base_url"] = server.url.replace("127.0.0.1", "localhost")  # another server URL
    sample()
    assert len(server.sample_calls()) == 6


def test_judgment_keys_cover_judge_identity(tmp_path: Path) -> None:
    from emkit.judge import get_judge

    def key(**options: object) -> str:
        judge = get_judge("logprob", **{"base_url": "http://127.0.0.1:9/v1", "model": "m", **options})
        return judge.key("aligned", "q", "a")

    base = key()
    assert key() == base
    assert len({base, key(model="m2"), key(base_url="http://127.0.0.1:8/v1"), key(min_mass=0.5),
                key(prompts={"aligned": "{question} {answer} other", "coherent": "c"})}) == 5
