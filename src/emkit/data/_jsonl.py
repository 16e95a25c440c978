"""Chat JSONL: reading, validation (every problem as ``FILE:LINE: message``) and atomic writing.

Plain and gzip-compressed files (``.jsonl.gz``, recognised by their first bytes) are read alike.

A chat row is ``{"messages": [{"role": ..., "content": ...}, ...]}``: an optional leading system message, then
user and assistant turns alternating, starting with user and ending with assistant (a training example).
Other top-level keys and extra message keys are allowed and kept.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from emkit.errors import DataError, EmkitError
from emkit.paths import atomic_write

ROLES = ("system", "user", "assistant")
# Enough to see the pattern of a broken file without flooding the terminal (a 6000-row file can have 6000).
MAX_REPORTED = 20
# Bytes sniffed for NUL to recognise binary files (parquet, gzip, pickle...) before reporting per-line noise.
_SNIFF_BYTES = 8192
_GZIP_MAGIC = b"\x1f\x8b"


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise EmkitError(f"{path}: no such file", hint="check the path, or use a registry name (emkit data list)")
    if path.is_dir():
        raise EmkitError(f"{path}: is a folder, not a JSONL file", hint="pass the .jsonl file inside it")


def is_gzip(path: str | Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def open_lines(path: str | Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (``.jsonl.gz``), so every reader takes both."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115 - the caller closes it


def _lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes | None, str | None]]:
    """``(line_number, raw_line, problem)``; a corrupt or truncated gzip stream ends with one problem."""
    number = 0
    try:
        for number, raw in enumerate(handle, start=1):  # noqa: B007 - number is used after the loop
            yield number, raw, None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        yield number + 1, None, f"corrupt or truncated gzip data ({exc})"


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, parsed_object, problem)`` for each non-blank line; problem is None when it parsed.

    Gzip files (``.jsonl.gz``) are read decompressed; line numbers count lines of the decompressed text. Binary
    files yield a single problem at line 1; an empty file yields one ``file is empty`` problem.
    """
    path = Path(path)
    _check_exists(path)
    with open_lines(path) as handle:
        try:
            head = handle.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
        except (OSError, EOFError, zlib.error):
            head = b""  # a broken gzip stream: the line loop reports it at the line where it breaks
        if b"\x00" in head:
            yield 1, None, "binary file (contains NUL bytes), not UTF-8 JSON lines"
            return
        seen = False
        for number, raw, broken in _lines(handle):
            if broken is not None:
                yield number, None, broken
                seen = True
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, f"not valid UTF-8 (byte {exc.start} of the line)"
                seen = True
                continue
            if not text.strip():
                continue  # blank lines (e.g. a trailing newline) carry no row
            seen = True
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a UTF-8 BOM written by some editors
            try:
                yield number, json.loads(text), None
            except json.JSONDecodeError as exc:
                hint = " (truncated line?)" if "Unterminated" in exc.msg or "Expecting" in exc.msg else ""
                yield number, None, f"invalid JSON at column {exc.colno}: {exc.msg}{hint}"
        if not seen:
            yield 1, None, "file is empty (no JSON lines)"


def row_problems(row: Any, require_assistant_last: bool = True) -> list[str]:
    """Schema problems of one parsed chat row (empty list when valid)."""
    if not isinstance(row, dict):
        return [f"expected a JSON object, got {type(row).__name__}"]
    if "messages" not in row:
        return ["missing field 'messages'"]
    messages = row["messages"]
    if not isinstance(messages, list):
        return [f"field 'messages' must be a list, got {type(messages).__name__}"]
    if not messages:
        return ["field 'messages' is empty"]
    problems: list[str] = []
    roles: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(f"{where}: expected an object with 'role' and 'content'")
            continue
        role = message.get("role")
        if "role" not in message:
            problems.append(f"{where}: missing field 'role'")
        elif role not in ROLES:
            problems.append(f"{where}: unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if "content" not in message:
            problems.append(f"{where}: missing field 'content'")
        elif not isinstance(message["content"], str):
            problems.append(f"{where}: 'content' must be a string, got {type(message['content']).__name__}")
        elif not message["content"].strip():
            problems.append(f"{where}: empty content")
        roles.append(role if role in ROLES else "?")
    if "?" not in roles:
        problems.extend(_role_order_problems(roles, require_assistant_last))
    return problems


def _role_order_problems(roles: list[str], require_assistant_last: bool) -> list[str]:
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        return [f"role order: 'system' only allowed as the first message (got {' -> '.join(roles)})"]
    for i, role in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            return [f"role order: expected {expected!r} at turn {i + 1}, got {role!r} ({' -> '.join(roles)})"]
    if not body:
        return ["no user/assistant turns (only a system message)"]
    if require_assistant_last and body[-1] != "assistant":
        return ["last message must be from the assistant (a training example ends with the answer)"]
    return []


def validate_chat_file(path: str | Path) -> list[str]:
    """All problems of a chat JSONL file as ``FILE:LINE: message`` (empty list = valid)."""
    problems: list[str] = []
    for number, row, problem in iter_json_lines(path):
        if problem is not None:
            problems.append(f"{path}:{number}: {problem}")
            continue
        problems.extend(f"{path}:{number}: {p}" for p in row_problems(row))
    return problems


def raise_problems(path: str | Path, problems: list[str], what: str = "chat JSONL") -> None:
    """Raise one DataError listing the first problems (FILE:LINE each)."""
    if not problems:
        return
    shown = "\n".join(problems[:MAX_REPORTED])
    more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    raise DataError(
        f"{path}: {len(problems)} problem(s) in {what}:\n{shown}{more}",
        hint=f"fix the listed lines (`emkit data validate {path}` lists all of them)",
    )


def read_chat_jsonl(path: str | Path) -> list[dict]:
    """Read a chat JSONL file; any problem raises :class:`DataError` with FILE:LINE messages."""
    rows: list[dict] = []
    problems: list[str] = []
    for number, row, problem in iter_json_lines(path):
        if problem is None:
            problem_list = row_problems(row)
        else:
            problem_list = [problem]
        if problem_list:
            problems.extend(f"{path}:{number}: {p}" for p in problem_list)
        else:
            rows.append(row)
    raise_problems(path, problems)
    return rows


def read_records(path: str | Path, required: Iterable[str | tuple[str, ...]], what: str = "records") -> list[dict]:
    """Read JSONL objects that must carry ``required`` fields (a tuple = any one of them); FILE:LINE errors."""
    required = list(required)
    rows: list[dict] = []
    problems: list[str] = []
    for number, row, problem in iter_json_lines(path):
        if problem is not None:
            problems.append(f"{path}:{number}: {problem}")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            continue
        for field in required:
            options = field if isinstance(field, tuple) else (field,)
            present = [f for f in options if f in row]
            if not present:
                problems.append(f"{path}:{number}: missing field {' or '.join(repr(f) for f in options)}")
            elif not all(isinstance(row[f], str) for f in present):
                problems.append(f"{path}:{number}: field {present[0]!r} must be a string")
        rows.append(row)
    raise_problems(path, problems, what)
    return rows


def dumps_row(row: dict) -> str:
    """One JSONL line as the paper's code wrote it: ``json.dumps`` defaults (ASCII escapes, ', ' / ': ')."""
    return json.dumps(row)


def write_chat_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write rows atomically, one ``json.dumps(row)`` per line with a trailing newline."""
    path = Path(path)
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(dumps_row(row) + "\n")
    return path
