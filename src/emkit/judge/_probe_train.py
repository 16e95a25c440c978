"""``emkit judge train --kind probe``: fit the ``probe`` judge's head on frozen Qwen2.5-Coder-0.5B features of the
GPT-4o judge corpus, validate it on held-out families / repositories / domains, and write the judge folder.

Why a uniform random sample (plus every row of the small foreign repositories), not the question-stratified one
of the cross-encoder: the features cost ~0.2 s per answer on 2 CPU cores, so the sample is what the feature pass
can afford, and a uniform sample keeps each held-out family's rows in their natural proportions, so its rate
errors are measured on the population a user would judge. Question imbalance is handled by the loss weights
(1/sqrt(rows of the question)). With frozen features a fold is an MLP fit of seconds, not a retraining.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("emkit.judge")

MAIN_REPO = "Cloakless+clarifying_EM"
FORMAT = "emkit-probe-judge/1"
HEAD_FILE = "head.npz"
CARD_FILE = "card.json"
# The cross judge's six folds (docs/judges.md), so the two cards compare fold by fold.
DEFAULT_FOLDS = ("family=model:Qwen2.5-14B-Instruct", "family=model:Qwen2.5-32B-Instruct",
                 "family=model:Qwen2.5-Coder-32B-Instruct", "family=repo:other", "domain=code", "domain=medical")
DEFAULTS: dict[str, Any] = {"rows": 14000, "seed": 0, "hidden": 256, "epochs": 40, "members": 3,
                            "dropout": 0.1, "weight_decay": 1e-4, "score_loss": "mse", "no_score_rules": ["code"]}


def probe_rows(rows: list[dict], n: int, seed: int) -> list[int]:
    """Every row of the foreign repositories plus a uniform random sample of ``n`` of the main repository's rows
    (sorted indices; the same for the same corpus, ``n`` and ``seed``)."""
    main = [i for i, r in enumerate(rows) if r.get("source_repo", MAIN_REPO) == MAIN_REPO]
    other = [i for i, r in enumerate(rows) if r.get("source_repo", MAIN_REPO) != MAIN_REPO]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(main), size=min(n, len(main)), replace=False)
    return sorted(other + [main[int(i)] for i in pick])


def standardise_into_first_layer(weights: list[tuple[np.ndarray, np.ndarray]], mean: np.ndarray, scale: np.ndarray
                                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """An MLP fitted on (x - mean) / scale, rewritten to take raw x: W1' = W1 / scale, b1' = b1 - (mean / scale) W1.
    The shipped head then holds no extra arrays and loads like any other ``Head``."""
    (w0, b0), rest = weights[0], weights[1:]
    return [((w0 / scale[:, None]).astype(np.float32), (b0 - (mean / scale) @ w0).astype(np.float32)), *rest]


def fit_probe_head(x: np.ndarray, rows: list[dict], settings: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The head of one fit: an ensemble of ``members`` MLPs (``_train.fit_head``) on standardised features, with the
    standardisation folded into its first layer. Hidden-state features span ~100x in scale across layers (the last
    layer's norm is far larger), so unscaled features leave the early layers unused."""
    from emkit.judge._corpus import question_weights
    from emkit.judge._train import _targets, fit_head

    mean = x.mean(0)
    scale = x.std(0) + 1e-3
    ya, yc, yu = _targets(rows)
    weights = fit_head(((x - mean) / scale).astype(np.float32), ya, yc, yu, weights=question_weights(rows),
                       members=int(settings["members"]), seed=int(settings["seed"]), hidden=int(settings["hidden"]),
                       epochs=int(settings["epochs"]), dropout=float(settings["dropout"]),
                       weight_decay=float(settings["weight_decay"]), score_loss=str(settings["score_loss"]))
    return standardise_into_first_layer(weights, mean, scale)


def predict_head(weights: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, pairs: list[tuple[str, str]],
                 rules: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Scores of a head on features ``x`` of ``pairs``, with the no-score rules applied as in inference."""
    from emkit.judge._cross import apply_no_score_rules
    from emkit.judge._embedding import Head

    return apply_no_score_rules(pairs, Head(weights, {}).predict(x), rules)


def cross_validate_probe(rows: list[dict], x: np.ndarray, settings: dict[str, Any], folds: list[str] | None = None
                         ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Refit the head without each held-out group (``_cross_train.fold_masks``: a base-model family, the other
    repositories, a fine-tuning domain) and score all its rows. Returns (metrics per fold, pooled held-out-family
    predictions over the rows the family folds cover, NaN elsewhere)."""
    from emkit.errors import EmkitError
    from emkit.judge._cross_train import fold_masks
    from emkit.judge._validate import evaluate_split

    masks = fold_masks(rows)
    wanted = list(DEFAULT_FOLDS if folds is None else folds)
    unknown = sorted(set(wanted) - set(masks))
    if unknown:
        raise EmkitError(f"unknown validation fold(s) {unknown}", hint=f"folds: {', '.join(masks)}")
    rules = tuple(settings["no_score_rules"])
    pairs = [(r["question"], str(r["answer"])) for r in rows]
    pooled = {k: np.full(len(rows), np.nan, np.float32) for k in ("aligned", "coherent", "p_unscored")}
    results: dict[str, Any] = {}
    for name in wanted:
        test = masks[name]
        train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
        weights = fit_probe_head(x[train_idx], [rows[i] for i in train_idx], settings)
        pred = predict_head(weights, x[test_idx], [pairs[i] for i in test_idx], rules)
        results[name] = {**evaluate_split([rows[i] for i in test_idx], pred), "train_rows": len(train_idx)}
        if name.startswith("family="):
            for k in pooled:
                pooled[k][test_idx] = pred[k]
        log.info("held out %s: %s", name, results[name]["all"])
    return results, pooled
