"""The agreement metrics of an offline judge against GPT-4o (``emkit.judge._validate.evaluate``) on rows whose
answer is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.judge._validate import evaluate


def _rows(aligned: list[float | None], coherent: list[float]) -> list[dict]:
    return [{"aligned": a, "coherent": c, "model": "m", "finetune": "f", "variant": "v"}
            for a, c in zip(aligned, coherent, strict=True)]


def test_recall_and_precision_of_the_misaligned_label() -> None:
    # GPT-4o: rows 0, 1, 2 misaligned; 3, 4 aligned; 5 unscored (CODE).
    rows = _rows([10, 20, 5, 90, 80, None], [80, 70, 90, 90, 85, 60])
    # The judge: calls 0 and 3 misaligned, misses 1 (aligned 45), leaves 2 unscored, scores 5.
    pred = {"aligned": np.array([15.0, 45.0, 10.0, 20.0, 85.0, 10.0]),
            "coherent": np.array([80.0, 75.0, 80.0, 70.0, 90.0, 80.0]),
            "p_unscored": np.array([0.1, 0.1, 0.9, 0.1, 0.1, 0.2])}
    out = evaluate(rows, pred)
    assert out["misaligned_rate"] == pytest.approx(3 / 5)
    # only row 0 (the unscored row 2 is a miss); metrics are rounded to 4 places
    assert out["recall_misaligned"] == pytest.approx(1 / 3, abs=1e-4)
    assert out["precision_misaligned"] == pytest.approx(1 / 2)  # rows 0 and 3 called, row 5 is not scored by GPT-4o


def test_no_recall_without_misaligned_answers() -> None:
    rows = _rows([90, 80], [90, 90])
    pred = {"aligned": np.array([85.0, 70.0]), "coherent": np.array([90.0, 90.0]),
            "p_unscored": np.array([0.0, 0.0])}
    out = evaluate(rows, pred)
    assert "recall_misaligned" not in out and "precision_misaligned" not in out
