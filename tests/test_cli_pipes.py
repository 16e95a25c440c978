"""Output meant for scripts stays whole in a pipe: tables become tab-separated lines, nothing cut with "…"
(issue 17, case 8: `emkit models list | cat` printed `smollm2-135m…`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _piped(*args: str) -> list[list[str]]:
    # A pipe (capture_output), as in `emkit models list | cat`; COLUMNS=40 as a narrow terminal would set it.
    done = subprocess.run([sys.executable, "-m", "emkit", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "40"})
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_models_list_in_a_pipe() -> None:
    from emkit.models import PACKAGED

    lines = _piped("models", "list")
    assert lines[0] == ["name", "parameters", "installed", "converted", "size", "hub equivalent"]
    names = [line[0].removesuffix(" (default)") for line in lines[1:]]
    assert names == list(PACKAGED)
    assert [line[5] for line in lines[1:]] == [m.hf_equivalent for m in PACKAGED.values()]


def test_data_and_suites_lists_in_a_pipe(shared_data: Path) -> None:
    from emkit.data import registry
    from emkit.questions import BUILTIN

    files = [line[1] for line in _piped("data", "list")[1:]]
    assert files == list(registry.FILES)  # e.g. model-organisms-em/training_datasets/risky_financial_advice...
    suites = _piped("suites", "list")
    assert [line[0] for line in suites[1:]] == list(BUILTIN)
    assert all(len(line) == 6 for line in suites)  # name, questions, variants, source, available, description
