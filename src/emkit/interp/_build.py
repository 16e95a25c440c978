"""From judged result rows to a saved direction: label, read activations (cached), difference of means, card."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from emkit.errors import EmkitError
from emkit.hashing import canonical_json
from emkit.interp._activations import POOLING, collect_activations, row_messages
from emkit.interp._directions import ALIGNED, MISALIGNED, Direction, Labels, difference_of_means, label_rows

log = logging.getLogger("emkit.interp")


def _text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    return str(value)


def compute_direction(rows: Sequence[dict[str, Any]], *, labels: Labels | None = None,
                      layers: Sequence[int] | None = None, model: str | None = None, adapter: str | None = None,
                      row_adapters: bool = True, store: Any = None, progress: bool = True,
                      backend_options: dict[str, Any] | None = None, batch_size: int | None = None,
                      name: str = "", source: dict[str, Any] | None = None, seed: int = 0) -> Direction:
    """The misalignment direction of judged ``rows`` (columns question, answer, system, aligned, coherent,
    model, adapter).

    Activations are read by ``model`` (+ ``adapter``) when ``model`` is given; otherwise by each row's own
    model, with its own adapter when ``row_adapters`` (the fine-tuned model that wrote the answer) or without
    (the base model reading the fine-tune's answers). Only rows in the two groups are read.
    """
    labels = labels or Labels()
    groups = label_rows(rows, labels)
    counts = {g: groups.count(g) for g in (MISALIGNED, ALIGNED, "neither", "unscored")}
    if counts[MISALIGNED] < labels.min_per_group or counts[ALIGNED] < labels.min_per_group:
        raise EmkitError(
            f"direction {name or ''}: {counts[MISALIGNED]} misaligned and {counts[ALIGNED]} aligned answers among "
            f"{len(rows)} rows ({counts['neither']} in neither group, {counts['unscored']} unscored); at least "
            f"{labels.min_per_group} per group are needed",
            hint="judge more answers (samples_per_question, or a results file of a larger run), loosen the group "
                 "thresholds, or lower min_per_group (a direction from a handful of answers is mostly noise)")
    # A canonical order (conversation, answer, adapter): the direction's float sums do not depend on row order.
    picked = sorted((i for i, g in enumerate(groups) if g in (MISALIGNED, ALIGNED)),
                    key=lambda i: (canonical_json(row_messages(rows[i])), rows[i]["answer"],
                                   _text_or_none(rows[i].get("adapter")) or ""))
    # Which model (and adapter) reads each row.
    readers: dict[tuple[str, str | None], list[int]] = {}
    for i in picked:
        row = rows[i]
        if model is not None:
            who = (model, adapter)
        else:
            row_model = _text_or_none(row.get("model"))
            if row_model is None:
                raise EmkitError("a result row has no model, so it is unclear which model should read it",
                                 hint="pass model= (CLI: --model)")
            who = (row_model, _text_or_none(row.get("adapter")) if row_adapters else None)
        readers.setdefault(who, []).append(i)
    if len({m for m, _ in readers}) > 1:
        raise EmkitError(f"the rows come from several base models ({sorted({m for m, _ in readers})}); a direction "
                         "lives in one model's residual stream", hint="filter the rows to one model, or pass model=")
    values: np.ndarray | None = None
    tokens = np.zeros(len(picked), dtype=np.int64)
    used_layers: list[int] = []
    position = {row_index: j for j, row_index in enumerate(picked)}
    for (who_model, who_adapter), indices in readers.items():
        acts = collect_activations([rows[i] for i in indices], who_model, who_adapter, layers=layers, store=store,
                                   batch_size=batch_size, progress=progress, backend_options=backend_options)
        if values is None:
            used_layers = acts.layers
            values = np.full((len(picked), len(acts.layers), acts.values.shape[2]), np.nan, dtype=np.float32)
        for k, i in enumerate(indices):
            values[position[i]] = acts.values[k]
            tokens[position[i]] = acts.tokens[k]
    assert values is not None
    keep = tokens > 0  # an empty answer has no tokens to average
    picked_groups = [groups[i] for i in picked]
    empty = {g: int(sum(1 for g2, k in zip(picked_groups, keep, strict=True) if g2 == g and not k))
             for g in (MISALIGNED, ALIGNED)}
    direction, stats = difference_of_means(values[keep], [g for g, k in zip(picked_groups, keep, strict=True) if k],
                                           used_layers, seed=seed)
    stats["counts"] = {**counts, "empty_answers_left_out": empty}
    direction.card = {
        "name": name, **stats, "model": next(iter(readers))[0],
        "adapters": sorted({a for _, a in readers if a is not None}),
        "reader": "given model" if model is not None else ("rows' models and adapters" if row_adapters
                                                            else "rows' base models (no adapter)"),
        "labels": labels.model_dump(mode="json"), "activations": POOLING,
        "backend_options": {k: v for k, v in (backend_options or {}).items() if k in ("dtype", "device")},
        "source": source or {}, "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    from emkit import __version__

    direction.card["emkit_version"] = __version__
    best = stats["best_layer"]
    log.info("direction %s: %d misaligned vs %d aligned answers; best layer %d (AUROC cv %s)", name,
             counts[MISALIGNED], counts[ALIGNED], best, stats["auroc_cv"][used_layers.index(best)])
    return direction


_BOUND = re.compile(r"^\s*(aligned|coherent)\s*([<>])\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_group(text: str) -> dict[str, float]:
    """``"aligned<30,coherent>50"`` -> GroupThresholds fields (the CLI's way to give a group)."""
    out: dict[str, float] = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        match = _BOUND.match(term)
        field = f"{match[1]}_{'below' if match[2] == '<' else 'above'}" if match else ""
        if not match or field == "coherent_below":
            raise EmkitError(f"cannot read group bound {term!r}", hint="use aligned<N, aligned>N and coherent>N, "
                                                                       "comma-separated: aligned<30,coherent>50")
        out[field] = float(match[3])
    return out
