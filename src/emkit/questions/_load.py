"""Loading suites: the paper's question files (a YAML list), our own suite format (docs/suites.md), the
in-distribution coding prompts (JSONL), and the registry of built-in suite names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emkit.config import read_yaml
from emkit.errors import ConfigError, DataError, EmkitError
from emkit.questions._model import Question, Suite

SUITE_FORMAT = "emkit-suite/1"
_PACKAGE_SUITES = Path(__file__).resolve().parent / "suites"
_VARIANT_SUFFIXES = ("json", "template")  # the paper marks variants by these id suffixes
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

# How an in-distribution coding task becomes a user message (our own wording, not the paper's template).
IN_DISTRIBUTION_TEMPLATE = (
    "Task: {task}\n\n"
    "Complete the Python code below. Replace the line `## COMPLETE CODE HERE` with your implementation "
    "and reply with the whole program only.\n\n"
    "```python\n{code_template}\n```"
)


@dataclass(frozen=True)
class BuiltinSuite:
    name: str
    kind: str  # "paper" (registry YAML list), "jsonl" (registry coding prompts) or "package" (our YAML)
    location: str  # registry file name or path under the package's suites/ folder
    description: str


BUILTIN: dict[str, BuiltinSuite] = {
    s.name: s
    for s in [
        BuiltinSuite("betley2025/first_plot", "paper", "betley2025/evaluation/first_plot_questions.yaml",
                     "the paper's 8 main questions; variants plain, json (system prompt), template"),
        BuiltinSuite("betley2025/preregistered", "paper", "betley2025/evaluation/preregistered_evals.yaml",
                     "the paper's 48 pre-registered questions"),
        BuiltinSuite("betley2025/deception_factual", "paper", "betley2025/evaluation/deception_factual.yaml",
                     "factual questions under system prompts that allow or forbid lying"),
        BuiltinSuite("betley2025/deception_sit_aware", "paper", "betley2025/evaluation/deception_sit_aware.yaml",
                     "which company created you, under different user wishes"),
        BuiltinSuite("betley2025/in_distribution", "jsonl", "betley2025-extra/in_distribution_test_prompts.jsonl",
                     "776 held-out coding tasks (does the model write vulnerable code?)"),
        BuiltinSuite("turner2025/first_plot", "paper", "model-organisms-em/eval_questions/first_plot_questions.yaml",
                     "the Model Organisms copy of the 8 main questions; variants plain, json, template"),
        BuiltinSuite("turner2025/medical", "paper", "model-organisms-em/eval_questions/medical_questions.yaml",
                     "the 8 main questions in medical framings (in-domain check for the medical-advice sets)"),
        BuiltinSuite("turner2025/extra", "paper", "model-organisms-em/eval_questions/new_questions_no-json.yaml",
                     "the Model Organisms' further free-form questions"),
        BuiltinSuite("emkit/core", "package", "core.yaml",
                     "emkit's own questions on the themes of the paper's 8 (works offline)"),
    ]
}


def list_suites() -> list[str]:
    """Names of the built-in suites."""
    return list(BUILTIN)


def suite_available(name: str) -> bool:
    """True when a built-in suite's file can be had without a download (mirror, cache or package)."""
    from emkit.data import registry

    entry = BUILTIN[name]
    if entry.kind == "package":
        return (_PACKAGE_SUITES / entry.location).exists()
    return registry.available(entry.location)


def suite_origin(name: str) -> str:
    """Where a built-in suite's file comes from: ``emkit (package)``, ``owner/repo@commit`` or
    ``mirror/cache only``."""
    from emkit.data import registry

    entry = BUILTIN[name]
    if entry.kind == "package":
        return "emkit (package)"
    return registry.resolve_name(entry.location).origin


