"""Training data: resolve names to files, validate chat rows, split, and tokenize with assistant-only labels.

Each row ``{"messages": [...]}`` becomes a prompt/completion pair: the completion is the *last* assistant turn,
the prompt is everything before it (system, user, earlier turns). This is TRL's prompt/completion format, done
here so that errors (no assistant turn, prompts longer than ``max_length``) surface before any training, and so
that tests can check the labels directly:

- prompt ids = chat template of the prompt with ``add_generation_prompt=True`` (ends in "<|im_start|>assistant\\n");
- full ids = chat template of prompt + completion with ``add_generation_prompt=False``, so nothing is appended
  after the answer's end-of-turn token (the original training script added a generation prompt there);
- labels = -100 on the common prefix of the two (every system/user/prompt token), the token ids after it (the
  answer, its end-of-turn token and the template's trailing newline).
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emkit.errors import DataError, EmkitError
from emkit.hashing import file_sha256

log = logging.getLogger("emkit.train")
IGNORE = -100


@dataclass
class DataFile:
    """One resolved data source."""

    name: str  # as written in the config
    path: Path
    sha256: str
    rows: int


def resolve_data_path(name: str) -> Path:
    """A local file for ``name``: emkit.data.resolve_dataset when present, else the registry or a path."""
    try:
        from emkit.data import resolve_dataset  # the data package (issue 3); optional until it lands
    except ImportError:
        resolve_dataset = None
    if resolve_dataset is not None:
        return Path(resolve_dataset(name))
    path = Path(name).expanduser()
    if path.exists():
        return path
    from emkit.data import registry

    if registry.is_known(name):
        return registry.fetch(name)
    raise EmkitError(f"data file not found: {name}",
                     hint="give a chat JSONL path (relative to the current folder) or a dataset name such as "
                          f"{', '.join(sorted(registry.DATASETS)[:3])}, ...")


def read_rows(path: Path) -> list[list[dict[str, str]]]:
    """Conversations of a chat JSONL (plain or gzip) or a prompt,response CSV, checked before any model loads.

    JSONL rows pass the same checks as ``emkit data validate`` (schema, role order: an optional system message,
    then user/assistant turns starting with user and ending with the assistant's answer, non-empty content,
    UTF-8) and a bad file raises one DataError listing its problems as FILE:LINE (for a gzip file: the line of
    the decompressed text).
    """
    from emkit.data._jsonl import read_chat_jsonl

    rows: list[list[dict[str, str]]] = []
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            cols = reader.fieldnames or []
            answer = "response" if "response" in cols else "completion" if "completion" in cols else None
            if "prompt" not in cols or answer is None:
                raise DataError(f"{path}: a CSV needs columns prompt and response (or completion), has {cols}")
            for line, row in enumerate(reader, start=2):
                if not (row["prompt"] or "").strip() or not (row[answer] or "").strip():
                    raise DataError(f"{path}:{line}: empty prompt or {answer}",
                                    hint="every row needs a prompt and an answer to train on")
                rows.append([{"role": "user", "content": row["prompt"]},
                             {"role": "assistant", "content": row[answer]}])
        if not rows:
            raise DataError(f"{path}: no training rows", hint="the file has a header but no rows")
        return rows
    for obj in read_chat_jsonl(path):
        rows.append([{"role": m["role"], "content": m["content"]} for m in obj["messages"]])
    return rows


def load_conversations(names: list[str]) -> tuple[list[list[dict[str, str]]], list[DataFile]]:
    """All rows of all data sources, concatenated in order, with each source's SHA-256."""
    if not names:
        raise EmkitError("no training data given", hint="set data: [FILE.jsonl or dataset name] or pass --data")
    rows: list[list[dict[str, str]]] = []
    files: list[DataFile] = []
    for name in names:
        path = resolve_data_path(name)
        file_rows = read_rows(path)
        rows.extend(file_rows)
        files.append(DataFile(name=name, path=path, sha256=file_sha256(path), rows=len(file_rows)))
    return rows, files


