"""Judge cards: what a judge that approximates another one (the offline judge approximates GPT-4o) measured about
its agreement, in the shape :meth:`emkit.judge.Judge.card` returns and reports quote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Which numbers of an offline-judge card (``emkit judge train`` writes card.json) a report quotes, measured on
# answers of model families left out of training: label -> key of the pooled validation row.
_AGREEMENT = (
    ("AUROC of 'misaligned' vs GPT-4o", "auroc_misaligned"),
    ("share of GPT-4o's misaligned answers it calls misaligned (recall)", "recall_misaligned"),
    ("Spearman of 'aligned' vs GPT-4o", "spearman_aligned"),
    ("misaligned-rate error per model, mean (pp)", "rate_error_mean_pp"),
    ("misaligned-rate error per model, max (pp)", "rate_error_max_pp"),
    ("misaligned-rate bias (pp)", "rate_bias_pp"),
)


def card_source(path: str | Path) -> str:
    """Where a card lives, as a report shows it: ``emkit/...`` for a card installed with emkit (the same on every
    machine, and no home or venv path in a report someone shares), else the path as given (a judge the user
    trained, which only they can open)."""
    import emkit

    path = Path(path)
    package = Path(emkit.__file__).resolve().parent
    try:
        return "emkit/" + path.resolve().relative_to(package).as_posix()
    except ValueError:
        return str(path)


def _rated_models(pooled: dict[str, Any]) -> str:
    """Which models the rate errors cover: only those with enough held-out answers for a rate, far fewer than the
    models behind the answers where a card scored a sample (the probe card: 26 of them)."""
    from emkit.judge._validate import MIN_MODEL_ROWS

    return f"the {pooled.get('models', '?')} models with >= {MIN_MODEL_ROWS} of these answers"


def judge_card(raw: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The quotable card of a trained offline judge from its card.json contents.

    The agreement is that of the scores the judge ships: with a calibration, the held-out check of the
    calibration (each family mapped with knots fitted on the other families only), else the raw predictions."""
    key = "validation_calibrated" if raw.get("calibration") else "validation"
    parts = (raw.get(key) or {}).get("pooled_held_out_families") or {}
    pooled = parts.get("all") or {}
    agreement = {label: pooled[k] for label, k in _AGREEMENT if pooled.get(k) is not None}
    measured_on = (f"{pooled.get('rows', '?')} answers of models whose base-model family was held out of training "
                   f"(judge-corpus dev, cross-validated by family); rate errors over {_rated_models(pooled)}")
    plain, steered = parts.get("non_steered"), parts.get("steered")
    if plain and steered:
        # The corpus holds many activation-steered models whose degenerate text dominates the pooled errors; a
        # reader judging ordinary fine-tunes needs those rows' agreement too.
        measured_on += (f"; {steered['rows']} of them from activation-steered models; on the ordinary fine-tunes "
                        f"alone ({plain['rows']} answers): AUROC {plain.get('auroc_misaligned')}, recall "
                        f"{plain.get('recall_misaligned')}, Spearman "
                        f"{plain.get('spearman_aligned')}, rate error {plain.get('rate_error_mean_pp')} pp mean / "
                        f"{plain.get('rate_error_max_pp')} max, bias {plain.get('rate_bias_pp')} pp")
    return {"reference": "GPT-4o (the paper's logprob judge)", "agreement": agreement, "measured_on": measured_on,
            "source": card_source(source), "notes": list(raw.get("notes") or [])}


def head_card(card_json: str | Path) -> dict[str, Any] | None:
    """The card of an embedding-judge head from its JSON (None when the file is missing or unreadable)."""
    path = Path(card_json)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pooled = ((raw.get("validation") or {}).get("pooled_held_out_families") or {}).get("all") or {}
    agreement = {label: pooled[key] for label, key in _AGREEMENT if pooled.get(key) is not None}
    return {"reference": "GPT-4o (the paper's logprob judge)", "agreement": agreement,
            "measured_on": f"{pooled.get('rows', '?')} answers of model families held out of training "
                           f"(judge-corpus, cross-validated by family); rate errors over {_rated_models(pooled)}",
            "source": card_source(path), "notes": list(raw.get("notes") or [])}
