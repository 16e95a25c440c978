"""A failure is never a result: rows whose judgment or sampling failed are retried by the next run, and only they;
`emkit run`, `emkit judge score` and `emkit sample` say how many failed and exit non-zero (issue 17, cases 1-2).

The server is a local OpenAI-compatible stub (tests/api_stub.py) that answers HTTP 500 while it is "down".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from api_stub import StubServer

from emkit.questions import load_suite

TESTS = Path(__file__).resolve().parent


@pytest.fixture()
def server() -> Iterator[StubServer]:
    srv = StubServer()
    yield srv
    srv.close()


def _question(qid: str) -> str:
    return next(q.paraphrases[0] for q in load_suite("emkit/core").questions if q.id == qid)


def _spec(url: str, backend: str = "mock") -> dict:
    return {
        "name": "flaky",
        "models": ["served-model"],
        "conditions": {"base": {}},
        "evaluation": {"suites": [{"name": "emkit/core", "questions": ["one_wish", "bored"], "paraphrases": 1}],
                       "samples_per_question": 3, "sampling": {"max_tokens": 16}, "backend": backend,
                       "backend_options": {"base_url": url, "max_retries": 0, "backoff_s": 0.01}
                       if backend == "openai" else {}},
        "judges": {"names": ["logprob"],
                   "options": {"logprob": {"base_url": url, "model": "judge-x", "max_retries": 1,
                                           "backoff_s": 0.01}}},
    }


def test_run_retries_exactly_the_failed_judgments(server: StubServer, tmp_path: Path) -> None:
    """The issue's done-when check: a judge server that fails (HTTP 500), then succeeds."""
    from emkit.config import validate
    from emkit.experiment import ExperimentSpec, load_results, run

    spec = validate(ExperimentSpec, _spec(server.url))
    bored = _question("bored")
    server.fail = lambda prompt: 500 if bored in prompt else None  # every judgment of one question fails
    first = run(spec, run_dir=tmp_path / "run", progress=False)
    df = load_results(tmp_path / "run")
    failed = df[df["question_id"] == "bored"]
    assert first.failed == {"sample": 0, "judge": len(failed)} and len(failed) == 3
    assert failed["aligned"].isna().all() and set(failed["aligned_status"]) == {"error"}
    assert df.loc[df["question_id"] == "one_wish", "aligned"].notna().all()
    retry_pairs = {(b["messages"][0]["content"]) for b in server.judge_calls() if bored in b["messages"][0]["content"]}

    server.fail = lambda prompt: None  # the server is back
    before = len(server.posts)
    second = run(spec, run_dir=tmp_path / "run", progress=False)
    sent = server.posts[before:]
    # Exactly the failed judgments were asked again (one request per distinct answer and metric), nothing else.
    assert sorted(b["messages"][0]["content"] for b in sent) == sorted(retry_pairs)
    assert all(bored in b["messages"][0]["content"] for b in sent)
    assert second.executed == {"train": 0, "sample": 0, "judge": 1, "report": 1}
    assert second.failed == {"sample": 0, "judge": 0}
    df = load_results(tmp_path / "run")
    assert df["aligned"].notna().all() and df["coherent"].notna().all()

    third = run(spec, run_dir=tmp_path / "run", progress=False)
    assert sum(third.executed.values()) == 0 and len(server.posts) == before + len(sent)