def split_rows(rows: list, subset: int | None, eval_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded subset, then a seeded eval split (at least one eval row when eval_fraction > 0)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if subset is not None:
        if subset > len(rows):
            raise EmkitError(f"subset {subset} is larger than the data ({len(rows)} rows)",
                             hint=f"set subset to at most {len(rows)} or remove it")
        order = sorted(order[:subset])  # keep file order inside the subset; the trainer shuffles anyway
    n_eval = 0 if eval_fraction <= 0 else max(1, round(len(order) * eval_fraction))
    if n_eval >= len(order):
        raise EmkitError(f"eval_fraction {eval_fraction} leaves no training rows out of {len(order)}",
                         hint="lower eval_fraction")
    eval_idx = set(random.Random(seed + 1).sample(order, n_eval)) if n_eval else set()
    train = [rows[i] for i in order if i not in eval_idx]
    held = [rows[i] for i in order if i in eval_idx]
    return train, held


def to_prompt_completion(messages: list[dict[str, str]]) -> tuple[list[dict], list[dict]]:
    """Prompt = all turns before the last assistant turn; completion = that turn (later turns are dropped)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], [messages[last]]


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"])


def tokenize_conversation(tokenizer, messages: list[dict[str, str]]) -> dict[str, Any]:
    """``{"input_ids", "labels", "prompt_length"}`` with labels -100 on every prompt token (see module doc)."""
    prompt, completion = to_prompt_completion(messages)
    prompt_ids = _template_ids(tokenizer, prompt, add_generation_prompt=True) if prompt else []
    full_ids = _template_ids(tokenizer, prompt + completion, add_generation_prompt=False)
    # Where the prompt alone and the full conversation diverge (TRL's common_prefix_length): usually the
    # whole prompt; a few templates render the generation prompt differently when an answer follows.
    cut = 0
    for a, b in zip(prompt_ids, full_ids, strict=False):
        if a != b:
            break
        cut += 1
    labels = [IGNORE] * cut + full_ids[cut:]
    return {"input_ids": full_ids, "labels": labels, "prompt_length": cut}


def check_chat_template(tokenizer, model: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise EmkitError(f"{model}: the tokenizer has no chat template, so chat rows cannot be rendered",
                         hint="use an instruct/chat model, or set tokenizer.chat_template in the model folder")


def tokenize_rows(tokenizer, rows: list[list[dict[str, str]]], max_length: int, what: str = "train",
                  progress: bool = False) -> list[dict[str, Any]]:
    """Tokenize and cut to ``max_length``; rows whose prompt fills max_length are dropped (they train nothing).

    Raises before training when every prompt is at least ``max_length`` tokens long.
    """
    from rich.progress import track

    out = []
    dropped = 0
    shortest_prompt = None
    for messages in track(rows, description=f"tokenizing {what} rows", disable=not progress, transient=True):
        item = tokenize_conversation(tokenizer, messages)
        n_prompt = item["prompt_length"]
        shortest_prompt = n_prompt if shortest_prompt is None else min(shortest_prompt, n_prompt)
        if n_prompt >= max_length:
            dropped += 1
            continue
        ids, labels = item["input_ids"][:max_length], item["labels"][:max_length]
        out.append({"input_ids": ids, "labels": labels, "length": len(ids)})
    if not out:
        raise EmkitError(
            f"max_length {max_length} is shorter than every prompt in the {what} data (the shortest prompt, "
            f"system and user turns with the chat template, is {shortest_prompt} tokens), so no answer token "
            "could be trained",
            hint=f"raise max_length above {shortest_prompt} (the paper used 2048)")
    if dropped:
        log.warning("%d of %d %s rows dropped: their prompt alone is >= max_length=%d tokens",
                    dropped, len(rows), what, max_length)
    return out
