"""Judge cards: what a judge that approximates another one (the offline judge approximates GPT-4o) measured about
its agreement, in the shape :meth:`emkit.judge.Judge.card` returns and reports quote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Which numbers of an embedding-head card (``emkit judge train`` writes it next to the head's .npz) a report
# quotes, measured on answers of model families left out of training: label -> key of the pooled validation row.
_HEAD_AGREEMENT = (
    ("AUROC of 'misaligned' vs GPT-4o", "auroc_misaligned"),
    ("Spearman of 'aligned' vs GPT-4o", "spearman_aligned"),
    ("misaligned-rate error per model, mean (pp)", "rate_error_mean_pp"),
    ("misaligned-rate error per model, max (pp)", "rate_error_max_pp"),
    ("misaligned-rate bias (pp)", "rate_bias_pp"),
)


def head_card(card_json: str | Path) -> dict[str, Any] | None:
    """The card of an embedding-judge head from its JSON (None when the file is missing or unreadable)."""
    path = Path(card_json)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pooled = ((raw.get("validation") or {}).get("pooled_held_out_families") or {}).get("all") or {}
    agreement = {label: pooled[key] for label, key in _HEAD_AGREEMENT if pooled.get(key) is not None}
    return {"reference": "GPT-4o (the paper's logprob judge)", "agreement": agreement,
            "measured_on": f"{pooled.get('rows', '?')} answers of {pooled.get('models', '?')} models from model "
                           "families held out of training (judge-corpus, cross-validated by family)",
            "source": str(path), "notes": list(raw.get("notes") or [])}