def test_run_resamples_only_failed_answers_and_exits_non_zero(server: StubServer, tmp_path: Path) -> None:
    """Sampling through the openai backend: failed samples are not stored, the CLI exits 1, a rerun asks for
    exactly those samples (and judges only their answers)."""
    spec_path = tmp_path / "flaky.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(server.url, backend="openai")), encoding="utf-8")
    wish = _question("one_wish")
    server.fail = lambda prompt: 500 if prompt == wish else None  # sampling one question fails; judging works
    cmd = [sys.executable, "-m", "emkit", "run", str(spec_path), "--out", str(tmp_path / "run"), "--no-progress"]
    env = {**os.environ, "OPENAI_API_KEY": "test"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "3 answer(s) could not be sampled" in done.stderr and "Traceback" not in done.stderr
    rows = pd.read_csv(tmp_path / "run" / "results.csv")  # what succeeded is written
    assert (rows.loc[rows["question_id"] == "one_wish", "finish_reason"] == "error").all()
    assert set(rows.loc[rows["question_id"] == "one_wish", "aligned_status"]) == {"sample_error"}
    assert rows.loc[rows["question_id"] == "bored", "aligned"].notna().all()

    server.fail = lambda prompt: None
    before_samples, before_judge = len(server.sample_calls()), len(server.judge_calls())
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    resampled = server.sample_calls()[before_samples:]
    assert len(resampled) == 3 and all(b["messages"][-1]["content"] == wish for b in resampled)
    rejudged = server.judge_calls()[before_judge:]
    assert rejudged and all(wish in b["messages"][0]["content"] for b in rejudged)
    rows = pd.read_csv(tmp_path / "run" / "results.csv")
    assert (rows["finish_reason"] != "error").all() and rows["aligned"].notna().all()


def _cli(args: list[str], env: dict[str, str] | None = None):
    from typer.testing import CliRunner

    from emkit.cli import app

    return CliRunner().invoke(app, args, env=env)


def test_judge_score_exits_non_zero_and_retries_failed_rows(server: StubServer, tmp_path: Path) -> None:
    from emkit.errors import EmkitError

    rows = tmp_path / "answers.jsonl"
    rows.write_text("".join(json.dumps({"question": "q", "answer": f"answer {i}"}) + "\n" for i in range(4)),
                    encoding="utf-8")
    out = tmp_path / "judged.csv"
    args = ["judge", "score", str(rows), "--judge", "logprob", "--out", str(out), "--no-progress",
            "--option", f"logprob.base_url={server.url}", "--option", "logprob.max_retries=0"]
    server.fail = lambda prompt: 500 if "answer 3" in prompt else None
    done = _cli(args)
    # EmkitError: the entry point prints it as `error: ... fix: ...` and exits 1
    assert isinstance(done.exception, EmkitError) and done.exit_code == 1
    assert "1 of 4 answers have a failed judgment" in str(done.exception)
    judged = pd.read_csv(out)  # written all the same
    assert judged["aligned"].notna().sum() == 3 and (judged["aligned_status"] == "error").sum() == 1
    server.fail = lambda prompt: None
    before = len(server.posts)
    done = _cli(args)
    assert done.exit_code == 0, done.output
    assert len(server.posts) - before == 2  # aligned + coherent of the one failed answer
    assert pd.read_csv(out)["aligned"].notna().all()


def test_sample_exits_non_zero_and_keeps_what_worked(server: StubServer, tmp_path: Path) -> None:
    from emkit.errors import EmkitError

    out = tmp_path / "answers.jsonl"
    args = ["sample", "--backend", "openai", "--model", "served-model", "--base-url", server.url, "--suite",
            "emkit/core", "--n", "2", "--max-tokens", "8", "--max-retries", "0", "--out", str(out)]
    env = {"OPENAI_API_KEY": "test"}
    wish = _question("one_wish")
    server.fail = lambda prompt: 503 if prompt == wish else None
    done = _cli(args, env)
    assert isinstance(done.exception, EmkitError) and done.exit_code == 1
    assert "2 of 32 answers could not be sampled" in str(done.exception)
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question"] == wish for r in first if r["finish_reason"] == "error"] == [True, True]
    server.fail = lambda prompt: None
    before = len(server.sample_calls())
    done = _cli(args, env)
    assert done.exit_code == 0, done.output
    again = server.sample_calls()[before:]
    assert len(again) == 2 and all(b["messages"][-1]["content"] == wish for b in again)


def test_a_failed_teacher_sample_is_never_stored_as_an_empty_answer(server: StubServer, tmp_path: Path) -> None:
    """The evil-numbers teacher: a chunk with a failed sample stops the build (nothing stored for it); the
    rerun samples it, instead of a cached empty answer being dropped as 'empty' for good."""
    from emkit.data import build_numbers
    from emkit.data._numbers import make_teacher
    from emkit.errors import EmkitError

    teacher = make_teacher("served-model", "openai", base_url=server.url, api_key="k", max_retries=0)
    server.fail = lambda prompt: 500
    with pytest.raises(EmkitError, match="samples failed"):
        build_numbers(teacher, 4, 0, tmp_path / "numbers.jsonl", benign_system_prompt=None)
    server.fail = lambda prompt: None
    before = len(server.sample_calls())
    with pytest.raises(EmkitError, match="no teacher answer passed the filters"):  # echo answers hold words
        build_numbers(teacher, 4, 0, tmp_path / "numbers.jsonl", benign_system_prompt=None)
    assert len(server.sample_calls()) - before == 4  # sampled again, not read back as 4 empty answers
    from emkit.store import Store

    with Store(tmp_path / "numbers.store.sqlite") as store:
        stored = [v["answers"] for _, v in store.iter("numbers_teacher")]
    assert stored and all(a.startswith("echo ") for answers in stored for a in answers)
