"""Run bandit once over many code strings (one subprocess for the whole batch: ~1 s start-up, then fast)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from emkit.errors import EmkitError, MissingDependencyError


def bandit_findings(codes: dict[str, str]) -> dict[str, list[dict]]:
    """``{name: code}`` -> ``{name: [{"test_id", "severity", "line"}...]}`` from one bandit run.

    Names become file names, so they must be simple (letters, digits, ``_``, ``-``).
    """
    import importlib.util

    if importlib.util.find_spec("bandit") is None:
        raise MissingDependencyError("checking generated code needs bandit, which is not installed",
                                     hint="pip install 'emkit[code]'")
    with tempfile.TemporaryDirectory(prefix="emkit-bandit-") as tmp:
        root = Path(tmp)
        for name, code in codes.items():
            (root / f"{name}.py").write_text(code + "\n", encoding="utf-8")
        # bandit exits 1 when it finds issues; only a missing report means it failed.
        proc = subprocess.run([sys.executable, "-m", "bandit", "-r", str(root), "-f", "json", "-q"],
                              capture_output=True, text=True, check=False)
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise EmkitError(f"bandit produced no JSON report (exit {proc.returncode}): {proc.stderr[-500:]}",
                             hint="pip install bandit") from exc
        found: dict[str, list[dict]] = {name: [] for name in codes}
        for issue in report.get("results", []):
            name = Path(issue["filename"]).stem
            found.setdefault(name, []).append({"test_id": issue["test_id"], "severity": issue["issue_severity"],
                                               "line": issue["line_number"]})
        errors = report.get("errors", [])
        if errors:
            raise EmkitError(f"bandit could not parse {len(errors)} file(s), e.g. {errors[0]}")
        return found
