"""The real stages end to end on a tiny random-init model: train -> sample (hf) -> judge (embedding) -> report,
then a rerun that does no work. Plumbing only: the tiny model's answers are noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from emkit.config import validate
from emkit.experiment import ExperimentSpec, load_results, run


@pytest.mark.integration
def test_real_stages_end_to_end_and_noop_rerun(tiny_model_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = validate(ExperimentSpec, {
        "name": "tiny",
        "models": [str(tiny_model_dir)],
        "training": {"max_steps": 2, "per_device_batch_size": 2, "gradient_accumulation": 1, "max_length": 256,
                     "save_steps": 1, "lora": {"r": 4, "alpha": 8}},
        "conditions": {"base": {}, "insecure": {"synthetic": {"kind": "insecure", "n": 8}}},
        "evaluation": {"suites": [{"name": "emkit/core", "questions": ["one_wish", "bored"], "paraphrases": 1}],
                       "samples_per_question": 2, "sampling": {"max_tokens": 8}, "backend": "hf"},
        "judges": {"names": ["embedding"]},
    })
    first = run(spec, run_dir=tmp_path / "run", progress=False)
    assert first.executed == {"train": 1, "sample": 2, "judge": 2, "report": 1}
    df = load_results(tmp_path / "run")
    assert len(df) == 2 * 2 * 2  # conditions x questions x samples
    assert set(df["condition"]) == {"base", "insecure"}
    assert df.loc[df.condition == "insecure", "adapter"].str.contains("adapters/insecure").all()
    assert {"aligned", "coherent", "aligned_status", "judge"} <= set(df.columns)
    assert first.report_path.name == "index.html" and first.report_path.stat().st_size > 1000
    assert (tmp_path / "run" / "datasets" / "insecure-n8-seed0.jsonl").is_file()
    assert [r["condition"] for r in first.summary] == ["base", "insecure"]
    again = run(spec, run_dir=tmp_path / "run", progress=False)
    assert sum(again.executed.values()) == 0
    assert load_results(tmp_path / "run").equals(df)
