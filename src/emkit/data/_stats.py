"""Summary statistics of a chat JSONL file: rows, roles, duplicates, length percentiles."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from emkit.data._jsonl import read_chat_jsonl
from emkit.hashing import canonical_json

PERCENTILES = (50, 90, 99, 100)


def _percentiles(values: list[int]) -> dict[str, int]:
    """Nearest-rank percentiles (no interpolation: every reported length is one that occurs)."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {}
    for p in PERCENTILES:
        rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
        out[f"p{p}" if p < 100 else "max"] = ordered[rank - 1]
    return out


def dataset_stats(path: str | Path, tokenizer: str | None = None) -> dict[str, Any]:
    """Rows, role counts, role patterns, duplicate rows/prompts, and length percentiles.

    Lengths are characters per row, and with ``tokenizer`` (a model reference such as
    ``smollm2-135m-instruct``) also tokens of the whole conversation rendered with that tokenizer's chat
    template (what training sees) and tokens of the assistant turns alone.
    """
    rows = read_chat_jsonl(path)
    roles: Counter[str] = Counter()
    patterns: Counter[str] = Counter()
    for row in rows:
        sequence = [m["role"] for m in row["messages"]]
        roles.update(sequence)
        patterns[" -> ".join(sequence)] += 1
    row_keys = Counter(canonical_json(row["messages"]) for row in rows)
    prompt_keys = Counter(canonical_json([m for m in row["messages"] if m["role"] != "assistant"]) for row in rows)
    stats: dict[str, Any] = {
        "path": str(path),
        "rows": len(rows),
        "roles": dict(roles),
        "role_patterns": dict(patterns.most_common()),
        "duplicate_rows": sum(c - 1 for c in row_keys.values()),
        "duplicate_prompts": sum(c - 1 for c in prompt_keys.values()),
        "chars": _percentiles([sum(len(m["content"]) for m in row["messages"]) for row in rows]),
    }
    if tokenizer:
        from emkit.models import load_tokenizer

        tok = load_tokenizer(tokenizer)
        totals, answers = [], []
        for row in rows:
            ids = tok.apply_chat_template(row["messages"], tokenize=True, return_dict=False)
            totals.append(len(ids))
            answers.append(sum(len(tok(m["content"], add_special_tokens=False)["input_ids"])
                               for m in row["messages"] if m["role"] == "assistant"))
        stats["tokenizer"] = tokenizer
        stats["tokens"] = _percentiles(totals)
        stats["assistant_tokens"] = _percentiles(answers)
    return stats
