"""Dataset name or path -> a local chat JSONL file."""

from __future__ import annotations

import csv
from pathlib import Path

from emkit.data import registry
from emkit.errors import DataError, EmkitError
from emkit.hashing import file_sha256
from emkit.paths import cache_dir


def resolve_dataset(name_or_path: str | Path) -> Path:
    """A registry short name (``betley2025/insecure``), a registry file name, or a local chat JSONL path (plain or
    ``.jsonl.gz``) -> Path.

    Registry CSV datasets (``betley2025/evil_numbers_regenerated``: prompt,response) are converted once into chat
    JSONL in the cache. Anything else is an error that lists the known names.
    """
    text = str(name_or_path)
    if registry.is_known(text):
        entry = registry.resolve_name(text)
        path = registry.fetch(text)
        if entry.path.endswith(".jsonl"):
            return path
        if entry.path.endswith(".jsonl.gz"):
            return _gunzip(path)
        if entry.path.endswith(".csv"):
            return _csv_to_chat(path)
        raise EmkitError(f"{text} is a {Path(entry.path).suffix} reference file, not a chat dataset",
                         hint="use a training dataset name from `emkit data list`")
    path = Path(text).expanduser()
    if path.is_file():
        # A gzip file is read as it is (every reader decompresses transparently, errors name FILE.gz:LINE).
        plain = path.with_suffix("") if path.suffix == ".gz" else path
        if plain.suffix not in (".jsonl", ".json"):
            raise EmkitError(f"{path}: expected a chat JSONL file (.jsonl or .jsonl.gz), got "
                             f"{''.join(path.suffixes) or 'no suffix'}",
                             hint="convert it to one {\"messages\": [...]} object per line")
        return path
    if path.is_dir():
        raise EmkitError(f"{path}: is a folder, not a chat JSONL file", hint="pass the .jsonl file inside it")
    known = ", ".join(sorted(registry.DATASETS))
    raise EmkitError(f"{text!r} is neither a known dataset nor an existing file",
                     hint=f"use a local .jsonl path or one of: {known}")


def _gunzip(path: Path) -> Path:
    """A gzip registry file -> its plain JSONL in the cache, keyed by the gzip file's (verified) hash.

    Decompressed once (the model-organisms sets are ~1-3 MB each), so every reader downstream (validation,
    training, stats) sees an ordinary chat JSONL. The copy lives in the user's cache, never in a repository.
    """
    import gzip

    from emkit.paths import atomic_write

    digest = file_sha256(path)
    stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
    out = cache_dir() / "data" / "converted" / f"{stem}-{digest[:16]}.jsonl"
    if out.exists():
        return out
    try:
        with gzip.open(path, "rb") as src, atomic_write(out, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})",
                        hint="delete it from the cache or fix the mirror; its SHA-256 is pinned") from exc
    return out


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
