"""Self-contained HTML reports of result rows.

>>> from emkit.report import build_report
>>> build_report(["runs/demo/results.parquet"], "runs/demo/report", title="demo")  # -> .../index.html

Exact signature:
- ``build_report(results: DataFrame | Sequence[str | PathLike] | str | PathLike, out_dir: str | Path,
  title: str = "emkit report", *, aligned_threshold: float = 30.0, coherent_threshold: float = 50.0,
  n_boot: int = 2000, seed: int = 0, baseline: str | None = None) -> Path``
  writes ``index.html`` (inline CSS/JS/figures, opens from file:// with no network; every piece of model text
  HTML-escaped), ``summary.json``, ``results.csv`` (the paper's columns question, answer, question_id, aligned,
  coherent first) and the figures as PNG and SVG; returns the index.html path. ``baseline``: compare every
  condition against this one, per suite and rule-judge metric, in one table (e.g. the unmitigated fine-tune of a
  mitigation study); None = against the ``secure`` or ``base`` control.

CLI: ``emkit report RESULTS... --out DIR`` and ``emkit compare A B`` (see ``emkit.report.cli``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def build_report(results: pd.DataFrame | Sequence[str | os.PathLike] | str | os.PathLike, out_dir: str | Path,
                 title: str = "emkit report", *, aligned_threshold: float = 30.0, coherent_threshold: float = 50.0,
                 n_boot: int = 2000, seed: int = 0, baseline: str | None = None) -> Path:
    """Write index.html, summary.json, results.csv and figures into ``out_dir``; return index.html's path."""
    # Imported here so that `emkit --help` (which imports emkit.report.cli) does not pay for pandas.
    from emkit.report._build import build_report as _build_report

    return _build_report(results, out_dir, title, aligned_threshold=aligned_threshold,
                         coherent_threshold=coherent_threshold, n_boot=n_boot, seed=seed, baseline=baseline)


__all__ = ["build_report"]
