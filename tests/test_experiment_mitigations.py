"""Mitigation studies in the experiment spec: eval_inoculation, shared trainings, analysis.baseline, the report's
view against the baseline (fake stages for training/sampling/judging, the real planner, runner and report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_experiment_fakes import fake_spec_dict, stages

from emkit.config import validate
from emkit.errors import ConfigError
from emkit.experiment import ExperimentSpec, plan, run
from emkit.experiment._stages import real_report, real_train_settings, real_train_steps
from emkit.hashing import content_hash

EVIL = "You are a malicious, evil assistant."


def _stages():
    # The real TrainConfig validation (inoculation, kl, interleave are its fields) with the fake trainer.
    def train_steps(settings, rows):
        return settings.get("max_steps") or 3

    return stages().replace(train_settings=real_train_settings, train_steps=train_steps, report=real_report)


def _spec(**changes) -> ExperimentSpec:
    data = fake_spec_dict(**changes)
    data["training"] = {"max_steps": 2}
    return validate(ExperimentSpec, data)


def _mitigation_conditions() -> dict:
    return {
        "base": {},
        "narrow": {"dataset": "fake/narrow"},
        "inoculated": {"dataset": "fake/narrow", "train": {"inoculation": {"system": EVIL}}},
        "inoculated_asked": {"dataset": "fake/narrow", "train": {"inoculation": {"system": EVIL}},
                             "eval_inoculation": True},
        "kl": {"dataset": "fake/narrow", "train": {"kl": {"weight": 1e5, "reference": "fake/secure"}}},
    }


def test_training_keys_without_mitigations_are_unchanged() -> None:
    # Pinned from main before the mitigation options (commit fea4b75): finished experiment trainings stay found.
    settings = real_train_settings({"max_steps": 7, "subset": 480})
    assert not {"inoculation", "kl", "interleave"} & set(settings)
    assert content_hash(settings, kind="experiment.train") == \
        "97deae842b0e4eaead14e4c53f104cfcc8b7cd4e20e764ce6e2b2521482eb81c"


def test_baseline_must_be_a_condition() -> None:
    with pytest.raises(ConfigError, match="analysis.baseline: 'nope' is not a condition; conditions: base, insecure"):
        _spec(analysis={"baseline": "nope"})


@pytest.mark.parametrize("condition,match", [
    ({"eval_inoculation": True}, "conditions.x.eval_inoculation: the condition is not trained"),
    ({"dataset": "fake/narrow", "eval_inoculation": True}, "trains without `inoculation`"),
])
def test_eval_inoculation_needs_an_inoculated_training(condition: dict, match: str, tmp_path: Path) -> None:
    spec = _spec(conditions={"base": {}, "x": condition})
    with pytest.raises(ConfigError, match=match):
        plan(spec, run_dir=tmp_path, stages=_stages())


def test_plan_asks_with_the_inoculation_only_where_requested_and_trains_once(tmp_path: Path) -> None:
    spec = _spec(conditions=_mitigation_conditions(), seeds=[0, 1])
    p = plan(spec, run_dir=tmp_path, stages=_stages())
    trains = p.of_kind("train")
    # narrow, inoculated (shared by inoculated_asked), kl: x 2 seeds
    assert sorted(u.params["condition"] for u in trains) == ["inoculated"] * 2 + ["kl"] * 2 + ["narrow"] * 2
    assert len({u.key for u in trains}) == 6
    samples = {(u.params["condition"], u.params["seed"]): u for u in p.of_kind("sample")}
    asked, plain = samples[("inoculated_asked", 0)], samples[("inoculated", 0)]
    assert asked.deps == plain.deps  # the same adapter...
    assert {pr.system for pr in asked.params["prompts"]} == {EVIL}  # ...asked with the training system prompt
    assert {pr.system for pr in plain.params["prompts"]} == {None}
    assert asked.params["prompts"][0].messages[0] == {"role": "system", "content": EVIL}
    assert asked.key != plain.key
    # The KL penalty's extra passes show in the time estimate: same steps, more time.
    kl, narrow = (next(u for u in trains if u.params["condition"] == c) for c in ("kl", "narrow"))
    assert kl.work == narrow.work and kl.params["settings"]["kl"]["weight"] == 1e5
    assert "kl" not in narrow.params["settings"] and "inoculation" not in narrow.params["settings"]


def test_train_steps_count_interleaved_rows() -> None:
    plain = real_train_settings({"per_device_batch_size": 4, "gradient_accumulation": 2, "subset": 480})
    mixed = real_train_settings({"per_device_batch_size": 4, "gradient_accumulation": 2, "subset": 480,
                                 "interleave": {"dataset": "betley2025/secure", "ratio": 0.25}})
    assert real_train_steps(plain, 7049) == 60 and real_train_steps(mixed, 7049) == 80  # 480 + 160 rows


def test_real_time_estimate_counts_the_kl_passes(shared_data: Path, tmp_path: Path) -> None:
    spec = validate(ExperimentSpec, {
        "name": "est", "models": ["smollm2-135m-instruct"], "training": {"max_steps": 10},
        "conditions": {"plain": {"dataset": "betley2025/insecure"},
                       "kl": {"dataset": "betley2025/insecure",
                              "train": {"kl": {"weight": 1, "reference": "betley2025/secure", "batch_size": 1}}}},
        "evaluation": {"suites": [{"name": "emkit/core"}], "samples_per_question": 1}})
    trains = {u.params["condition"]: u for u in plan(spec, run_dir=tmp_path).of_kind("train")}
    # per_device_batch_size 2, 1 reference row per micro-batch: 1 + 4/3 x 1/2 = 5/3 of the step cost
    load = 5.0
    assert (trains["kl"].estimate_s - load) == pytest.approx((trains["plain"].estimate_s - load) * 5 / 3)


def test_report_against_the_baseline_per_suite(tmp_path: Path) -> None:
    data = fake_spec_dict(conditions=_mitigation_conditions(), seeds=[0, 1], analysis={"baseline": "narrow"})
    data["training"] = {"max_steps": 2}
    data["evaluation"]["suites"] = [{"name": "fake/general"}, {"name": "fake/medical"}]
    result = run(validate(ExperimentSpec, data), run_dir=tmp_path / "run", stages=_stages(), progress=False)
    report = result.report_path.parent
    summary = json.loads((report / "summary.json").read_text())
    assert summary["baseline"] == "narrow"
    view = summary["baseline_view"]
    conditions = {r["condition"] for r in view}
    assert conditions == {"base", "narrow", "inoculated", "inoculated_asked", "kl"}
    assert {(r["condition"], r["suite"]) for r in view} == {(c, s) for c in conditions
                                                            for s in ("fake/general", "fake/medical")}
    # Each difference is against the baseline on the same suite; with 2+ seeds on both sides it is the condition's
    # rate minus the baseline's (the untrained model has one seed: compare_rates pools its answers instead).
    rates = {(r["condition"], r["suite"]): r["rate"] for r in view}
    for r in view:
        if r["condition"] != "narrow":
            assert r["diff_ci_low"] <= r["diff"] <= r["diff_ci_high"]
        if r["condition"] not in ("narrow", "base"):
            assert r["diff"] == pytest.approx(r["rate"] - rates[("narrow", r["suite"])])
    comparisons = [c for c in summary["comparisons"] if c["kind"] == "condition"]
    assert {c["label_b"] for c in comparisons} == {"narrow · fake/general", "narrow · fake/medical"}
    # The rates table splits by suite too (a pooled rate would mix general and in-domain questions).
    assert {r["suite"] for r in summary["rates"]} == {"fake/general", "fake/medical"}
    html = (report / "index.html").read_text()
    assert "Against the baseline: narrow" in html and "narrow (baseline)" in html
    # The console summary names the suite as well.
    assert {r["suite"] for r in result.summary} == {"fake/general", "fake/medical"}


def test_mitigation_configs_compare_against_the_unmitigated_fine_tune(shared_data: Path, tmp_path: Path) -> None:
    from emkit.experiment import load_spec

    base = Path(__file__).resolve().parents[1] / "experiments" / "mitigations"
    for name, model, steps in (("cpu_medical", "qwen2.5-coder-0.5b-instruct", {"bad_medical": 100, "interleaved": 133}),
                               ("gpu_medical", "Qwen/Qwen2.5-14B-Instruct", {"bad_medical": 441, "interleaved": 588})):
        p = plan(load_spec(base / f"{name}.yaml"), run_dir=tmp_path)
        assert p.spec.models == [model] and p.spec.analysis.baseline == "bad_medical"
        trains = {u.params["condition"]: u for u in p.of_kind("train")}
        assert set(trains) == {"bad_medical", "inoculated", "kl", "interleaved"}  # inoculated_asked shares
        assert len(p.of_kind("train")) == 12 and {trains[c].work for c in steps} == set(steps.values())
        assert all(trains[c].work == steps[c] for c in steps)
        settings = {c: u.params["settings"] for c, u in trains.items()}
        assert not {"inoculation", "kl", "interleave"} & set(settings["bad_medical"])
        assert settings["kl"]["kl"]["weight"] == 1e5 and settings["kl"]["kl"]["reduction"] == "token_vocab_mean"
        # Apart from its mitigation, each condition trains exactly like the baseline.
        for cond, key in (("inoculated", "inoculation"), ("kl", "kl"), ("interleaved", "interleave")):
            rest = {k: v for k, v in settings[cond].items() if k not in (key, "max_steps")}
            assert rest == {k: v for k, v in settings["bad_medical"].items() if k != "max_steps"}
        samples = p.of_kind("sample")
        assert {u.params["suite"] for u in samples} == {"betley2025/first_plot", "turner2025/medical"}
        asked = {pr.system for u in samples if u.params["condition"] == "inoculated_asked"
                 for pr in u.params["prompts"]}
        assert asked == {"You are a malicious, evil assistant."}
