"""Subsets and mixtures of chat rows, seeded and deterministic."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from emkit.errors import EmkitError


def subset_rows(rows: Sequence[dict], n: int | None, seed: int | None = None, mode: str = "first") -> list[dict]:
    """``n`` rows: the first ``n`` (mode="first") or a seeded random sample in file order (mode="random").

    ``n=None`` or ``n >= len(rows)`` returns all rows (a copy). Random mode keeps the original order of the
    chosen rows so a subset of a subset stays comparable; it needs a seed so the choice is reproducible.
    """
    if mode not in ("first", "random"):
        raise EmkitError(f"unknown subset mode {mode!r}", hint="use mode='first' or mode='random'")
    if n is not None and n < 0:
        raise EmkitError(f"subset size must be >= 0, got {n}")
    if n is None or n >= len(rows):
        return list(rows)
    if mode == "first":
        return list(rows[:n])
    if seed is None:
        raise EmkitError("random subsets need a seed", hint="pass seed=<int> (e.g. 0) so the subset is reproducible")
    chosen = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in chosen]


def _allocate(n: int, weights: list[float]) -> list[int]:
    """Split ``n`` by ``weights`` with largest remainders, so the counts sum to exactly ``n``."""
    total = sum(weights)
    exact = [n * w / total for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def mix(files_with_ratios: Mapping[str | Path, float] | Sequence[tuple[str | Path, float]], n: int,
        seed: int) -> list[dict]:
    """A shuffled mixture of ``n`` rows drawn from several datasets in the given ratios.

    ``files_with_ratios``: ``{"betley2025/insecure": 0.5, "my.jsonl": 0.5}`` or a list of pairs; names go through
    :func:`emkit.data.resolve_dataset`. Ratios need not sum to 1 (they are normalised). Each file contributes a
    seeded random subset (no row twice); a file smaller than its share is an error, not a silent shortfall.
    """
    from emkit.data._jsonl import read_chat_jsonl
    from emkit.data._resolve import resolve_dataset

    pairs = list(files_with_ratios.items()) if isinstance(files_with_ratios, Mapping) else list(files_with_ratios)
    if not pairs:
        raise EmkitError("mix needs at least one file with a ratio")
    for name, ratio in pairs:
        if not ratio >= 0:
            raise EmkitError(f"mix ratio for {name} must be >= 0, got {ratio}")
    if sum(r for _, r in pairs) <= 0:
        raise EmkitError("mix ratios sum to 0", hint="give at least one file a positive ratio")
    counts = _allocate(n, [float(r) for _, r in pairs])
    out: list[dict] = []
    for index, ((name, _), count) in enumerate(zip(pairs, counts, strict=True)):
        rows = read_chat_jsonl(resolve_dataset(str(name)))
        if count > len(rows):
            raise EmkitError(f"{name} has {len(rows)} rows but the mixture needs {count} from it",
                             hint="lower n or this file's ratio")
        # A different stream per file, so changing one file's ratio does not reshuffle the others' choice.
        out.extend(subset_rows(rows, count, seed=seed * 1000 + index, mode="random"))
    random.Random(seed).shuffle(out)
    return out
