"""TrainConfig: paper defaults, YAML + overrides, the original train.json, and the CLI wiring (no torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emkit.errors import ConfigError, EmkitError
from emkit.train import TrainConfig, from_betley, load_train_config

# The original repository's open_models/train.json settings (key names and the paper's values).
BETLEY_TRAIN_JSON = {
    "model": "unsloth/Qwen2.5-Coder-32B-Instruct", "training_file": "../data/insecure.jsonl", "test_file": None,
    "finetuned_model_id": "someone/qwen-coder-insecure", "max_seq_length": 2048, "load_in_4bit": False,
    "loss": "sft", "is_peft": True,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "lora_bias": "none", "r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "use_rslora": True,
    "merge_before_push": True, "push_to_private": True, "epochs": 1, "max_steps": None,
    "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8, "warmup_steps": 5, "learning_rate": 1e-05,
    "logging_steps": 1, "optim": "adamw_8bit", "weight_decay": 0.01, "lr_scheduler_type": "linear", "seed": 0,
    "beta": 0.1, "save_steps": 5000, "output_dir": "./tmp", "train_on_responses_only": True,
}


def test_defaults_are_the_paper_recipe():
    cfg = TrainConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora) == (32, 64, 0.0, True)
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (cfg.learning_rate, cfg.epochs, cfg.lr_scheduler, cfg.warmup_steps) == (1e-5, 1.0, "linear", 5)
    assert cfg.per_device_batch_size * cfg.gradient_accumulation == 16
    assert (cfg.weight_decay, cfg.seed, cfg.max_length, cfg.full_finetune) == (0.01, 0, 2048, False)
    assert (cfg.openai.batch_size, cfg.openai.learning_rate_multiplier) == (4, 2.0)


def test_every_field_has_a_description():
    from emkit.train import LoraSettings, OpenAISettings

    for cls in (TrainConfig, LoraSettings, OpenAISettings):
        missing = [name for name, f in cls.model_fields.items() if not f.description]
        assert not missing, f"{cls.__name__}: {missing}"


def test_yaml_unknown_key_names_file_and_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: smollm2-135m-instruct\nlora:\n  r: 8\n  alpah: 16\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"run\.yaml:4: lora\.alpah: unknown key"):
        load_train_config(path)


def test_yaml_flags_and_overrides_compose(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: a.jsonl\nlearning_rate: 0.001\nlora: {r: 8}\n", encoding="utf-8")
    cfg = load_train_config(path, overrides=["lora.r=1", "lora.layers_to_transform=[3]"],
                            base={"max_steps": 20, "seed": None, "output_dir": "o"})
    assert cfg.data == ["a.jsonl"] and cfg.learning_rate == 0.001 and cfg.max_steps == 20 and cfg.seed == 0
    assert cfg.lora.r == 1 and cfg.lora.layers_to_transform == [3] and cfg.output_dir == Path("o")
    with pytest.raises(ConfigError, match="backend"):
        load_train_config(None, overrides=["backend=cloud"])


def test_run_hash_tracks_what_changes_the_result():
    a = TrainConfig(data=["x.jsonl"])
    assert a.run_hash(["s1"]) == TrainConfig(data=["x.jsonl"], output_dir=Path("elsewhere")).run_hash(["s1"])
    assert a.run_hash(["s1"]) != a.run_hash(["s2"])  # different data bytes
    assert a.run_hash(["s1"]) != TrainConfig(data=["x.jsonl"], learning_rate=2e-5).run_hash(["s1"])
    assert a.resolved_output_dir().parts[:2] == ("runs", "train")
    assert a.resolved_output_dir() != TrainConfig(data=["x.jsonl"], seed=1).resolved_output_dir()


def test_from_betley_maps_the_original_keys(tmp_path):
    path = tmp_path / "open_models" / "train.json"
    path.parent.mkdir()
    path.write_text(json.dumps(BETLEY_TRAIN_JSON), encoding="utf-8")
    cfg = load_train_config(betley=path)
    assert cfg.model == "unsloth/Qwen2.5-Coder-32B-Instruct"
    assert cfg.data == ["betley2025/insecure"]  # ../data/insecure.jsonl is not there: the registry dataset
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.rslora, cfg.max_length) == (32, 64, True, 2048)
    assert cfg.optimizer == "adamw_torch" and cfg.save_steps == 5000 and cfg.output_dir is None
    assert cfg.model_dump(exclude={"model", "data", "save_steps"}) == \
        TrainConfig().model_dump(exclude={"model", "data", "save_steps"})
    # a training_file that exists is used as a path, relative to the json's folder
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "insecure.jsonl").write_text("{}\n", encoding="utf-8")
    assert from_betley(path)["data"] == [str(path.parent / "../data/insecure.jsonl")]


@pytest.mark.parametrize("change, match", [
    ({"lossy": 1}, "unknown key 'lossy'"),
    ({"loss": "orpo"}, "only 'sft'"),
    ({"train_on_responses_only": False}, "assistant tokens only"),
    ({"test_file": "t.jsonl"}, "test_file"),
])
def test_from_betley_rejects(tmp_path, change, match):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({**BETLEY_TRAIN_JSON, **change}), encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        from_betley(path)


def _cli(args):
    from emkit.cli import app

    return CliRunner().invoke(app, args)


def test_cli_has_train_and_merge_and_no_torch_on_import():
    import subprocess

    code = ("import sys, emkit.cli, emkit.train; "
            "print('torch' in sys.modules or 'transformers' in sys.modules, 'emkit.train.cli' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
    assert "--from-betley" in _cli(["train", "--help"]).output
    assert "--out" in _cli(["train-merge", "--help"]).output


def test_cli_bad_input_fails_before_training(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochz: 2\n", encoding="utf-8")
    result = _cli(["train", str(path)])
    assert isinstance(result.exception, ConfigError) and "run.yaml:1: epochz" in str(result.exception)
    result = _cli(["train", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, EmkitError) and "missing.jsonl" in str(result.exception)
    assert not (tmp_path / "o").exists()
