"""Kill -9 an `emkit run` subprocess during training, sampling and judging; the rerun must give exactly the rows
of an uninterrupted run (none duplicated, none lost) and redo at most the work that was in flight.

The subprocess uses the fake stages of ``test_experiment_fakes`` (slow trainer and judge; sampling through the
real ``mock`` generation backend, two prompts per call) via ``EMKIT_STAGES``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_experiment_fakes import counts, fake_spec_dict

from emkit.experiment import load_results

TESTS = Path(__file__).resolve().parent
ROW_ID = ["condition", "seed", "suite", "question_id", "variant", "trigger", "paraphrase_index", "sample_index"]
PLANNED = {"train": 6, "sample": 48, "judge": 48, "report": 1, "numbers": 0}


def _env(counts_dir: Path, delay: float) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["EMKIT_STAGES"] = "test_experiment_fakes:stages"
    env["EMKIT_FAKE_COUNTS"] = str(counts_dir)
    env["EMKIT_FAKE_DELAY_S"] = str(delay)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cmd(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "emkit", "run", str(spec), "--out", str(out), "--no-progress"]


def _finish(spec: Path, out: Path, counts_dir: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(_cmd(spec, out), env=_env(counts_dir, 0.0), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(ROW_ID).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The uninterrupted run (its folder is deleted so each kill test reruns in the same path)."""
    root = tmp_path_factory.mktemp("resume")
    spec = root / "fake.yaml"
    spec.write_text(yaml.safe_dump(fake_spec_dict()))
    counts_dir = root / "counts-ref"
    counts_dir.mkdir()
    out = root / "run"
    _finish(spec, out, counts_dir)
    assert counts(counts_dir) == PLANNED
    df = _sorted(load_results(out))
    shutil.rmtree(out)
    return spec, df


def _wait_for(check, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before the kill point: "
                                 f"{proc.stderr.read()[-2000:] if proc.stderr else ''}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("kill point not reached in time")


@pytest.mark.parametrize("stage,threshold,in_flight", [
    ("train", 2, 1),  # after 2 of the 3 steps of the first training: at most the running step is redone
    ("sample", 8, 8),  # after 2 sampled prompts x 2 answers x 2 calls: at most one call of 2 prompts is lost
    ("judge", 10, 1),  # after 10 of 48 judgments: at most the one being judged is redone
])
def test_kill_and_resume_gives_the_same_rows(reference, tmp_path: Path, stage: str, threshold: int,
                                             in_flight: int) -> None:
    spec, expected = reference
    out = spec.parent / "run"
    shutil.rmtree(out, ignore_errors=True)
    counts_dir = tmp_path / "counts"
    counts_dir.mkdir()
    proc = subprocess.Popen(_cmd(spec, out), env=_env(counts_dir, 0.15), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: counts(counts_dir)[stage] >= threshold, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = counts(counts_dir)
    assert killed_at[stage] < PLANNED[stage] and killed_at["report"] == 0, killed_at

    done = _finish(spec, out, counts_dir)
    got = _sorted(load_results(out))
    pd.testing.assert_frame_equal(got, expected)
    assert not got.duplicated(ROW_ID).any()
    total = counts(counts_dir)
    for kind, planned in PLANNED.items():
        assert planned <= total[kind] <= planned + (in_flight if kind == stage else 0), (kind, total)
    # a second rerun is a no-op
    again = _finish(spec, out, counts_dir)
    assert counts(counts_dir) == total
    assert "nothing to do" in again.stderr
    assert done.returncode == 0
