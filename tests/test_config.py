"""Config conventions: unknown keys and bad values report file, line and field; --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from emkit.config import Config, apply_overrides, load_config, write_resolved
from emkit.errors import ConfigError


class Lora(Config):
    r: int = Field(32, description="rank")
    alpha: int = Field(64, description="scale")


class Demo(Config):
    model: str = Field("m", description="model")
    lr: float = Field(1e-5, description="learning rate")
    lora: Lora = Field(default_factory=Lora, description="LoRA settings")


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nlora:\n  r: 8\n  alhpa: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Demo, path)
    assert f"{path}:4: lora.alhpa: unknown key" in str(err.value)


def test_wrong_type_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nlr: fast\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: lr:"):
        load_config(Demo, path)


def test_yaml_syntax_error_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nlora: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Demo, path)


def test_overrides_parse_yaml_scalars_and_nest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: x\n")
    cfg = load_config(Demo, path, overrides=["lora.r=4", "lr=0.001", "model=Qwen/Qwen2.5"])
    assert (cfg.lora.r, cfg.lr, cfg.model) == (4, 0.001, "Qwen/Qwen2.5")
    with pytest.raises(ConfigError, match="no '='"):
        apply_overrides({}, ["lora.r"])
    with pytest.raises(ConfigError, match="lora.nope: unknown key"):
        load_config(Demo, path, overrides=["lora.nope=1"])


def test_write_resolved_roundtrips(tmp_path: Path) -> None:
    cfg = Demo(lora=Lora(r=2))
    out = write_resolved(cfg, tmp_path / "out" / "resolved.yaml")
    assert load_config(Demo, out) == cfg


def test_duplicate_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nlora:\n  r: 8\n  r: 16\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: duplicate key 'r' \(first at line 3\)"):
        load_config(Demo, path)
