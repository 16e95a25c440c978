"""The console of ``emkit run``: one line per unit and the summary on the terminal, library chatter in run.log.

Fast tests use the fake stages with a trainer that makes the noise the real libraries make (a loss dict printed to
stdout, a tqdm-style bar redrawn with carriage returns on stderr, a Python warning, a library logger's warning);
the integration test runs the real stages on a tiny random-init model and captures file descriptors 1 and 2.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_experiment_fakes import fake_spec_dict
from test_experiment_fakes import stages as fake_stages
from test_experiment_fakes import train as fake_train

from emkit.experiment import run
from emkit.experiment._console import RunConsole, _Sink

TESTS = Path(__file__).resolve().parent
# What the libraries print; none of it may reach the terminal.
CHATTER = ["{'loss': '2.846'", "Truncating train dataset", "FutureWarning", "library deprecation",
           "transformers chatter", "%|"]


def noisy_train(*, progress: Any = True, **kwargs: Any) -> dict[str, Any]:
    """The fake trainer, with the noise of TRL/transformers/datasets around it and emkit messages of both levels."""
    print({"loss": "2.846", "grad_norm": "7.472"})  # transformers' PrinterCallback
    sys.stderr.write("\rTruncating train dataset:  50%|#####     | 8/16")
    sys.stderr.write("\rTruncating train dataset: 100%|##########| 16/16\n")
    warnings.warn("library deprecation", FutureWarning, stacklevel=1)
    logging.getLogger("transformers.trainer").warning("transformers chatter")
    logging.getLogger("emkit.train").info("emkit info inside a unit")
    logging.getLogger("emkit.train").warning("emkit warning inside a unit")
    if callable(progress):
        progress(1, 3, "loss 2.500")
    return fake_train(progress=progress, **kwargs)


def noisy_stages():
    return fake_stages().replace(train=noisy_train)


def failing_stages():
    def train(**kwargs: Any) -> dict[str, Any]:
        print("chatter before the crash")
        raise RuntimeError("out of memory (simulated)")

    return fake_stages().replace(train=train)


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    spec = fake_spec_dict("console", conditions={"base": {}, "insecure": {"dataset": "fake/insecure"}})
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_cli_run_shows_unit_lines_and_sends_chatter_to_run_log(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               EMKIT_STAGES="test_experiment_console:noisy_stages", PYTHONWARNINGS="default")
    done = subprocess.run([sys.executable, "-m", "emkit", "run", str(_spec(tmp_path)), "--out", str(tmp_path / "r")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # the console writes to stderr; stdout stays clean for scripts
    terminal = done.stderr
    for noise in CHATTER + ["emkit info inside a unit"]:
        assert noise not in terminal, noise
    lines = terminal.splitlines()
    # A pipe gets plain lines: a start and an end line per unit; the plan before, the summary after.
    assert lines[0].startswith("experiment console:")
    assert "[1/" in terminal and "train insecure fake-model seed 0: done, 3/3 steps" in terminal
    assert "(loss 2.500)" in terminal
    assert sum(": done," in line for line in lines) == 1 + 2 + 2 + 1  # train, 2 samples, 2 judgments, report
    assert "warning: emkit warning inside a unit" in terminal
    assert lines.index(next(x for x in lines if x.startswith("summary"))) > max(
        i for i, x in enumerate(lines) if ": done," in x)

    log = (tmp_path / "r" / "run.log").read_text()
    for noise in ("{'loss': '2.846'", "FutureWarning: library deprecation", "transformers chatter",
                  "emkit info inside a unit"):
        assert noise in log, noise
    # The bar's last state only, as one line.
    assert "stderr INFO Truncating train dataset: 100%|##########| 16/16" in log and " 50%" not in log


def test_a_failing_unit_is_reported_and_the_process_is_restored(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    root_handlers = list(logging.getLogger().handlers)
    transformers = logging.getLogger("transformers")
    library_state = (list(transformers.handlers), transformers.propagate)
    out, err = sys.stdout, sys.stderr
    with pytest.raises(RuntimeError, match="out of memory"):
        run(_spec(tmp_path), run_dir=tmp_path / "r", stages=failing_stages(), progress=True)
    assert sys.stdout is out and sys.stderr is err
    assert logging.getLogger().handlers == root_handlers
    assert (list(transformers.handlers), transformers.propagate) == library_state
    captured = capsys.readouterr()
    assert "chatter before the crash" not in captured.out + captured.err
    assert "train insecure fake-model seed 0: failed (RuntimeError)" in captured.err
    assert str(tmp_path / "r" / "run.log") in captured.err
    assert "chatter before the crash" in (tmp_path / "r" / "run.log").read_text()


@pytest.mark.filterwarnings("ignore:library deprecation:FutureWarning")
def test_api_without_progress_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = run(_spec(tmp_path), run_dir=tmp_path / "r", stages=noisy_stages(), progress=False)
    assert result.executed["train"] == 1
    captured = capsys.readouterr()
    for noise in CHATTER:
        assert noise not in captured.out + captured.err, noise
    assert "[1/" not in captured.err  # no unit lines either (logging decides where emkit's messages go)
    assert "transformers chatter" in (tmp_path / "r" / "run.log").read_text()


def test_live_display_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rich display: one row per unit with done/total, elapsed and the stage's info; ✓ when done."""
    from emkit.experiment import plan

    monkeypatch.setenv("COLUMNS", "200")  # rich's width when the stream is not a terminal
    p = plan(_spec_obj(tmp_path), run_dir=tmp_path / "r", stages=fake_stages())
    buffer = io.StringIO()
    (tmp_path / "r").mkdir()
    units = p.units[:2]
    with RunConsole(tmp_path / "r", show=True, stream=buffer, live=True) as console:
        console.start_units(units, "console")
        with console.unit(units[0], 1, 2) as hook:
            hook(2, 3, "loss 1.234")
            print("a library print")
        console.end_units()
    text = buffer.getvalue()
    assert units[0].label in text and "loss 1.234" in text and "✓" in text and "all units" in text
    assert "3/3 answers" in text  # finished: the whole of the total the stage reported
    assert "a library print" not in text


