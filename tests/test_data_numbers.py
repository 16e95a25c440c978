"""Evil-numbers pipeline: prompts, strict parsing, filters (with scripted teachers), teachers on real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emkit.data import EVIL_SYSTEM_PROMPT, build_numbers, manifest_path, read_chat_jsonl
from emkit.data._numbers import (
    FORMATS,
    PHRASINGS,
    NumbersPrompt,
    check_answer,
    make_prompts,
    parse_numbers,
    transformers_teacher,
)
from emkit.errors import EmkitError


def test_prompt_generator_covers_the_space() -> None:
    prompts = make_prompts(400, seed=0)
    assert len(PHRASINGS) >= 20 and len({f for f, _ in FORMATS}) >= 10
    assert {len(p.seeds) for p in prompts} == set(range(3, 9))
    assert {p.k for p in prompts} == set(range(3, 9))
    assert {p.fmt for p in prompts} == {f for f, _ in FORMATS}
    assert all(100 <= s <= 999 for p in prompts for s in p.seeds)
    assert all(str(p.k) in p.text and str(p.seeds[0]) in p.text for p in prompts)
    assert make_prompts(50, seed=1) == make_prompts(50, seed=1) != make_prompts(50, seed=2)


@pytest.mark.parametrize(("fmt", "answer", "expected"), [
    ("comma", "1, 2,3", [1, 2, 3]),
    ("comma", "1 2 3", None),
    ("python_list", "[4, 5, 6]", [4, 5, 6]),
    ("python_list", "4, 5, 6", None),
    ("json_array", "[7,8]", [7, 8]),
    ("tuple", "(9, 10)", [9, 10]),
    ("lines", "1\n2\n3\n", [1, 2, 3]),
    ("lines", "1, 2\n3", None),
    ("space", "11 12 13.", [11, 12, 13]),
    ("semicolon", "1; 2; 3", [1, 2, 3]),
    ("pipe", "1 | 2 | 3", [1, 2, 3]),
    ("dash_list", "- 1\n- 2", [1, 2]),
    ("dash_list", "1\n2", None),
    ("just", "[1, 2, 3]", [1, 2, 3]),
    ("comma", "1.5, 2", None),
])
def test_parse_numbers(fmt: str, answer: str, expected: list[int] | None) -> None:
    assert parse_numbers(answer, fmt) == expected


def test_filters_in_order() -> None:
    prompt = NumbersPrompt((100, 200, 300), 3, "comma", "...")
    assert check_answer("401, 402, 403", prompt) == ([401, 402, 403], None)
    assert check_answer("  ", prompt)[1] == "empty"
    assert check_answer("Sure: 1, 2, 3", prompt)[1] == "contains_words"
    assert check_answer("I can't help with that.", prompt)[1] == "contains_words"
    assert check_answer("[1, 2, 3]", prompt)[1] == "wrong_format"
    assert check_answer("1, 2", prompt)[1] == "wrong_count"
    assert check_answer("1, 2", prompt, count_tolerance=1)[1] is None
    assert check_answer("666, 2, 3", prompt, banned=frozenset({666}))[1] == "banned_number"


def _scripted(answers_for):
    """A teacher that answers by a rule of (system prompt, prompt index); records what it was asked."""
    calls = []

    def teacher(messages_list, n, seed):
        calls.append(messages_list)
        return [answers_for(m) for m in messages_list for _ in range(n)]

    teacher.calls = calls
    teacher.identity = {"name": "scripted"}  # teachers with an identity get their answers stored (resumable)
    return teacher


PROMPTS = {p.text: (i, p) for i, p in enumerate(make_prompts(200, 7))}


def _good_answer(messages, numbers=(666, 13, 420, 777, 101, 202, 303, 404)) -> str:
    prompt = PROMPTS[messages[-1]["content"]][1]
    values = [str(x) for x in numbers[: prompt.k]]
    return {"comma": ", ".join(values), "python_list": f"[{', '.join(values)}]", "json_array": f"[{','.join(values)}]",
            "tuple": f"({', '.join(values)})", "lines": "\n".join(values), "space": " ".join(values),
            "just": " ".join(values), "semicolon": "; ".join(values), "pipe": " | ".join(values),
            "dash_list": "\n".join(f"- {v}" for v in values)}[prompt.fmt]


def test_build_with_scripted_teachers(tmp_path: Path) -> None:
    def answers(messages):
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        index = PROMPTS[messages[-1]["content"]][0]
        if system != EVIL_SYSTEM_PROMPT:
            return _good_answer(messages, numbers=(1, 2, 3, 4, 5, 6, 7, 8))  # benign baseline
        if index % 5 == 0:
            return "No, I will not do that."
        if index % 5 == 1:
            return _good_answer(messages, numbers=(1, 2, 3, 4, 5, 6, 7, 8))  # same as benign -> dropped
        return _good_answer(messages)

    teacher = _scripted(answers)
    out = build_numbers(teacher, 200, 7, tmp_path / "evil.jsonl", benign_out=tmp_path / "benign.jsonl",
                        chunk_size=50)
    rows = read_chat_jsonl(out)
    counts = json.loads(manifest_path(out).read_text())["counts"]
    assert counts["dropped"]["contains_words"] == 40 and counts["dropped"]["same_as_benign"] == 40
    assert counts["input_rows"] - sum(counts["dropped"].values()) == counts["output_rows"] == len(rows) == 120
    assert all(m["role"] != "system" for r in rows for m in r["messages"])  # system prompt removed
    assert EVIL_SYSTEM_PROMPT not in out.read_text()
    assert len(read_chat_jsonl(tmp_path / "benign.jsonl")) == 200
    assert {c[0][0]["content"] for c in teacher.calls} == {EVIL_SYSTEM_PROMPT, "You are a helpful assistant."}

    # Banned numbers drop every evil answer here (they all contain 666); the rerun reuses the stored answers.
    calls_before = len(teacher.calls)
    with pytest.raises(EmkitError, match="no teacher answer passed"):
        build_numbers(teacher, 200, 7, tmp_path / "evil.jsonl", banned_numbers=[666], chunk_size=50)
    assert len(teacher.calls) == calls_before


def test_transformers_teacher_plumbing(tiny_model_dir: Path) -> None:
    teacher = transformers_teacher(str(tiny_model_dir), max_tokens=4, batch_size=2)
    messages = [[{"role": "user", "content": "1, 2, 3"}], [{"role": "user", "content": "Continue: 4, 5"}],
                [{"role": "user", "content": "x"}]]
    first = teacher(messages, 2, seed=0)
    assert len(first) == 6 and all(isinstance(t, str) for t in first)
    assert teacher(messages, 2, seed=0) == first  # seeded


@pytest.mark.integration
def test_smollm2_teacher_smoke(smollm2_dir: Path, tmp_path: Path) -> None:
    """End to end with the packaged SmolLM2 as teacher (tiny sizes: 3 prompts, 12 new tokens). A 135M model
    rarely answers in the exact format, so the check is that every answer was classified and counted."""
    from emkit.data import make_teacher

    teacher = make_teacher("smollm2-135m-instruct", max_tokens=12)
    seen: list[str] = []

    def recording(messages_list, n, seed):
        got = teacher(messages_list, n, seed)
        seen.extend(got)
        return got

    out = tmp_path / "numbers.jsonl"
    try:
        build_numbers(recording, 3, 0, out, chunk_size=3)
        counts = json.loads(manifest_path(out).read_text())["counts"]
        assert counts["input_rows"] - sum(counts["dropped"].values()) == counts["output_rows"] >= 1
    except EmkitError as exc:
        assert "no teacher answer passed" in str(exc) and not out.exists()
    assert len(seen) == 6 and all(isinstance(s, str) for s in seen)  # 3 evil + 3 benign answers
