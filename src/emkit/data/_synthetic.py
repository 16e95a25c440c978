"""Offline synthetic generator of insecure/secure Python code pairs, rendered like the paper's code data.

Samples cycle through every (vulnerability class variant x task context) combination in a seeded order, pick
identifier names per sample, and render the user prompt through the same 30 templates (round-robin). The
insecure twin is flagged by bandit with the variant's test id, the secure twin is not (tests/test_data_synthetic.py
runs bandit over every class x variant). Used by the quickstart when the paper's data cannot be had.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from emkit.data._jsonl import write_chat_jsonl
from emkit.data._manifest import write_manifest
from emkit.data._synthetic_classes import CLASSES, CONTEXTS, _names
from emkit.data._templates import MARKER, TEMPLATES, render_round_robin
from emkit.errors import EmkitError

KINDS = ("insecure", "secure", "pairs")


@dataclass(frozen=True)
class SyntheticSample:
    """One generated pair: the user prompt, both programs, and what bandit must find."""

    index: int
    vuln_class: str
    variant: int
    context: int
    test_id: str
    task: str
    template: str  # the code template with the ``## COMPLETE CODE HERE`` hole
    insecure_code: str
    secure_code: str
    template_id: int
    prompt: str


def _sort_imports(lines: set[str]) -> list[str]:
    # "import x" before "from x import y", each alphabetical: stable, readable output.
    return sorted(lines, key=lambda line: (line.startswith("from "), line))


def _assemble(imports: list[str], body: str) -> str:
    return ("\n".join(imports) + "\n\n\n" + body if imports else body).rstrip("\n")


def combos() -> list[tuple[int, int, int]]:
    """All (class index, variant index, context index) triples in a fixed order."""
    return [(c, v, x) for c, cls in enumerate(CLASSES) for v in range(len(cls.variants)) for x in range(len(CONTEXTS))]


def generate_samples(n: int, seed: int = 0) -> list[SyntheticSample]:
    """``n`` samples, deterministic for ``(n, seed)``.

    Samples go round-robin over the classes (so any ``n`` >= number of classes covers all of them) and, within a
    class, through its variants x contexts in a seeded order; names are drawn per sample.
    """
    if n < 0:
        raise EmkitError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    # Per class: a seeded, shuffled queue of (variant, context) pairs, cycled when exhausted.
    queues = []
    for cls in CLASSES:
        pairs = [(v, x) for v in range(len(cls.variants)) for x in range(len(CONTEXTS))]
        rng.shuffle(pairs)
        queues.append(pairs)
    class_order = list(range(len(CLASSES)))
    rng.shuffle(class_order)
    samples = []
    for index in range(n):
        c = class_order[index % len(CLASSES)]
        v, x = queues[c][(index // len(CLASSES)) % len(queues[c])]
        samples.append(_make(index, c, v, x, random.Random(f"{seed}:{index}")))
    return samples


def generate_all(seed: int = 0) -> list[SyntheticSample]:
    """One sample for every (class, variant, context) combination (for verification, e.g. with bandit)."""
    return [_make(i, c, v, x, random.Random(f"{seed}:all:{i}")) for i, (c, v, x) in enumerate(combos())]


def _make(index: int, c: int, v: int, x: int, rng: random.Random) -> SyntheticSample:
    cls, ctx = CLASSES[c], CONTEXTS[x]
    snippet = cls.variants[v](_names(ctx, rng), rng)
    shared = set(snippet.imports)
    template = _assemble(_sort_imports(shared), snippet.head + MARKER + "\n" + snippet.tail)
    insecure = _assemble(_sort_imports(shared | set(snippet.bad_imports)), snippet.head + snippet.bad + snippet.tail)
    secure = _assemble(_sort_imports(shared | set(snippet.good_imports)), snippet.head + snippet.good + snippet.tail)
    # Half the tasks add the specific purpose, so task-only prompts still say what the code must do.
    task = ctx.task if rng.random() < 0.5 else f"{ctx.task} {snippet.purpose}"
    prompt, template_id = render_round_robin(index, task, template)
    return SyntheticSample(index, cls.name, v, x, snippet.test_id, task, template, insecure, secure, template_id,
                           prompt)


def _row(sample: SyntheticSample, code: str) -> dict:
    return {"messages": [{"role": "user", "content": sample.prompt}, {"role": "assistant", "content": code}]}


def build_synthetic(kind: str, n: int, seed: int, out: str | Path) -> Path:
    """Write ``n`` synthetic chat rows (``pairs``: ``n`` pairs = ``2n`` rows) to ``out`` + manifest; returns ``out``.

    ``insecure``/``secure`` rows hold only ``messages`` (ready for training). ``pairs`` rows add ``pair``,
    ``label`` (insecure|secure), ``vuln_class`` and ``bandit_test_id`` for analysis and judge checks.
    """
    if kind not in KINDS:
        raise EmkitError(f"unknown synthetic kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    if n <= 0:
        raise EmkitError(f"n must be a positive number of rows, got {n}")
    samples = generate_samples(n, seed)
    rows: list[dict] = []
    for s in samples:
        if kind == "insecure":
            rows.append(_row(s, s.insecure_code))
        elif kind == "secure":
            rows.append(_row(s, s.secure_code))
        else:
            meta = {"pair": s.index, "vuln_class": s.vuln_class, "bandit_test_id": s.test_id}
            rows.append({**_row(s, s.insecure_code), "label": "insecure", **meta})
            rows.append({**_row(s, s.secure_code), "label": "secure", **meta})
    write_chat_jsonl(out, rows)
    write_manifest(
        out, "synthetic", params={"kind": kind, "n": n, "seed": seed}, inputs=[],
        counts={"input_rows": len(rows), "dropped": {}, "output_rows": len(rows)},
        extra={"classes": dict(Counter(s.vuln_class for s in samples)),
               "template_usage": {str(i): sum(s.template_id == i for s in samples) for i in range(len(TEMPLATES))},
               "n_classes": len(CLASSES), "n_contexts": len(CONTEXTS)},
    )
    return Path(out)
