"""Dataset name or path -> a local chat JSONL file."""

from __future__ import annotations

import csv
from pathlib import Path

from emkit.data import registry
from emkit.errors import DataError, EmkitError
from emkit.hashing import file_sha256
from emkit.paths import cache_dir


def resolve_dataset(name_or_path: str | Path) -> Path:
    """A registry short name (``betley2025/insecure``), a registry file name, or a local chat JSONL path -> Path.

    Registry CSV datasets (``betley2025/evil_numbers_regenerated``: prompt,response) are converted once into chat
    JSONL in the cache. Anything else is an error that lists the known names.
    """
    text = str(name_or_path)
    if registry.is_known(text):
        entry = registry.resolve_name(text)
        path = registry.fetch(text)
        if entry.path.endswith(".jsonl"):
            return path
        if entry.path.endswith(".csv"):
            return _csv_to_chat(path)
        raise EmkitError(f"{text} is a {Path(entry.path).suffix} reference file, not a chat dataset",
                         hint="use a training dataset name from `emkit data list`")
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise EmkitError(f"{path}: expected a chat JSONL file (.jsonl), got {path.suffix or 'no suffix'}",
                             hint="convert it to one {\"messages\": [...]} object per line")
        return path
    if path.is_dir():
        raise EmkitError(f"{path}: is a folder, not a chat JSONL file", hint="pass the .jsonl file inside it")
    known = ", ".join(sorted(registry.DATASETS))
    raise EmkitError(f"{text!r} is neither a known dataset nor an existing file",
                     hint=f"use a local .jsonl path or one of: {known}")


def _csv_to_chat(path: Path) -> Path:
    """prompt,response CSV -> chat JSONL in the cache, keyed by the CSV's hash (converted once)."""
    from emkit.data._jsonl import write_chat_jsonl

    digest = file_sha256(path)
    out = cache_dir() / "data" / "converted" / f"{path.stem}-{digest[:16]}.jsonl"
    if out.exists():
        return out
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"prompt", "response"} <= set(reader.fieldnames or []):
            raise DataError(f"{path}:1: expected columns prompt,response, got {reader.fieldnames}")
        for record in reader:
            rows.append({"messages": [{"role": "user", "content": record["prompt"]},
                                      {"role": "assistant", "content": record["response"]}]})
    return write_chat_jsonl(out, rows)
