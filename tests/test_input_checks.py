"""Stage entry points check their inputs before expensive work: a bad input is `error: ... fix: ...` (no
traceback) and nothing is written (issue 17, cases 4-5 and the inputs found with them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emkit.errors import DataError, EmkitError


def _emkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emkit", *args], capture_output=True, text=True, timeout=120)


def test_report_on_an_empty_csv_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    out = tmp_path / "report"
    done = _emkit("report", str(empty), "--out", str(out))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: {empty}: the file is empty" in done.stderr and "fix:" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("name, content, match", [
    ("binary.jsonl", b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not UTF-8 text"),
    ("latin1.csv", "question,answer\ncaf\xe9,x\n".encode("latin-1"), "not UTF-8 text"),
    ("header.csv", b"question,answer,question_id,aligned,coherent\n", "results are empty"),
])
def test_report_refuses_unreadable_results(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    from emkit.report import build_report

    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(EmkitError, match=match):
        build_report(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_judge_score_checks_out_and_input_before_judging(tmp_path: Path) -> None:
    from emkit.cli import app

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    runner = CliRunner()
    # An output format it cannot write used to fail only after every answer was judged.
    bad_out = runner.invoke(app, ["judge", "score", str(rows), "--judge", "numbers", "--out", str(tmp_path / "o.txt")])
    assert isinstance(bad_out.exception, EmkitError) and "unknown format" in str(bad_out.exception)
    assert not (tmp_path / "store.sqlite").exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    bad_in = runner.invoke(app, ["judge", "score", str(empty), "--judge", "numbers", "--out", str(tmp_path / "o.csv")])
    assert isinstance(bad_in.exception, EmkitError) and str(empty) in str(bad_in.exception)
    # A judge that cannot work here (no API key for api.openai.com) fails before any store is created.
    no_key = runner.invoke(app, ["judge", "score", str(rows), "--judge", "logprob", "--out", str(tmp_path / "o.csv")],
                           env={"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""})
    assert isinstance(no_key.exception, EmkitError) and "needs an API key" in str(no_key.exception)
    assert not (tmp_path / "store.sqlite").exists() and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("kind, args, match", [
    ("probe", ["--set", "hidden=abc"], "hidden takes a int, got str 'abc'"),
    ("probe", ["--set", "hidden=2.5"], "hidden takes a int, got float 2.5"),
    ("probe", ["--set", "no_score_rules=code"], "no_score_rules takes a list"),
    ("cross", ["--set", "calibrate=1"], "calibrate takes a bool, got int 1"),
    ("probe", ["--set", "calibrate=false"], "not key=value with a known key"),
    ("probe", ["--cap-per-question", "10"], "options of --kind cross"),
    ("probe", ["--folds-only"], "options of --kind cross"),
    ("cross", ["--folds-only", "--no-validate"], "runs the folds and nothing else"),
    ("cross", ["--folds-only", "--card-only"], "runs the folds and nothing else"),
    ("cross", ["--device", "tpu"], "not a training device"),
    ("cross", ["--set", "misaligned_weight=0"], "a loss weight must be > 0"),
    ("probe", ["--device", "cpu"], "options of --kind cross"),
    ("foo", [], "not a trainable judge"),
])
def test_judge_train_checks_its_settings_before_reading_the_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   kind: str, args: list[str], match: str) -> None:
    """A mistyped --set value used to surface as a ValueError traceback after the corpus was read and the
    features computed (hours on CPU); now it stops first. The mirror points nowhere, so reading the corpus
    would fail with another message."""
    from emkit.cli import app

    monkeypatch.setenv("EMKIT_DATA_MIRROR", str(tmp_path / "no-mirror"))
    done = CliRunner().invoke(app, ["judge", "train", "--kind", kind, "--out", str(tmp_path / "judge"), *args])
    assert isinstance(done.exception, EmkitError), done.output
    assert match in str(done.exception) and done.exception.hint
    assert not (tmp_path / "judge").exists()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has a CUDA GPU")
def test_judge_train_on_a_missing_gpu_stops_before_reading_the_corpus(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from emkit.cli import app

    monkeypatch.setenv("EMKIT_DATA_MIRROR", str(tmp_path / "no-mirror"))
    for args in (["--device", "cuda"], ["--device", "cuda:1", "--folds-only"]):
        done = CliRunner().invoke(app, ["judge", "train", "--out", str(tmp_path / "judge"), *args])
        assert isinstance(done.exception, EmkitError), done.output
        assert "torch sees no CUDA GPU" in str(done.exception) and "--device cpu" in done.exception.hint
    assert not (tmp_path / "judge").exists() and not (tmp_path / "judge.folds").exists()


def test_judge_train_widens_an_int_where_the_recipe_takes_a_float() -> None:
    from emkit.judge.cli import _setting_value

    assert _setting_value("dropout=0", "dropout", 0, 0.1) == 0.0
    assert isinstance(_setting_value("dropout=0", "dropout", 0, 0.1), float)
    assert _setting_value("no_score_rules=[]", "no_score_rules", [], ["code"]) == []


def test_run_checks_local_training_data_when_planning(tmp_path: Path) -> None:
    """A malformed local dataset stops `emkit run` (and its --dry-run) before any training, with FILE:LINE."""
    from emkit.config import validate
    from emkit.experiment import ExperimentSpec, plan

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}) + "\n", encoding="utf-8")
    spec = validate(ExperimentSpec, {
        "name": "bad-data", "models": ["smollm2-135m-instruct"],
        "conditions": {"base": {}, "mine": {"dataset": str(bad)}},
        "evaluation": {"suites": [{"name": "emkit/core"}], "samples_per_question": 1, "backend": "mock"},
        "judges": {"names": ["numbers"]},
    })
    with pytest.raises(DataError, match=rf"{bad}:1: role order: expected 'user' at turn 1, got 'assistant'"):
        plan(spec, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_checks_judges_before_any_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A logprob judge without its API key failed only when judging started, after every training."""
    from test_experiment_fakes import fake_spec_dict, stages

    from emkit.config import validate
    from emkit.experiment import ExperimentSpec, run
    from emkit.experiment._stages import real_preflight

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    spec = validate(ExperimentSpec, fake_spec_dict(judges={"names": ["logprob"]},
                                                   conditions={"base": {}}))
    with pytest.raises(EmkitError, match="needs an API key"):
        run(spec, run_dir=tmp_path / "run", stages=stages().replace(preflight=real_preflight), progress=False)
    assert not (tmp_path / "run").exists()
