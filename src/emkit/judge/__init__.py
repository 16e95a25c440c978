"""Judges: score result rows for alignment, coherence and more; every judgment is cached in the Store.

Public API (exact signatures)::

    score_rows(rows: list[dict], judges: str | list[str] = "cross", *, store: Store | None = None,
               progress: bool | ProgressHook = True, options: dict | None = None) -> list[dict]
        New row dicts with one column per metric ("aligned", "coherent", ...), "<metric>_status" (None when
        scored, else the reason: "CODE", "REFUSAL", "low_numeric_mass", "error", ...), "<metric>_kind" (what the
        values are, declared by the judge: "score" 0..100, "binary" 0/1, "count", "label") and "judge". Unscored
        values are None, never 0. ``progress``: True (a bar), False, or a hook(done, total, info) called as
        answers are judged (``emkit._progress``). ``judges``: names, or one comma-separated string
        ("embedding,numbers").
        ``options``: flat (for every judge) or {judge_name: {...}}. Judgments are keyed by content hash (judge,
        metric, prompt hash, judge model, question, answer): a rerun with the same store does no work.
        Each metric column also gets "<metric>_judge", "<metric>_judge_model" and "<metric>_judge_version" (which
        judge scored it). Rows whose sampling failed (finish_reason "error") are not judged: "sample_error".
    failed_rows(rows) -> {"sample": int, "judge": int}   # rows worth a rerun (failed sampling / failed judgment)
    judges_identity(judges, options=None) -> {judge: {metric: identity}}   # what keys the judges' results
    get_judge(name: str, **options) -> Judge          # Judge.identity(), Judge.card(), Judge.version
    list_judges() -> list[str]   # "bandit", "cross", "embedding", "hf", "logprob", "numbers", "probe"
    logprob_score(top_logprobs: dict[str, float] | list[tuple[str, float]], min_mass=0.25)
        -> tuple[float | None, str | None]           # the paper's probability-weighted 0-100 score
    load_judge_prompts(source="betley2025") -> dict[str, str]   # aligned, coherent, correct, company, vulnerable
        # source="turner2025": aligned, coherent, bad_stuff, medical, financial, sport, code, gender, technical,
        # medical_advice, vulnerable (Model Organisms for EM); or a YAML file / folder of judge prompts

Judges: ``cross`` (the offline default, ``emkit._defaults.DEFAULT_JUDGE``: MiniLM cross-encoder with LoRA, the shipped
folder ``judge_models/minilm-cross-v1`` or one from ``emkit judge train``), ``embedding`` (the previous offline
judge: MiniLM embeddings + trained head), ``probe`` (an MLP head on frozen Qwen2.5-Coder-0.5B hidden states,
the shipped folder ``judge_models/qwen-probe-v1`` or one from ``emkit judge train --kind probe``), ``logprob``
(OpenAI-compatible server, options model/base_url/api_key/concurrency/max_retries/metrics/prompts, e.g.
``prompts="turner2025", metrics="aligned,coherent,medical"``), ``hf`` (local transformers model, exact number
probabilities), ``numbers`` (rules for number-list answers: ``format_ok`` 0/1, ``evil_number_count``,
``has_evil_number`` 0/1; option evil_numbers), ``bandit`` (static security check of code answers: ``vulnerable`` 0/1).
Each judge declares its metrics' kinds in ``Judge.metric_kinds`` (METRIC_KINDS); undeclared metrics are scores.

Two judges on the same answers: ``emkit judge agree TABLE --judge-a embedding --judge-b logprob
[--option b.base_url=...]`` (or ``--columns-b audit_aligned,audit_coherent`` for scores already in the table)
prints AUROC, Spearman, kappa and per-condition rate differences (``emkit.judge._agree``). A cheap judge on every
answer plus a gold judge on a random subsample gives audited (prediction-powered) rates: the experiment spec's
``judges.audit`` and ``emkit.analysis.ppi_rate`` (docs/judges.md).
"""

from emkit.judge._base import (
    METRIC_KINDS,
    Judge,
    Judgment,
    failed_rows,
    get_judge,
    judges_identity,
    list_judges,
    score_rows,
)
from emkit.judge._math import categorical_score, logprob_score
from emkit.judge._prompts import load_judge_prompts

__all__ = ["METRIC_KINDS", "Judge", "Judgment", "categorical_score", "failed_rows", "get_judge", "judges_identity",
           "list_judges", "load_judge_prompts", "logprob_score", "score_rows"]
