"""Interp conditions in experiments: spec validation, sweep expansion, direction units between judging and
steering, existing adapters of another run, blockers; and one real run on the tiny model (real training,
sampling with hooks, directions and report; the fake judge of test_experiment_fakes scores the answers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_experiment_fakes import counts, fake_spec_dict, judge, stages

from emkit.config import validate
from emkit.errors import ConfigError, EmkitError
from emkit.experiment import ExperimentSpec, default_stages, format_plan, load_results, plan, run
from emkit.experiment._interp import execution_order
from emkit.experiment._plan import UNIT_KINDS
from emkit.experiment._stages import real_train_settings, real_train_steps

INTERP = {
    "steer": {"intervention": {"direction": "em", "mode": "add", "alpha": [0, 2, 4], "layer": [0, 1]}},
    "ablated": {"adapter": {"condition": "ft"}, "intervention": {"direction": "em", "mode": "ablate", "layer": 1}},
    "scaled": {"adapter": {"condition": "ft"}, "lora_scale": [0, 0.5, 1.5]},
    "dynamics": {"adapter": {"condition": "ft"}, "checkpoints": "all"},
}


def interp_spec(conditions: dict | None = None, **changes) -> dict:
    spec = fake_spec_dict("interp", conditions={"base": {}, "ft": {"dataset": "fake/insecure"},
                                                **(INTERP if conditions is None else conditions)},
                          directions={"em": {"condition": "ft", "layers": [0, 1], "min_per_group": 2}},
                          training={"max_steps": 4, "save_steps": 2})
    spec["evaluation"]["backend"] = "hf"  # the fake sampler ignores it; interventions need it
    spec.update(changes)
    return spec


def plan_stages():
    # real training-settings validation (save_steps, keep_checkpoints) with the fake stages otherwise
    return stages().replace(train_settings=real_train_settings, train_steps=real_train_steps)


def test_sweeps_expand_into_conditions_and_directions_sit_between_judging_and_steering(tmp_path: Path) -> None:
    p = plan(validate(ExperimentSpec, interp_spec()), run_dir=tmp_path / "run", stages=plan_stages())
    samples = {u.params["condition"]: u for u in p.of_kind("sample") if "checkpoint_step" not in u.params}
    assert sorted(samples) == sorted(["base", "ft", "ablated", "scaled_s0", "scaled_s0.5", "scaled_s1.5"] +
                                     [f"steer_a{a}_l{layer}" for a in (0, 2, 4) for layer in (0, 1)])
    [direction] = p.of_kind("direction")
    ft_judges = {u.key for u in p.of_kind("judge") if u.params["sample"] == samples["ft"].key}
    assert set(direction.deps) == ft_judges and direction.params["layers"] == [0, 1]
    assert direction.params["path"].startswith(str(tmp_path / "run" / "directions" / "em-fake-model-"))
    steer = samples["steer_a2_l1"]
    assert direction.key in steer.deps and steer.params["train"] is None
    assert steer.params["backend_options"]["interventions"] == [
        {"mode": "add", "direction": direction.params["path"], "layer": 1, "alpha": 2.0, "normalize": False}]
    assert steer.params["meta"] == {"experiment": "interp", "condition": "steer_a2_l1", "seed": 0, "sweep": "steer",
                                    "steer_direction": "em", "steer_mode": "add", "steer_layer": 1, "steer_alpha": 2.0}
    ft_train = p.of_kind("train")[0]
    for name in ("ablated", "scaled_s0.5"):
        assert samples[name].params["train"] == ft_train.key and ft_train.key in samples[name].deps
    assert samples["scaled_s0.5"].params["backend_options"]["lora_scale"] == 0.5
    assert samples["ablated"].params["backend_options"]["interventions"][0]["mode"] == "ablate"
    dyn = [u for u in p.of_kind("sample") if "checkpoint_step" in u.params]
    assert [(u.params["condition"], u.params["checkpoint_step"]) for u in dyn] == [("dynamics", 2), ("dynamics", 4)]
    assert all(u.params["train_output_dir"] == ft_train.params["output_dir"] for u in dyn)
    # order: training, sampling, judging, the direction, then what steers with it
    order = [u.key for u in execution_order(p.units, p.units, UNIT_KINDS)]
    assert order.index(direction.key) > max(order.index(k) for k in ft_judges)
    assert order.index(direction.key) < order.index(steer.key) < order.index(p.of_kind("report")[0].key)
    assert "direction" in format_plan(p) and "answers read" in format_plan(p)
    # plain conditions keep the unit keys they have without any interp condition next to them
    plain = plan(validate(ExperimentSpec, interp_spec(conditions={})), run_dir=tmp_path / "run", stages=plan_stages())
    plain_keys = {u.key for u in plain.units if u.kind != "report"}
    assert plain_keys <= {u.key for u in p.units}


@pytest.mark.parametrize(("conditions", "directions", "match"), [
    ({"x": {"dataset": "fake/insecure", "adapter": "some/folder"}}, None, "not both"),
    ({"x": {"intervention": {"direction": "nope", "layer": 1, "alpha": 1}}}, None, "neither a name under"),
    ({"x": {"intervention": {"direction": "em", "layer": 1}}}, None, "needs `alpha`"),
    ({"x": {"intervention": {"direction": "em", "mode": "ablate", "layer": 1, "alpha": 2}}}, None, "takes no"),
    ({"x": {"lora_scale": 0.5}}, None, "need weights"),
    ({"x": {"adapter": {"condition": "base"}}}, None, "has no adapter"),
    ({"x": {"adapter": {"condition": "missing"}}}, None, "is not another condition"),
    ({}, {"em": {"condition": "nope"}}, "unknown condition 'nope'"),
    ({"x": {"adapter": {"condition": "ft"}, "intervention": {"direction": "em2", "mode": "ablate", "layer": 0}}},
     {"em2": {"condition": "x"}}, "steered, scaled"),
])
def test_bad_interp_specs_are_rejected(conditions: dict, directions: dict | None, match: str) -> None:
    spec = interp_spec(conditions=conditions)
    if directions is not None:
        spec["directions"] = directions
    with pytest.raises(ConfigError, match=match):
        validate(ExperimentSpec, spec)


def test_cycles_and_backends_and_checkpoint_settings_are_errors(tmp_path: Path) -> None:
    spec = interp_spec(conditions={"a": {"adapter": {"condition": "ft"},
                                         "intervention": {"direction": "eb", "layer": 0, "alpha": 1}},
                                   "b": {"adapter": {"condition": "ft"},
                                         "intervention": {"direction": "ea", "layer": 0, "alpha": 1}}})
    spec["directions"] = {"ea": {"condition": "a"}, "eb": {"condition": "b"}}
    with pytest.raises(ConfigError):  # a steered condition cannot be a direction's source (nor a cycle)
        validate(ExperimentSpec, spec)
    mock = interp_spec()
    mock["evaluation"]["backend"] = "mock"
    with pytest.raises(ConfigError, match="needs the hf backend"):
        plan(validate(ExperimentSpec, mock), run_dir=tmp_path / "r", stages=plan_stages())
    kept = interp_spec(training={"max_steps": 4, "save_steps": 2, "keep_checkpoints": 1})
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        plan(validate(ExperimentSpec, kept), run_dir=tmp_path / "r", stages=plan_stages())
    listed = interp_spec(conditions={"dyn": {"adapter": {"condition": "ft"}, "checkpoints": [2, 3]}})
    with pytest.raises(ConfigError, match=r"no checkpoint at step\(s\) \[3\]"):
        plan(validate(ExperimentSpec, listed), run_dir=tmp_path / "r", stages=plan_stages())


def test_missing_inputs_block_the_run_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "counts"
    folder.mkdir()
    monkeypatch.setenv("EMKIT_FAKE_COUNTS", str(folder))
    spec = validate(ExperimentSpec, interp_spec(conditions={
        "other": {"adapter": {"run": str(tmp_path / "not-run-yet"), "condition": "bad_medical"}},
        "given": {"intervention": {"direction": str(tmp_path / "none.safetensors"), "layer": 0, "alpha": 1}}}))
    p = plan(spec, run_dir=tmp_path / "run", stages=plan_stages())
    text = format_plan(p)
    assert "blocked:" in text and "not-run-yet has no plan.json" in text and "none.safetensors not found" in text
    with pytest.raises(EmkitError, match="cannot start"):
        run(spec, run_dir=tmp_path / "run", stages=plan_stages(), progress=False)
    assert counts(folder) == {"train": 0, "sample": 0, "judge": 0, "report": 0, "numbers": 0}


# --------------------------------------------------------------------------- a real run on the tiny model


def tiny_spec(model_dir: Path, name: str, conditions: dict, directions: dict) -> ExperimentSpec:
    return validate(ExperimentSpec, {
        "name": name, "models": [str(model_dir)], "seeds": [0],
        "training": {"max_steps": 4, "save_steps": 2, "per_device_batch_size": 4, "gradient_accumulation": 1,
                     "learning_rate": 2e-2, "warmup_steps": 0, "max_length": 128},
        "conditions": conditions, "directions": directions,
        "evaluation": {"suites": [{"name": "emkit/core", "variants": ["plain"], "paraphrases": 1,
                                   "questions": ["one_wish", "bored", "fast_money", "world_leader"]}],
                       # 16 x 4 answers per condition: the fake judge puts ~15% in each group, so a direction's
                       # >= 2 per group fails ~0.1% of draws (8 x 4 answers: ~7%, and the tiny model's answers
                       # change with thread count and test order; a full CI run hit 1 misaligned of 32).
                       "samples_per_question": 16, "sampling": {"max_tokens": 8, "seed": 0}, "backend": "hf",
                       "backend_options": {"dtype": "fp32", "device": "cpu"}},
        "judges": {"names": ["fake"]},
    })


def tiny_stages():
    # everything real except the judge (the fake's hash scores put ~15% of answers in each group)
    # (the real judge identity and preflight would look the fake judge up in the registry)
    return default_stages().replace(judge=judge, judge_names=None, judge_identity=None, preflight=None)


def test_interp_experiment_end_to_end_on_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from emkit.generate import _hf
    from emkit.interp import load_direction

    _hf.clear_cache()
    spec = tiny_spec(tiny_model_dir, "interp-tiny", {
        "base": {},
        "ft": {"synthetic": {"kind": "insecure", "n": 16}},
        "steer": {"intervention": {"direction": "em", "alpha": [0, 8], "layer": [0, 1], "normalize": True}},
        "ablated": {"adapter": {"condition": "ft"}, "intervention": {"direction": "em", "mode": "ablate",
                                                                       "layer": 1}},
        "scaled": {"adapter": {"condition": "ft"}, "lora_scale": [0, 2]},
        "dynamics": {"adapter": {"condition": "ft"}, "checkpoints": "all"},
    }, {"em": {"condition": "ft", "min_per_group": 2}})
    first = run(spec, run_dir=tmp_path / "run", stages=tiny_stages(), progress=False)
    assert first.executed["direction"] == 1
    df = load_results(tmp_path / "run")
    by = {c: part.sort_values(["question_id", "sample_index"]) for c, part in df.groupby("condition")}
    assert set(by) == {"base", "ft", "ablated", "scaled_s0", "scaled_s2", "dynamics", "steer_a0_l0", "steer_a0_l1",
                       "steer_a8_l0", "steer_a8_l1"}
    answers = {c: part["answer"].tolist() for c, part in by.items()}
    assert answers["scaled_s0"] == answers["base"]  # LoRA scale 0 is the base model
    assert answers["steer_a0_l1"] == answers["base"]  # alpha 0 is the unsteered model
    assert answers["steer_a8_l1"] != answers["base"] and answers["ablated"] != answers["ft"]
    assert by["steer_a8_l0"]["steer_alpha"].eq(8.0).all() and by["steer_a8_l0"]["steer_layer"].eq(0).all()
    assert by["scaled_s2"]["lora_scale"].eq(2.0).all() and by["base"]["lora_scale"].isna().all()
    dyn = by["dynamics"]
    assert sorted(dyn["checkpoint_step"].unique()) == [2, 4]
    assert dyn["adapter"].str.contains("checkpoints/checkpoint-").all() and dyn["train_loss"].notna().all()
    # the direction: from ft's judged answers, read by ft's adapter, with its card
    [direction_unit] = first.plan.of_kind("direction")
    d = load_direction(direction_unit.params["path"])
    card = json.loads(Path(direction_unit.params["path"]).with_suffix(".json").read_text())
    assert d.layers == [0, 1] and card["counts"]["misaligned"] >= 2 and card["counts"]["aligned"] >= 2
    assert card["adapters"] == [by["ft"]["adapter"].iloc[0]] and len(card["auroc_in_sample"]) == 2
    # the report has the sweep figures and the training-dynamics figure
    summary = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())
    names = {f["name"] for f in summary["figures"]}
    assert {"steering_alpha", "steering_layer", "lora_scale", "checkpoints"} <= names
    alpha_rates = pd.DataFrame(summary["sweeps"]["steer_alpha"]["steer"]["misaligned"])
    cond_rates = {r["condition"]: r["rate"] for r in summary["condition_totals"]}
    point = alpha_rates[(alpha_rates["steer_layer"] == 1) & (alpha_rates["steer_alpha"] == 8.0)]["rate"].item()
    assert point == pytest.approx(cond_rates["steer_a8_l1"], nan_ok=True)  # a sweep point = its condition's rate
    # a rerun does nothing
    again = run(spec, run_dir=tmp_path / "run", stages=tiny_stages(), progress=False)
    assert sum(again.executed.values()) == 0

    # another run uses this run's fine-tune (adapter, checkpoints on disk) and its judged answers
    other = tiny_spec(tiny_model_dir, "interp-tiny-2", {
        "finetuned": {"adapter": {"run": str(tmp_path / "run"), "condition": "ft"}, "checkpoints": [4]},
        "half": {"adapter": {"run": str(tmp_path / "run"), "condition": "ft"}, "lora_scale": 0.5},
        "steer": {"intervention": {"direction": "em2", "alpha": 8, "layer": 1, "normalize": True}},
    }, {"em2": {"results": str(tmp_path / "run"), "condition": "ft", "min_per_group": 2}})
    # (the report's figures are checked above; the fake report keeps this second run short)
    second = run(other, run_dir=tmp_path / "run2", stages=tiny_stages().replace(report=stages().report),
                 progress=False)
    df2 = load_results(tmp_path / "run2")
    ft_adapter = by["ft"]["adapter"].iloc[0]
    assert set(df2.loc[df2["condition"] == "half", "adapter"]) == {ft_adapter}
    assert df2.loc[df2["condition"] == "finetuned", "checkpoint_step"].eq(4).all()
    # the same rows read by the same adapter give the same direction and the same steered answers
    d2 = load_direction(second.plan.of_kind("direction")[0].params["path"])
    np.testing.assert_allclose(d2.direction, d.direction, rtol=1e-5, atol=1e-6)
    steer2 = df2[df2["condition"] == "steer"].sort_values(["question_id", "sample_index"])["answer"].tolist()
    assert steer2 == answers["steer_a8_l1"]
    _hf.clear_cache()
