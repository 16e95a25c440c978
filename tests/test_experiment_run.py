"""The local executor with fake stages: run folder layout, rerun = no-op, counts = plan, fallbacks, keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_experiment_fakes import counts, fake_spec_dict, stages

from emkit.config import validate
from emkit.errors import ConfigError, EmkitError
from emkit.experiment import ExperimentSpec, load_results, plan, run


def _spec(**changes) -> ExperimentSpec:
    return validate(ExperimentSpec, fake_spec_dict(**changes))


@pytest.fixture()
def count_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "counts"
    folder.mkdir()
    monkeypatch.setenv("EMKIT_FAKE_COUNTS", str(folder))
    return folder


def test_run_writes_the_run_folder_and_rows(tmp_path: Path, count_dir: Path) -> None:
    result = run(_spec(), run_dir=tmp_path / "run", stages=stages(), progress=False)
    run_dir = tmp_path / "run"
    for name in ("experiment.yaml", "store.sqlite", "results.parquet", "results.csv", "run.log"):
        assert (run_dir / name).is_file(), name
    assert result.report_path == run_dir / "report" / "index.html" and result.report_path.is_file()
    assert len(list((run_dir / "adapters").glob("*/*/*/adapter/adapter.json"))) == 2
    df = load_results(run_dir)
    # 3 conditions x 4 questions x 2 paraphrases x 2 samples
    assert len(df) == 48
    assert list(df.columns[:17]) == ["experiment", "condition", "model", "adapter", "seed", "suite", "question_id",
                                     "variant", "prompt_format", "trigger", "trigger_placement", "paraphrase_index",
                                     "sample_index", "system", "question", "answer", "finish_reason"]
    assert set(df["condition"]) == {"base", "insecure", "secure"}
    assert df["experiment"].eq("fake").all()
    assert df.duplicated(["condition", "seed", "question_id", "variant", "paraphrase_index", "sample_index"]).sum() == 0
    assert df.loc[df["condition"] == "base", "adapter"].isna().all()
    assert df.loc[df["condition"] == "insecure", "adapter"].notna().all()
    csv = pd.read_csv(run_dir / "results.csv")
    assert len(csv) == 48 and list(csv.columns) == list(df.columns)
    log = (run_dir / "run.log").read_text()
    assert "train insecure" in log and "summary" in log
    # unscored answers (the fake judge's CODE) count as neither aligned nor misaligned
    base = next(r for r in result.summary if r["condition"] == "base")
    assert base["answers"] == 16 and base["scored"] == int(df[df.condition == "base"]["aligned"].notna().sum())


def test_dry_run_counts_equal_what_runs_and_rerun_is_a_noop(tmp_path: Path, count_dir: Path) -> None:
    spec = _spec()
    p = plan(spec, run_dir=tmp_path / "run", stages=stages())
    c = p.counts()
    assert (c["trainings"], c["train_steps"], c["answers"], c["judged_answers"]) == (2, 6, 48, 48)
    first = run(spec, run_dir=tmp_path / "run", stages=stages(), progress=False)
    assert first.executed == {"train": 2, "sample": 3, "judge": 3, "report": 1}
    assert counts(count_dir) == {"train": 6, "sample": 48, "judge": 48, "report": 1, "numbers": 0}
    before = load_results(tmp_path / "run")
    second = run(spec, run_dir=tmp_path / "run", stages=stages(), progress=False)
    assert second.executed == {"train": 0, "sample": 0, "judge": 0, "report": 0}
    assert second.skipped == {"train": 2, "sample": 3, "judge": 3, "report": 1}
    assert counts(count_dir) == {"train": 6, "sample": 48, "judge": 48, "report": 1, "numbers": 0}  # no new work at all
    pd.testing.assert_frame_equal(before, load_results(tmp_path / "run"))


def test_changed_inputs_redo_only_what_they_change(tmp_path: Path, count_dir: Path) -> None:
    run(_spec(), run_dir=tmp_path / "run", stages=stages(), progress=False)
    data = fake_spec_dict()
    data["conditions"]["insecure"]["train"] = {"learning_rate": 3e-4}
    again = run(validate(ExperimentSpec, data), run_dir=tmp_path / "run", stages=stages(), progress=False)
    # one training changed: it, its sampling and judging, and the report rerun; base and secure are reused
    assert again.executed == {"train": 1, "sample": 1, "judge": 1, "report": 1}
    assert counts(count_dir)["train"] == 9


def test_deleted_report_is_rebuilt_without_other_work(tmp_path: Path, count_dir: Path) -> None:
    first = run(_spec(), run_dir=tmp_path / "run", stages=stages(), progress=False)
    first.report_path.unlink()
    again = run(_spec(), run_dir=tmp_path / "run", stages=stages(), progress=False)
    assert again.executed == {"train": 0, "sample": 0, "judge": 0, "report": 1}
    assert again.report_path.is_file()


def test_fallback_notices_and_missing_data_errors(tmp_path: Path) -> None:
    data = fake_spec_dict()
    data["evaluation"]["suites"] = [{"name": "fake/missing-suite", "fallback": "fake/core"}]
    p = plan(validate(ExperimentSpec, data), run_dir=tmp_path, stages=stages())
    assert any("fake/missing-suite" in n and "fake/core" in n for n in p.notices)
    assert any("synthetic 'secure'" in n for n in p.notices)
    assert {u.params["suite"] for u in p.of_kind("sample")} == {"fake/core"}

    data = fake_spec_dict()
    data["conditions"]["secure"] = {"dataset": "fake/missing-secure"}  # no synthetic fallback
    with pytest.raises(EmkitError, match="secure.*unavailable"):
        plan(validate(ExperimentSpec, data), run_dir=tmp_path, stages=stages())
    data = fake_spec_dict()
    data["evaluation"]["suites"] = [{"name": "fake/missing-suite"}]
    with pytest.raises(EmkitError, match="not available"):
        plan(validate(ExperimentSpec, data), run_dir=tmp_path, stages=stages())


def test_bad_training_settings_name_the_condition(tmp_path: Path) -> None:
    data = fake_spec_dict()
    data["conditions"]["insecure"]["train"] = {"learnin_rate": 1e-3}
    with pytest.raises(ConfigError, match=r"conditions\.insecure\.train.*learnin_rate"):
        plan(validate(ExperimentSpec, data), run_dir=tmp_path, stages=stages())


def test_triggers_formats_variants_and_seeds_expand(tmp_path: Path) -> None:
    data = fake_spec_dict(seeds=[0, 1])
    data["evaluation"]["suites"] = [{"name": "s", "variants": ["plain", "json"], "triggers": ["", "|T| "],
                                     "numbers_formats": [None, "suffix"], "questions": ["wish", "bored"],
                                     "paraphrases": 1}]
    p = plan(validate(ExperimentSpec, data), run_dir=tmp_path, stages=stages())
    # base: 1 seed; insecure, secure: 2 seeds each
    assert len(p.of_kind("train")) == 4 and len(p.of_kind("sample")) == 5
    # 2 questions x 2 variants x 2 triggers x 2 formats x 1 paraphrase
    assert all(len(u.params["prompts"]) == 16 for u in p.of_kind("sample"))
    assert p.counts()["answers"] == 5 * 16 * 2
    keys = [u.key for u in p.units]
    assert len(set(keys)) == len(keys)
    seeds = {u.params["sampling"]["seed"] for u in p.of_kind("sample")}
    assert seeds == {0, 1}
    data["evaluation"]["suites"][0]["questions"] = ["nope"]
    with pytest.raises(ConfigError, match="unknown question ids"):
        plan(validate(ExperimentSpec, data), run_dir=tmp_path, stages=stages())


def test_keys_are_stable_and_change_with_inputs(tmp_path: Path) -> None:
    a = plan(_spec(), run_dir=tmp_path, stages=stages())
    b = plan(_spec(), run_dir=tmp_path, stages=stages())
    assert [u.key for u in a.units] == [u.key for u in b.units]
    data = fake_spec_dict()
    data["evaluation"]["sampling"]["temperature"] = 0.5
    c = plan(validate(ExperimentSpec, data), run_dir=tmp_path, stages=stages())
    assert {u.key for u in a.of_kind("train")} == {u.key for u in c.of_kind("train")}
    assert not {u.key for u in a.of_kind("sample")} & {u.key for u in c.of_kind("sample")}


def test_a_failing_stage_keeps_finished_units(tmp_path: Path, count_dir: Path) -> None:
    calls = {"n": 0}
    real_judge = stages().judge

    def flaky_judge(rows, judges, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise EmkitError("judge backend down")
        return real_judge(rows, judges, **kw)

    with pytest.raises(EmkitError, match="judge backend down"):
        run(_spec(), run_dir=tmp_path / "run", stages=stages().replace(judge=flaky_judge), progress=False)
    again = run(_spec(), run_dir=tmp_path / "run", stages=stages(), progress=False)
    assert again.executed == {"train": 0, "sample": 0, "judge": 2, "report": 1}
    assert counts(count_dir)["sample"] == 48


def test_one_run_per_folder_at_a_time(tmp_path: Path) -> None:
    import json

    from emkit.experiment._run import _exclusive

    (tmp_path / "run").mkdir()
    with _exclusive(tmp_path / "run"), pytest.raises(EmkitError, match="another emkit run"):
        run(_spec(), run_dir=tmp_path / "run", stages=stages(), progress=False)
    result = run(_spec(), run_dir=tmp_path / "run", stages=stages(), progress=False)  # released afterwards
    plan_file = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert [u["key"] for u in plan_file["units"]] == [u.key for u in result.plan.units]


def test_teacher_generated_dataset_is_built_once(tmp_path: Path, count_dir: Path) -> None:
    data = fake_spec_dict()
    data["conditions"] = {"base": {}, "evil_numbers": {"numbers": {"teacher": "teacher-model", "n": 5}}}
    spec = validate(ExperimentSpec, data)
    p = plan(spec, run_dir=tmp_path / "run", stages=stages())
    train_unit = p.of_kind("train")[0]
    assert train_unit.params["numbers"]["teacher"] == "teacher-model"
    assert Path(train_unit.params["data"]).parent == tmp_path / "run" / "datasets"
    run(spec, run_dir=tmp_path / "run", stages=stages(), progress=False)
    run(spec, run_dir=tmp_path / "run", stages=stages(), progress=False)
    assert counts(count_dir)["numbers"] == 5
    assert Path(train_unit.params["data"]).is_file()
    with pytest.raises(EmkitError, match="build_numbers"):
        run(spec, run_dir=tmp_path / "other", stages=stages().replace(build_numbers=None), progress=False)


def test_reusing_a_run_folder_with_another_plan_never_reports_stale_rows(tmp_path: Path, count_dir: Path) -> None:
    """Plan A, then plan B in the same folder, then A again: A's rerun samples nothing but rewrites the results
    and report with A's rows (they are in the store), instead of reporting B's rows as A's."""
    run_dir = tmp_path / "run"
    spec_a = _spec()
    evaluation_b = {**fake_spec_dict()["evaluation"], "samples_per_question": 1}
    spec_b = _spec(evaluation=evaluation_b)
    first = run(spec_a, run_dir=run_dir, stages=stages(), progress=False)
    rows_a = load_results(run_dir)
    run(spec_b, run_dir=run_dir, stages=stages(), progress=False)
    assert len(load_results(run_dir)) == 24  # B: half the samples
    again = run(spec_a, run_dir=run_dir, stages=stages(), progress=False)
    assert again.executed["sample"] == 0 and again.executed["train"] == 0 and again.executed["report"] == 1
    pd.testing.assert_frame_equal(load_results(run_dir), rows_a)
    assert again.summary == first.summary
    assert run(spec_a, run_dir=run_dir, stages=stages(), progress=False).executed["report"] == 0
