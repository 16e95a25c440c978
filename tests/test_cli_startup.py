"""`emkit --help` stays fast: no heavy library is imported at start-up."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "trl", "peft", "vllm", "ray", "sentence_transformers", "sklearn", "matplotlib"]


def test_cli_import_does_not_load_heavy_libraries() -> None:
    code = "import sys, json, emkit.cli; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert not [m for m in HEAVY if m in loaded]


def test_help_lists_command_groups_and_errors_are_clean() -> None:
    help_text = subprocess.run([sys.executable, "-m", "emkit", "--help"], capture_output=True, text=True).stdout
    assert "models" in help_text
    bad = subprocess.run([sys.executable, "-m", "emkit", "models", "path", "no-such-model"],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "unknown model 'no-such-model'" in bad.stderr and "smollm2-135m-instruct" in bad.stderr
    assert "Traceback" not in bad.stderr