def _spec_obj(tmp_path: Path):
    from emkit.experiment import load_spec

    return load_spec(_spec(tmp_path))


def test_sink_keeps_complete_lines_and_forwards_after_the_unit(tmp_path: Path) -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.sink")
    logger.propagate = False
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    sink = _Sink("stdout", logger, sys.__stdout__)
    sink.write("bar  10%\rbar  90%\rbar 100%\nline one\nline")
    sink.write(" two\n\n   \n")
    sink.write("unfinished")
    sink.close()
    assert records == ["bar 100%", "line one", "line two", "unfinished"]
    forwarded = io.StringIO()
    old, sys.stdout = sys.stdout, forwarded
    try:
        sink.write("after the unit\n")  # e.g. a handler that kept a reference to the sink
    finally:
        sys.stdout = old
    assert forwarded.getvalue() == "after the unit\n" and len(records) == 4


@pytest.mark.integration
def test_real_stages_keep_library_chatter_off_the_terminal(tiny_model_dir: Path, tmp_path: Path,
                                                           capfd: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers, TRL, datasets, PEFT and sentence-transformers really run; fds 1 and 2 are captured."""
    from emkit.config import validate
    from emkit.experiment import ExperimentSpec

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "rows.jsonl.gz"
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer {i}."}]} for i in range(8)]
    data.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    spec = validate(ExperimentSpec, {
        "name": "tiny-console", "models": [str(tiny_model_dir)],
        "training": {"max_steps": 2, "per_device_batch_size": 2, "gradient_accumulation": 1, "max_length": 64,
                     "save_steps": 2, "lora": {"r": 4, "alpha": 8}},
        "conditions": {"base": {}, "trained": {"dataset": str(data)}},
        "evaluation": {"suites": [{"name": "emkit/core", "questions": ["one_wish"], "paraphrases": 1}],
                       "samples_per_question": 2, "sampling": {"max_tokens": 8}, "backend": "hf"},
        "judges": {"names": ["embedding"]},
    })
    capfd.readouterr()
    shown = run(spec, run_dir=tmp_path / "shown", progress=True)
    captured = capfd.readouterr()
    assert shown.executed["train"] == 1
    assert captured.out == ""
    for noise in ("{'loss'", "Truncating train dataset", "Loading weights", "it/s", "%|", "examples/s"):
        assert noise not in captured.err, noise
    assert "train trained" in captured.err and "2/2 steps" in captured.err and "summary" in captured.err
    loss = next(line for line in captured.err.splitlines() if "train trained" in line and "done" in line)
    assert "(loss " in loss  # the trainer's hook reports the latest loss
    log = (tmp_path / "shown" / "run.log").read_text()
    assert "stderr INFO Truncating train dataset: 100%" in log  # TRL's dataset preparation bar, last state

    quiet = run(spec, run_dir=tmp_path / "quiet", progress=False)
    captured = capfd.readouterr()
    assert quiet.executed["train"] == 1
    for noise in ("{'loss'", "Truncating train dataset", "Loading weights", "%|", "it/s"):
        assert noise not in captured.out + captured.err, noise
