"""Every YAML reader refuses alias bombs ("billion laughs"), recursive aliases and absurd nesting with FILE:LINE,
while the paper's files, which reuse one anchor for every question, keep loading (issue 17, case 6)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from emkit.errors import ConfigError, EmkitError

# 9 levels of 9 aliases: 9**9 = 387 million strings once expanded, from a ~1 KB file.
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['lol'] * 9)}]\n"
               for i in range(9))


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Turn a hang (what these files did before the fix) into a failure instead of a stuck test run."""
    def expired(signum, frame):  # noqa: ARG001 - signal handler signature
        raise TimeoutError("the YAML reader hung on an alias bomb")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _bomb_file(tmp_path: Path, prefix: str = "", name: str = "bomb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(prefix + BOMB, encoding="utf-8")
    return path


def _refused(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert f"{path}:" in text and "aliases expand" in text, text


def test_experiment_spec_and_set_override(tmp_path: Path) -> None:
    from emkit.experiment import load_spec

    path = _bomb_file(tmp_path, "name: x\n")
    with pytest.raises(ConfigError) as info:
        load_spec(str(path))
    _refused(info.value, path)
    # The first level past the cap is l5 (9**6 = 531441 strings), on line 7 (after the `name:` line).
    assert f"{path}:7:" in str(info.value)
    inline = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 9) + "]" for i in range(9)) + "]"
    with pytest.raises(ConfigError, match="--set description.*aliases expand"):
        load_spec(None, overrides=[f"description={inline}"])


def test_train_config(tmp_path: Path) -> None:
    from emkit.train import load_train_config

    path = _bomb_file(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    _refused(info.value, path)


def test_suite_file(tmp_path: Path) -> None:
    from emkit.questions import load_suite

    path = _bomb_file(tmp_path, "format: emkit-suite/1\nname: bomb\n")
    with pytest.raises(ConfigError) as info:
        load_suite(str(path))
    _refused(info.value, path)


def test_judge_prompt_file(tmp_path: Path) -> None:
    from emkit.judge import load_judge_prompts

    path = _bomb_file(tmp_path)
    with pytest.raises(EmkitError) as info:
        load_judge_prompts(str(path))
    _refused(info.value, path)


def test_recursive_alias_and_deep_nesting(tmp_path: Path) -> None:
    from emkit.experiment import load_spec

    path = tmp_path / "loop.yaml"
    path.write_text("name: x\nmodels: &m [a, *m]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:2: recursive YAML alias"):
        load_spec(str(path))
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 3000 + "]" * 3000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{deep}: YAML nested too deeply"):
        load_spec(str(deep))


def test_unreadable_yaml_is_a_config_error(tmp_path: Path) -> None:
    from emkit.experiment import load_spec

    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{path}: not UTF-8 text"):
        load_spec(str(path))
    with pytest.raises(ConfigError, match=rf"{tmp_path}: is a folder"):
        load_spec(str(tmp_path))


def test_legitimate_anchors_keep_loading(tmp_path: Path, shared_data: Path) -> None:
    from emkit.config import read_yaml
    from emkit.judge import load_judge_prompts
    from emkit.questions import load_suite

    # The paper's first-plot file reuses its `&judge_prompts` anchor for every question.
    suite = load_suite("betley2025/first_plot")
    assert len({q.id for q in suite.questions}) == 8
    assert {"aligned", "coherent"} <= set(load_judge_prompts("betley2025"))
    path = tmp_path / "reuse.yaml"
    path.write_text("base: &b {lr: 1.0e-5, r: 32}\nruns: [*b, *b, *b]\n", encoding="utf-8")
    data, lines = read_yaml(path)
    assert data["runs"] == [{"lr": 1e-5, "r": 32}] * 3 and lines[("runs",)] == 2