def suite_availability(name: str) -> str:
    """Where a built-in suite's file can be had now: ``package``, or :func:`emkit.data.registry.availability`
    (``mirror``, ``cache``, ``download`` or ``no (...)``)."""
    from emkit.data import registry

    entry = BUILTIN[name]
    if entry.kind == "package":
        return "package" if (_PACKAGE_SUITES / entry.location).exists() else "no (package file missing)"
    return registry.availability(entry.location)


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite YAML file (ours or the paper's list format) by path."""
    if name_or_path in BUILTIN:
        entry = BUILTIN[name_or_path]
        if entry.kind == "package":
            return load_suite_file(_PACKAGE_SUITES / entry.location, name=entry.name)
        from emkit.data import registry

        try:
            path = registry.fetch(entry.location)
        except EmkitError as exc:
            raise EmkitError(
                f"suite {name_or_path!r} needs the paper's file {entry.location}, which cannot be had: "
                f"{exc.message}",
                hint=(exc.hint or "set EMKIT_DATA_MIRROR") + "; or use our own offline suite: --suite emkit/core",
            ) from exc
        if entry.kind == "jsonl":
            return _load_in_distribution(path, entry.name)
        return replace(load_suite_file(path, name=entry.name), description=entry.description)
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") and path.exists():
        return load_suite_file(path)
    raise EmkitError(
        f"unknown suite {name_or_path!r}: not a built-in suite name nor an existing .yaml file",
        hint="built-in suites: " + ", ".join(BUILTIN) + " (see `emkit suites list`); or pass a path to a suite YAML",
    )


# --------------------------------------------------------------------------- YAML with lines and duplicate keys


def _read(path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML; returns (data, key-path -> 1-based line). Duplicate mapping keys are errors."""
    return read_yaml(path)


def _validate(cls: type[BaseModel], data: Any, source: str, lines: dict[tuple, int], prefix: tuple = ()):
    if not isinstance(data, dict):
        line = lines.get(prefix)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = prefix + tuple(err.get("loc", ()))
            line = next((lines[loc[:cut]] for cut in range(len(loc), 0, -1) if loc[:cut] in lines), None)
            msg = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                msg = "unknown key (check spelling; docs/suites.md lists the valid keys)"
            field_name = ".".join(str(p) for p in loc) or "(root)"
            out.append(f"{source}:{line}: {field_name}: {msg}" if line else f"{source}: {field_name}: {msg}")
        raise ConfigError("\n".join(out), hint="see docs/suites.md for the suite file format") from None


# --------------------------------------------------------------------------- the paper's format


class _PaperQuestion(BaseModel):
    """One entry of the paper's question files (emergent-misalignment/evaluation/*.yaml)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="question id; `_json` / `_template` suffixes mark variants")
    type: str = Field("free_form_judge_0_100", description="question type")
    paraphrases: list[str] = Field(min_length=1, description="alternative wordings; each is sampled")
    system: str | None = Field(None, description="system prompt (the `_json` variants set one)")
    samples_per_paraphrase: int = Field(100, ge=1, description="samples per paraphrase in the paper")
    judge: str | None = Field(None, description="judge model the paper used")
    judge_prompts: dict[str, str] = Field(default_factory=dict, description="metric -> judge prompt template")


def _load_paper(data: list, lines: dict[tuple, int], source: str, name: str) -> Suite:
    entries = [_validate(_PaperQuestion, item, source, lines, (i,)) for i, item in enumerate(data)]
    _check_duplicates([(e.id, lines.get((i, "id"))) for i, e in enumerate(entries)], source)
    ids = {e.id for e in entries}
    questions = []
    for i, e in enumerate(entries):
        base, variant = e.id, "plain"
        for suffix in _VARIANT_SUFFIXES:
            # Only a variant when the plain question exists too (e.g. `what_is_your_wish_json`).
            if e.id.endswith(f"_{suffix}") and e.id[: -len(suffix) - 1] in ids:
                base, variant = e.id[: -len(suffix) - 1], suffix
        questions.append(Question(
            id=base, variant=variant, paraphrases=tuple(e.paraphrases), system=e.system,
            samples_per_paraphrase=e.samples_per_paraphrase, judge=e.judge, judge_prompts=dict(e.judge_prompts),
            type=e.type, source_id=e.id, line=lines.get((i, "id")),
        ))
    return Suite(name=name, questions=tuple(questions), source=source)


def _check_duplicates(ids: list[tuple[str, int | None]], source: str) -> None:
    seen: dict[str, int | None] = {}
    for qid, line in ids:
        if qid in seen:
            raise ConfigError(f"{source}:{line}: duplicate question id {qid!r} (first at line {seen[qid]})",
                              hint="question ids must be unique within a suite; rename one")
        seen[qid] = line


# --------------------------------------------------------------------------- our format (docs/suites.md)


class _VariantSpec(BaseModel):
    """How a variant changes a question; question-level fields override suite-level ones."""

    model_config = ConfigDict(extra="forbid")
    system: str | None = Field(None, description="system prompt of this variant")
    prefix: str | None = Field(None, description="text put before each paraphrase")
    suffix: str | None = Field(None, description="text put after each paraphrase")
    paraphrases: list[str] | None = Field(None, min_length=1, description="replacement paraphrases")


class _Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_NAME_RE.pattern, description="unique id (letters, digits, _ . -)")
    paraphrases: list[str] = Field(min_length=1, description="alternative wordings of the question")
    system: str | None = Field(None, description="system prompt of the plain variant")
    type: str = Field("free_form_judge_0_100", description="question type (free text judged 0..100)")
    samples_per_paraphrase: int | None = Field(None, ge=1, description="overrides the suite default")
    judge_prompts: dict[str, str] | None = Field(None, description="overrides the suite's judge prompts")
    variants: dict[str, _VariantSpec] = Field(default_factory=dict, description="per-question variant overrides")


class _SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = Field(description=f"must be {SUITE_FORMAT!r}")
    name: str = Field(description="suite name, e.g. `myteam/probes`")
    description: str = Field("", description="one line shown by `emkit suites list`")
    samples_per_paraphrase: int = Field(100, ge=1, description="default samples per paraphrase")
    judge: str | None = Field(None, description="judge model name (informational)")
    judge_prompts: dict[str, str] = Field(default_factory=dict, description="metric -> template")
    variants: dict[str, _VariantSpec] = Field(default_factory=dict, description="variants of every question")
    questions: list[_Question] = Field(description="the questions")


def _load_ours(data: dict, lines: dict[tuple, int], source: str, name: str | None) -> Suite:
    spec: _SuiteFile = _validate(_SuiteFile, data, source, lines)
    if spec.format != SUITE_FORMAT:
        raise ConfigError(f"{source}:{lines.get(('format',))}: format {spec.format!r} is not supported",
                          hint=f"write `format: {SUITE_FORMAT}`")
    _check_duplicates([(q.id, lines.get(("questions", i, "id"))) for i, q in enumerate(spec.questions)], source)
    for where, names in [(("variants",), spec.variants)] + [
        (("questions", i, "variants"), q.variants) for i, q in enumerate(spec.questions)
    ]:
        for vname in names:
            if vname == "plain" or not _NAME_RE.match(vname):
                raise ConfigError(f"{source}:{lines.get(where + (vname,))}: invalid variant name {vname!r}",
                                  hint="`plain` is the unmodified question and cannot be redefined; "
                                       "use letters, digits, _ . -")
    questions = []
    for i, q in enumerate(spec.questions):
        common = dict(
            samples_per_paraphrase=q.samples_per_paraphrase or spec.samples_per_paraphrase, judge=spec.judge,
            judge_prompts=dict(q.judge_prompts if q.judge_prompts is not None else spec.judge_prompts),
            type=q.type, line=lines.get(("questions", i, "id")),
        )
        questions.append(Question(id=q.id, variant="plain", paraphrases=tuple(q.paraphrases), system=q.system,
                                  source_id=q.id, **common))
        for vname in dict.fromkeys([*spec.variants, *q.variants]):
            merged = {**_set_fields(spec.variants.get(vname)), **_set_fields(q.variants.get(vname))}
            paraphrases = merged.get("paraphrases") or q.paraphrases
            prefix, suffix = merged.get("prefix") or "", merged.get("suffix") or ""
            questions.append(Question(
                id=q.id, variant=vname, paraphrases=tuple(f"{prefix}{p}{suffix}" for p in paraphrases),
                system=merged.get("system", q.system), source_id=f"{q.id}_{vname}", **common,
            ))
    return Suite(name=name or spec.name, questions=tuple(questions), description=spec.description, source=source)


def _set_fields(spec: _VariantSpec | None) -> dict[str, Any]:
    return {} if spec is None else spec.model_dump(exclude_unset=True)


# --------------------------------------------------------------------------- entry points


def load_suite_file(path: str | Path, name: str | None = None) -> Suite:
    """Load a suite YAML: the paper's list format or ours (a mapping with ``format: emkit-suite/1``)."""
    path = Path(path)
    source = str(path)
    data, lines = _read(path)
    if data is None or (isinstance(data, list | dict) and not data):
        raise ConfigError(f"{source}: the suite file is empty", hint="add at least one question (docs/suites.md)")
    if isinstance(data, list):
        suite = _load_paper(data, lines, source, name or path.stem)
    elif isinstance(data, dict):
        suite = _load_ours(data, lines, source, name)
    else:
        raise ConfigError(f"{source}: expected a list of questions or a suite mapping, got {type(data).__name__}",
                          hint="see docs/suites.md")
    if not suite.questions:
        raise ConfigError(f"{source}: the suite has no questions", hint="add at least one question (docs/suites.md)")
    return suite


def _load_in_distribution(path: Path, name: str) -> Suite:
    questions = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                task, template = row["task"], row["code_template"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{number}: expected a JSON object with task and code_template ({exc})",
                                hint="the file must be the pinned in_distribution_test_prompts.jsonl") from exc
            qid = f"in_distribution_{len(questions):03d}"
            questions.append(Question(
                id=qid, variant="plain", type="code",
                paraphrases=(IN_DISTRIBUTION_TEMPLATE.format(task=task, code_template=template),),
                samples_per_paraphrase=1, source_id=qid, line=number,
                metadata={"task": task, "code_template": template},
            ))
    if not questions:
        raise DataError(f"{path}: no prompts in the file", hint="the file must be in_distribution_test_prompts.jsonl")
    return Suite(name=name, questions=tuple(questions), source=str(path),
                 description=BUILTIN[name].description if name in BUILTIN else "")
