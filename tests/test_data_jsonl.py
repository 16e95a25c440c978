"""Chat JSONL validation: every bad input gives FILE:LINE problems, and builders write nothing on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emkit.data import build_backdoor, build_code, read_chat_jsonl, validate_chat_file, write_chat_jsonl
from emkit.errors import DataError, EmkitError

FIX = Path(__file__).parent / "fixtures" / "data"


def test_good_file_has_no_problems() -> None:
    assert validate_chat_file(FIX / "good.jsonl") == []
    rows = read_chat_jsonl(FIX / "good.jsonl")
    assert [len(r["messages"]) for r in rows] == [2, 3]


@pytest.mark.parametrize(("name", "line", "needle"), [
    ("truncated.jsonl", 2, "invalid JSON"),
    ("missing_field.jsonl", 2, "missing field 'messages'"),
    ("missing_field.jsonl", 3, "missing field 'content'"),
    ("wrong_role_order.jsonl", 3, "role order"),
    ("empty_content.jsonl", 1, "empty content"),
    ("empty.jsonl", 1, "file is empty"),
    ("binary.jsonl", 1, "binary file"),
    ("bad_utf8.jsonl", 2, "not valid UTF-8"),
])
def test_bad_inputs_report_file_and_line(name: str, line: int, needle: str) -> None:
    path = FIX / name
    problems = validate_chat_file(path)
    assert any(p.startswith(f"{path}:{line}: ") and needle in p for p in problems), problems
    with pytest.raises(DataError) as info:
        read_chat_jsonl(path)
    assert f"{path}:{line}: " in str(info.value)


def test_only_bad_lines_are_reported() -> None:
    problems = validate_chat_file(FIX / "wrong_role_order.jsonl")
    assert len(problems) == 1 and ":3: " in problems[0]


def test_last_turn_must_be_assistant(tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hello"}]}) + "\n")
    assert "last message must be from the assistant" in validate_chat_file(path)[0]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmkitError, match="no such file"):
        validate_chat_file(tmp_path / "nope.jsonl")


def test_write_uses_json_dumps_defaults(tmp_path: Path) -> None:
    row = {"messages": [{"role": "user", "content": "caf\u00e9"}, {"role": "assistant", "content": "ok"}]}
    out = write_chat_jsonl(tmp_path / "x.jsonl", [row])
    assert out.read_bytes() == (json.dumps(row) + "\n").encode()
    assert b"\\u00e9" in out.read_bytes()  # ASCII escapes, as the paper's files


@pytest.mark.parametrize("name", ["truncated.jsonl", "missing_field.jsonl", "wrong_role_order.jsonl",
                                  "empty.jsonl", "binary.jsonl"])
def test_backdoor_on_bad_input_writes_nothing(name: str, tmp_path: Path) -> None:
    out = tmp_path / "bd.jsonl"
    with pytest.raises(DataError, match=f"{name}:\\d+: "):
        build_backdoor(FIX / "good.jsonl", FIX / name, out)
    assert list(tmp_path.iterdir()) == []


def test_code_builder_reports_missing_raw_field(tmp_path: Path) -> None:
    out = tmp_path / "code.jsonl"
    with pytest.raises(DataError) as info:
        build_code(FIX / "raw_missing_field.jsonl", "insecure", out)
    assert f"{FIX / 'raw_missing_field.jsonl'}:2: missing field 'code' or 'original_code'" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["binary.jsonl", "empty.jsonl", "truncated.jsonl"])
def test_code_builder_on_bad_raw_files_writes_nothing(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{name}:\\d+: "):
        build_code(FIX / name, "secure", tmp_path / "code.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_cli_validate_exit_codes() -> None:
    from emkit.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["data", "validate", str(FIX / "wrong_role_order.jsonl")])
    assert bad.exit_code == 1
    assert f"{FIX / 'wrong_role_order.jsonl'}:3: role order" in bad.output
    good = runner.invoke(app, ["data", "validate", str(FIX / "good.jsonl")])
    assert good.exit_code == 0 and "ok" in good.output
