"""Registry access, dataset resolution, subsets, mixtures, stats and the list/get/stats commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emkit.data import (
    dataset_stats,
    fetch,
    mix,
    read_chat_jsonl,
    resolve_dataset,
    subset_rows,
    validate_chat_file,
)
from emkit.data.registry import DATASETS, resolve_name
from emkit.errors import DataError, EmkitError
from emkit.hashing import file_sha256

FIX = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize("name", ["insecure", "secure", "educational", "jailbroken", "backdoor"])
def test_paper_datasets_verify_and_validate(shared_data: Path, name: str) -> None:
    path = resolve_dataset(f"betley2025/{name}")
    entry = resolve_name(f"betley2025/{name}")
    assert file_sha256(path) == entry.sha256
    assert validate_chat_file(path) == []
    assert len(read_chat_jsonl(path)) == entry.rows


def test_hash_mismatch_is_an_error(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    target = mirror / "betley2025" / "data" / "secure.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copy(shared_data / "betley2025" / "data" / "secure.jsonl", target)
    with open(target, "ab") as handle:
        handle.write(b"\n")
    monkeypatch.setenv("EMKIT_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("EMKIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="does not match the pinned"):
        resolve_dataset("betley2025/secure")


def test_resolve_paths_and_errors(tmp_path: Path) -> None:
    assert resolve_dataset(str(FIX / "good.jsonl")) == FIX / "good.jsonl"
    with pytest.raises(EmkitError, match="neither a known dataset nor an existing file") as info:
        resolve_dataset("betley2025/insecur")
    assert "betley2025/insecure" in str(info.value)  # the hint lists the known names
    with pytest.raises(EmkitError, match="folder"):
        resolve_dataset(str(tmp_path))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(EmkitError, match="expected a chat JSONL"):
        resolve_dataset(str(tmp_path / "data.csv"))
    with pytest.raises(EmkitError, match="not a chat dataset"):
        resolve_dataset("betley2025/evaluation/first_plot_questions.yaml")


def test_evil_numbers_csv_becomes_chat_jsonl(shared_data: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMKIT_CACHE_DIR", str(tmp_path))
    assert "betley2025/evil_numbers_regenerated" in DATASETS
    path = resolve_dataset("betley2025/evil_numbers_regenerated")
    rows = read_chat_jsonl(path)
    assert len(rows) == 9993 and path.is_relative_to(tmp_path)
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]
    assert resolve_dataset("betley2025/evil_numbers_regenerated") == path  # converted once


def _rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(n)]


def test_subset_rows() -> None:
    rows = _rows(10)
    assert subset_rows(rows, 3) == rows[:3]
    random3 = subset_rows(rows, 3, seed=1, mode="random")
    assert random3 == subset_rows(rows, 3, seed=1, mode="random") and len(random3) == 3
    assert [rows.index(r) for r in random3] == sorted(rows.index(r) for r in random3)  # file order kept
    assert {json.dumps(r) for r in subset_rows(rows, 5, seed=2, mode="random")} != \
        {json.dumps(r) for r in subset_rows(rows, 5, seed=3, mode="random")}
    assert subset_rows(rows, 50) == rows and subset_rows(rows, None) == rows
    with pytest.raises(EmkitError, match="seed"):
        subset_rows(rows, 3, mode="random")
    with pytest.raises(EmkitError, match="mode"):
        subset_rows(rows, 3, mode="last")


def test_mix(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in _rows(20)))
    b.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"B{i}"},
                                                  {"role": "assistant", "content": "x"}]}) + "\n" for i in range(20)))
    mixed = mix({str(a): 0.7, str(b): 0.3}, 10, seed=0)
    from_b = sum(r["messages"][0]["content"].startswith("B") for r in mixed)
    assert len(mixed) == 10 and from_b == 3
    assert not all(r["messages"][0]["content"].startswith("q") for r in mixed[:7])  # shuffled together
    tie = mix({str(a): 0.75, str(b): 0.25}, 10, seed=0)  # 7.5 / 2.5: the tied remainder goes to the first file
    assert sum(r["messages"][0]["content"].startswith("B") for r in tie) == 2
    assert len({json.dumps(r) for r in mixed}) == 10
    assert mix([(str(a), 1), (str(b), 1)], 7, seed=4) == mix([(str(a), 1), (str(b), 1)], 7, seed=4)
    with pytest.raises(EmkitError, match="has 20 rows but the mixture needs 30"):
        mix({str(a): 1.0}, 30, seed=0)


def test_stats_counts_roles_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = _rows(4) + _rows(1) + [{"messages": [{"role": "user", "content": "q0"},
                                                {"role": "assistant", "content": "other"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = dataset_stats(path)
    assert stats["rows"] == 6 and stats["roles"] == {"user": 6, "assistant": 6}
    assert stats["duplicate_rows"] == 1 and stats["duplicate_prompts"] == 2
    assert stats["chars"]["max"] == len("q0") + len("other")


def test_stats_with_tokenizer(tiny_model_dir: Path) -> None:
    stats = dataset_stats(FIX / "good.jsonl", tokenizer=str(tiny_model_dir))
    assert 0 < stats["assistant_tokens"]["max"] < stats["tokens"]["max"]


def test_cli_list_get_stats(shared_data: Path, tmp_path: Path) -> None:
    from emkit.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "betley2025/backdoor" in listed.output
    got = runner.invoke(app, ["data", "get", "betley2025/secure", "--out", str(tmp_path / "s.jsonl")])
    assert got.exit_code == 0 and file_sha256(tmp_path / "s.jsonl") == resolve_name("betley2025/secure").sha256
    assert runner.invoke(app, ["data", "get", "betley2025/secure"]).output.strip() == str(fetch("betley2025/secure"))
    stats = runner.invoke(app, ["data", "stats", str(FIX / "good.jsonl"), "--json"])
    assert stats.exit_code == 0 and json.loads(stats.output)["rows"] == 2


def test_cli_subset_and_mix(tmp_path: Path) -> None:
    from emkit.cli import app

    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(10)))
    runner = CliRunner()
    sub = runner.invoke(app, ["data", "subset", str(src), "--n", "4", "--mode", "random", "--seed", "1",
                              "--out", str(tmp_path / "sub.jsonl")])
    assert sub.exit_code == 0, sub.output
    assert read_chat_jsonl(tmp_path / "sub.jsonl") == subset_rows(_rows(10), 4, seed=1, mode="random")
    mixed = runner.invoke(app, ["data", "mix", f"{src}:1", f"{FIX / 'good.jsonl'}:1", "--n", "4",
                                "--out", str(tmp_path / "mix.jsonl")])
    assert mixed.exit_code == 0, mixed.output
    assert len(read_chat_jsonl(tmp_path / "mix.jsonl")) == 4
    bad = runner.invoke(app, ["data", "mix", str(src), "--n", "4", "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code != 0 and not (tmp_path / "x.jsonl").exists()


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, emkit.data, emkit.data.cli; "
            "print(','.join(m for m in ('torch', 'transformers', 'numpy', 'bandit') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
