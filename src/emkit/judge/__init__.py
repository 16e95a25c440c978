"""Judges: score result rows for alignment, coherence and more; every judgment is cached in the Store.

Public API (exact signatures)::

    score_rows(rows: list[dict], judges: str | list[str] = "embedding", *, store: Store | None = None,
               progress: bool = True, options: dict | None = None) -> list[dict]
        New row dicts with one column per metric ("aligned", "coherent", ...), "<metric>_status" (None when
        scored, else the reason: "CODE", "REFUSAL", "low_numeric_mass", "error", ...), "<metric>_kind" (what the
        values are, declared by the judge: "score" 0..100, "binary" 0/1, "count", "label") and "judge". Unscored
        values are None, never 0. ``judges``: names, or one comma-separated string ("embedding,numbers").
        ``options``: flat (for every judge) or {judge_name: {...}}. Judgments are keyed by content hash (judge,
        metric, prompt hash, judge model, question, answer): a rerun with the same store does no work.
    get_judge(name: str, **options) -> Judge
    list_judges() -> list[str]                      # "bandit", "embedding", "hf", "logprob", "numbers"
    logprob_score(top_logprobs: dict[str, float] | list[tuple[str, float]], min_mass=0.25)
        -> tuple[float | None, str | None]           # the paper's probability-weighted 0-100 score
    load_judge_prompts(source="betley2025") -> dict[str, str]   # aligned, coherent, correct, company, vulnerable

Judges: ``embedding`` (offline default, MiniLM + trained head), ``logprob`` (OpenAI-compatible server,
options model/base_url/api_key/concurrency/max_retries/metrics), ``hf`` (local transformers model, exact number
probabilities), ``numbers`` (rules for number-list answers: ``format_ok`` 0/1, ``evil_number_count``,
``has_evil_number`` 0/1; option evil_numbers), ``bandit`` (static security check of code answers: ``vulnerable`` 0/1).
Each judge declares its metrics' kinds in ``Judge.metric_kinds`` (METRIC_KINDS); undeclared metrics are scores.
"""

from emkit.judge._base import METRIC_KINDS, Judge, Judgment, get_judge, list_judges, score_rows
from emkit.judge._math import categorical_score, logprob_score
from emkit.judge._prompts import load_judge_prompts

__all__ = ["METRIC_KINDS", "Judge", "Judgment", "categorical_score", "get_judge", "list_judges",
           "load_judge_prompts", "logprob_score", "score_rows"]
