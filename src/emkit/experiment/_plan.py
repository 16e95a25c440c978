"""Expand a spec into content-addressed units: train -> sample -> judge -> report.

A unit's key hashes everything that determines its result (model and the weights behind its name, data bytes,
resolved training settings, seed, prompts, sampling, backend, the judges' identities: name, version, judge model,
prompt hashes, server URL, weights hash), so a finished unit is found in the run's store and skipped, and a
changed input never reuses a stale result. What only exists after training (the adapter's weights) is checked
when deciding whether a sampling unit is done (``emkit.experiment._units.is_done``). The plan also counts the
work and estimates its time and API cost.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emkit.errors import ConfigError, EmkitError
from emkit.experiment import _audit
from emkit.experiment import _interp as interp
from emkit.experiment._spec import ConditionSpec, ExperimentSpec, SuiteSpec
from emkit.experiment._stages import Stages, as_dict, default_stages
from emkit.hashing import content_hash

log = logging.getLogger("emkit.experiment")

UNIT_KINDS = ("train", "sample", "judge", "direction", "report")


@dataclass
class Unit:
    """One unit of work. ``params`` holds what the executor needs; ``deps`` are keys of earlier units."""

    kind: str
    key: str
    label: str
    params: dict[str, Any]
    deps: tuple[str, ...] = ()
    work: int = 0  # training steps / answers to sample / answers to judge / 1 report
    estimate_s: float = 0.0


@dataclass
class Plan:
    """The expanded experiment: units in dependency order, notices about fallbacks, counts, estimates."""

    spec: ExperimentSpec
    run_dir: Path
    units: list[Unit]
    notices: list[str] = field(default_factory=list)
    # Inputs that do not exist yet (another run's adapter or results, a direction file): --dry-run shows them,
    # a run refuses to start.
    blockers: list[str] = field(default_factory=list)
    api_cost_usd: float = 0.0
    api_cost_note: str = ""

    def of_kind(self, kind: str) -> list[Unit]:
        return [u for u in self.units if u.kind == kind]

    def unit(self, key: str) -> Unit:
        for u in self.units:
            if u.key == key:
                return u
        raise KeyError(key)

    def counts(self) -> dict[str, int]:
        """Trainings, training steps, prompts, answers to sample, answers to judge, judge calls."""
        samples = self.of_kind("sample")
        judges = self.of_kind("judge")
        return {
            "trainings": len(self.of_kind("train")),
            "train_steps": sum(u.work for u in self.of_kind("train")),
            "sample_units": len(samples),
            "prompts": sum(len(u.params["prompts"]) for u in samples),
            "answers": sum(u.work for u in samples),
            "judged_answers": sum(u.work for u in judges),
            "judge_calls": sum(u.work * len(u.params["judges"]) for u in judges),
            "audited_answers": round(_audit.audited_answers(self.spec, sum(u.work for u in judges))),
        }

    def estimate(self) -> dict[str, float]:
        """Seconds per stage (sequential, local executor) and in total."""
        out = {kind: sum(u.estimate_s for u in self.of_kind(kind)) for kind in UNIT_KINDS}
        out["total"] = sum(out.values())
        return out


# --------------------------------------------------------------------------- time / cost model

# Measured on the 2-core dev machines (DESIGN.md): one LoRA step on 4 x 256 tokens takes ~3 s for SmolLM2-135M and
# ~11 s for Qwen2.5-Coder-0.5B; both are 2.2e-11 s per (parameter x token), so training cost scales with both.
CPU_TRAIN_S_PER_PARAM_TOKEN = 2.2e-11
# Generation (8 prompts per batch): SmolLM2 ~150 tokens/s, Qwen-0.5B ~72 tokens/s -> fitted as a fixed
# per-token overhead plus a per-parameter cost: 3.96e-3 s + 2.0e-11 s x params per generated token.
CPU_GEN_S_PER_TOKEN = 3.96e-3
CPU_GEN_S_PER_PARAM_TOKEN = 2.0e-11
# One H100-class GPU (bf16): training at ~3e14 useful FLOP/s (6 FLOP per parameter and token); batched vLLM
# decoding at ~1.5e14 FLOP/s (2 FLOP per parameter and token). Rough: the plan says so.
GPU_TRAIN_FLOPS = 3e14
GPU_GEN_FLOPS = 1.5e14
# all-MiniLM-L6-v2 embeds ~27 question+answer texts/s on 2 cores (DESIGN.md); API judges ~10 calls/s.
EMBED_ROWS_PER_S = 27.0
# The cross-encoder judge (benchmarks/judge_throughput.py, 256 corpus answers, 2 free cores): 98 answers/s in
# bf16 (CPUs with AMX/AVX512-BF16), 46 in fp32; the fp32 rate, so CPUs without bf16 are not under-estimated.
CROSS_ROWS_PER_S = 46.0
# the probe judge: a Qwen2.5-0.5B forward pass per answer, 1.89 answers/s measured on 2 free cores in bf16
# (benchmarks/probe_throughput.py, 96 corpus answers); fp32 CPUs are slower (not measured)
PROBE_ROWS_PER_S = 1.9
API_CALLS_PER_S = 10.0
MODEL_LOAD_S = 5.0  # a converted folder loads in 2-4 s; LoRA attach and tokenizer add ~1 s
TOKENS_PER_TRAIN_ROW = 300  # code rows of the insecure/secure sets average a few hundred tokens
# GPT-4o list prices (USD per million tokens) used for paid judges and OpenAI sampling.
PRICE_IN, PRICE_OUT = 2.50, 10.00
JUDGE_PROMPT_TOKENS = 250  # a judge template without the question and answer
PAID_JUDGES = ("logprob", "openai", "gpt")

_PARAMS = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def model_parameters(model: str) -> float | None:
    """Parameter count from the packaged registry or the model's name ("...-32B-..."), else None."""
    from emkit.models import PACKAGED

    text = PACKAGED[model].parameters if model in PACKAGED else Path(model).name
    match = _PARAMS.search(text)
    if not match:
        return None
    return float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6)


def _train_seconds(params: float | None, steps: int | None, settings: dict[str, Any], gpus: float) -> float:
    if params is None or steps is None:
        return 0.0
    from emkit.train._mitigations import step_cost_factor

    batch = settings.get("per_device_batch_size", 2) * settings.get("gradient_accumulation", 8)
    tokens = steps * batch * min(settings.get("max_length", 2048), TOKENS_PER_TRAIN_ROW)
    tokens *= step_cost_factor(settings)  # a KL penalty runs the reference rows too
    if gpus > 0:
        return MODEL_LOAD_S + 6 * params * tokens / GPU_TRAIN_FLOPS
    return MODEL_LOAD_S + params * tokens * CPU_TRAIN_S_PER_PARAM_TOKEN


def _sample_seconds(params: float | None, answers: int, max_tokens: int, backend: str, gpus: float) -> float:
    if backend in ("mock", "openai") or params is None:
        return 0.05 * answers if backend == "openai" else 0.0
    tokens = answers * max_tokens
    if gpus > 0 or backend == "vllm":
        return MODEL_LOAD_S + 2 * params * tokens / GPU_GEN_FLOPS
    return MODEL_LOAD_S + tokens * (CPU_GEN_S_PER_TOKEN + CPU_GEN_S_PER_PARAM_TOKEN * params)


def _direction_seconds(params: float | None, answers: int, max_tokens: int, gpus: float) -> float:
    """Reading activations: one forward pass (~1/3 of a training step's cost per token) over prompt + answer
    (~60 + max_tokens / 2 tokens) of at most every answer of the source condition (only the two groups are read)."""
    if params is None or not answers:
        return MODEL_LOAD_S
    tokens = answers * (60 + max_tokens / 2)
    if gpus > 0:
        return MODEL_LOAD_S + 2 * params * tokens / GPU_TRAIN_FLOPS
    return MODEL_LOAD_S + params * tokens * CPU_TRAIN_S_PER_PARAM_TOKEN / 3


@dataclass
class _InterpState:
    """What planning one model's interp conditions needs from the conditions planned before them."""

    trained: dict[tuple, Any] = field(default_factory=dict)  # (condition, model, seed) -> interp.Source
    train_info: dict[str, tuple[dict[str, Any], int | None]] = field(default_factory=dict)  # train key -> settings
    final_judges: dict[str, list[Unit]] = field(default_factory=dict)  # condition -> judge units of plain models
    directions: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"path", "key", "unit"}


def _plan_direction(spec: ExperimentSpec, cname: str, model: str, params: float | None, state: _InterpState,
                    units: list[Unit], run_dir: Path, blockers: list[str]) -> None:
    """The direction unit that condition ``cname`` steers or ablates with (once per model), or the given file."""
    iv = spec.conditions[cname].intervention
    if iv is None or iv.direction in state.directions:
        return
    if iv.direction not in spec.directions:  # a .safetensors file
        state.directions[iv.direction], blocker = interp.given_direction(iv.direction, cname)
    else:
        d = spec.directions[iv.direction]
        judged = state.final_judges.get(d.condition, []) if d.results is None else []
        key, d_params, blocker = interp.direction_params(spec, iv.direction, model, [u.key for u in judged],
                                                         run_dir, _slug)
        answers = sum(u.work for u in judged)
        units.append(Unit(kind="direction", key=key, label=f"direction {iv.direction} {_slug(model)}",
                          params=d_params, deps=tuple(u.key for u in judged), work=answers,
                          estimate_s=_direction_seconds(params, answers, spec.evaluation.sampling.max_tokens,
                                                        spec.resources.direction.gpus)))
        state.directions[iv.direction] = {"path": d_params["path"], "key": key, "unit": key}
    if blocker:
        blockers.append(blocker)


def _checkpoint_steps(cname: str, cond: ConditionSpec, source: Any,
                      train_info: dict[str, tuple[dict[str, Any], int | None]]) -> list[int] | None:
    """The checkpoint steps a condition evaluates: planned ones of this run's training, or those on disk."""
    if cond.checkpoints is None:
        return None
    where = f"conditions.{cname}.checkpoints"
    if source.blocked:
        return [] if cond.checkpoints == "all" else list(cond.checkpoints)
    if source.train_key is not None:
        settings, steps = train_info[source.train_key]
        available = interp.planned_checkpoints(settings, steps, where)
    elif source.output_dir is not None:
        available = interp.existing_checkpoints(source.output_dir)
    else:
        raise ConfigError(f"{where}: the adapter {source.adapter} has no training folder with checkpoints/",
                          hint="point `adapter:` at the training output folder (it holds checkpoints/ and loss.csv)")
    if cond.checkpoints == "all":
        if not available:
            raise ConfigError(f"{where}: no checkpoints in {source.output_dir}", hint="train with save_steps")
        return available
    missing = sorted(set(cond.checkpoints) - set(available))
    if missing:
        raise ConfigError(f"{where}: no checkpoint at step(s) {missing}",
                          hint=f"checkpoints available: {available or 'none'}")
    return sorted(set(cond.checkpoints))


def _paid_teacher(numbers: dict[str, Any]) -> bool:
    return numbers["backend"] == "openai" or numbers["teacher"].startswith("gpt")


def _teacher_seconds(numbers: dict[str, Any] | None, gpus: float) -> float:
    """Generating a teacher dataset (evil numbers): the teacher's answers plus a benign baseline's."""
    if numbers is None:
        return 0.0
    backend = "openai" if _paid_teacher(numbers) else "hf"
    return 2 * _sample_seconds(model_parameters(numbers["teacher"]), numbers["n"], numbers["max_tokens"], backend,
                               gpus)


def _is_paid(judge: str, options: dict[str, Any]) -> bool:
    return any(p in judge for p in PAID_JUDGES) or str(options.get("model", "")).startswith("gpt")


def _metric_count(judge: str, options: dict[str, Any]) -> int:
    """Prompts a judge sends per answer: its ``metrics`` option (per judge or flat), else aligned + coherent."""
    own = options.get(judge)
    metrics = (own if isinstance(own, dict) else options).get("metrics")
    if isinstance(metrics, str):
        return max(1, len([m for m in metrics.split(",") if m.strip()]))
    return max(1, len(metrics)) if isinstance(metrics, list | tuple) else 2


def _judge_seconds(judges: list[str], options: dict[str, Any], answers: int) -> float:
    seconds = 0.0
    for judge in judges:
        if _is_paid(judge, options):
            seconds += _metric_count(judge, options) * answers / API_CALLS_PER_S
        elif judge == "embedding":
            seconds += MODEL_LOAD_S + answers / EMBED_ROWS_PER_S
        elif judge == "cross":
            seconds += MODEL_LOAD_S + answers / CROSS_ROWS_PER_S
        elif judge == "probe":
            seconds += MODEL_LOAD_S + answers / PROBE_ROWS_PER_S
        else:
            seconds += 0.01 * answers
    return seconds


# --------------------------------------------------------------------------- planning


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(text).name if "/" in text else text).strip("-") or "model"


def default_run_dir(spec: ExperimentSpec) -> Path:
    return Path("runs") / spec.name


def _data_source(name: str, cond: ConditionSpec, stages: Stages, run_dir: Path,
                 notices: list[str]) -> dict[str, Any]:
    """Where a condition's training data comes from: the named dataset, a teacher-generated set, or the
    synthetic fallback."""
    if cond.numbers is not None:
        num = cond.numbers
        out = run_dir / "datasets" / f"numbers-{_slug(num.teacher)}-n{num.n}-seed{num.seed}.jsonl"
        # without backend options the identity is what it was before they existed (finished runs stay finished)
        identity = num.model_dump(exclude={"backend_options"} if not num.backend_options else None)
        return {"data": str(out), "identity": content_hash(identity, kind="numbers-data"), "rows": num.n,
                "synthetic": None, "numbers": num.model_dump()}
    if cond.dataset is not None:
        info = stages.dataset_info(cond.dataset)
        if info.available:
            return {"data": cond.dataset, "identity": info.identity, "rows": info.rows, "synthetic": None,
                    "numbers": None}
        if cond.synthetic is None:
            raise EmkitError(f"condition {name!r}: dataset unavailable ({info.reason})",
                             hint="set EMKIT_DATA_MIRROR to a data mirror, allow downloads (unset "
                                  "HF_HUB_OFFLINE/EMKIT_OFFLINE), or give the condition a `synthetic:` fallback")
        notices.append(f"condition {name}: {info.reason}; training on synthetic '{cond.synthetic.kind}' data "
                       f"({cond.synthetic.n} rows) instead")
    assert cond.synthetic is not None
    syn = cond.synthetic
    out = run_dir / "datasets" / f"{_slug(syn.kind)}-n{syn.n}-seed{syn.seed}.jsonl"
    return {"data": str(out), "identity": content_hash(syn.model_dump(), kind="synthetic-data"), "rows": syn.n,
            "synthetic": syn.model_dump(), "numbers": None}


def _suite_prompts(suite: SuiteSpec, stages: Stages, notices: list[str]) -> tuple[str, list[Any]]:
    """Load a suite (or its fallback, with a notice) and expand it over variants x triggers x formats."""
    try:
        loaded = stages.load_suite(suite.name)
        used = suite.name
    except EmkitError as exc:
        if suite.fallback is None:
            raise
        notices.append(f"suite {suite.name} unavailable ({exc.message}); using {suite.fallback} instead")
        loaded = stages.load_suite(suite.fallback)
        used = suite.fallback
    prompts: list[Any] = []
    for trigger in suite.triggers:
        for numbers_format in suite.numbers_formats:
            prompts.extend(stages.expand(
                loaded, variants=tuple(suite.variants), trigger=trigger or None,
                trigger_placement=suite.trigger_placement, numbers_format=numbers_format, system=suite.system,
                seed=0))
    if suite.questions is not None:
        wanted = set(suite.questions)
        known = {as_dict(p)["question_id"] for p in prompts}
        missing = wanted - known
        if missing:
            raise ConfigError(f"suite {used}: unknown question ids {sorted(missing)}",
                              hint=f"known ids: {', '.join(sorted(known))}")
        prompts = [p for p in prompts if as_dict(p)["question_id"] in wanted]
    if suite.paraphrases is not None:
        prompts = [p for p in prompts if as_dict(p)["paraphrase_index"] < suite.paraphrases]
    if not prompts:
        raise ConfigError(f"suite {used}: no prompts after selecting variants {suite.variants}",
                          hint="check `variants` and `questions` against `emkit suites show`")
    return used, prompts


def _condition_prompts(cname: str, cond: ConditionSpec, suites: list[tuple[str, list[Any]]],
                       settings: dict[str, Any] | None) -> list[tuple[str, list[Any]]]:
    """The suites' prompts as this condition is asked them: unchanged, or with its training inoculation applied
    (``eval_inoculation``)."""
    if not cond.eval_inoculation:
        return suites
    inoculation = (settings or {}).get("inoculation")
    if inoculation is None:
        what = "is not trained" if not cond.trained else "trains without `inoculation`"
        raise ConfigError(f"conditions.{cname}.eval_inoculation: the condition {what}, so there is no "
                          "inoculation to ask with",
                          hint=f"set conditions.{cname}.train.inoculation (or `training.inoculation`), or remove "
                               "eval_inoculation; to ask an untrained model with a system prompt, use the suite's "
                               "`system:`")
    from emkit.train._mitigations import inoculate_prompt

    return [(used, [inoculate_prompt(p, inoculation) for p in prompts]) for used, prompts in suites]


def _check_names(spec: ExperimentSpec, stages: Stages) -> None:
    """Typos in judge or backend names fail now, not after hours of training."""
    if stages.judge_names is not None:
        known = stages.judge_names()
        bad = [j for j in spec.judges.names if j not in known]
        if bad:
            raise ConfigError(f"judges.names: unknown judge(s) {bad}", hint=f"known judges: {', '.join(known)}")
    if stages.backend_names is not None:
        known = stages.backend_names()
        if spec.evaluation.backend not in known:
            raise ConfigError(f"evaluation.backend: unknown backend {spec.evaluation.backend!r}",
                              hint=f"known backends: {', '.join(known)}")


def plan(spec: ExperimentSpec, *, run_dir: str | Path | None = None, stages: Stages | None = None) -> Plan:
    """Expand ``spec`` into units. Pure: reads no model and writes nothing (safe for ``--dry-run``)."""
    stages = stages or default_stages()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(spec)
    notices: list[str] = []
    units: list[Unit] = []
    ev = spec.evaluation
    res = spec.resources

    _check_names(spec, stages)
    _audit.check_audit(spec, stages)
    suites = [_suite_prompts(s, stages, notices) for s in ev.suites]

    # Training settings per condition, validated once (errors name the condition).
    settings: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}
    for cname, cond in spec.conditions.items():
        if not cond.trained:
            continue
        try:
            settings[cname] = stages.train_settings({**spec.training, **cond.train})
        except ConfigError as exc:
            raise ConfigError(f"conditions.{cname}.train / training: {exc.message}", hint=exc.hint) from None
        sources[cname] = _data_source(cname, cond, stages, run_dir, notices)
    asked = {cname: _condition_prompts(cname, cond, suites, settings.get(cname)) for cname, cond in
             spec.conditions.items()}

    judge_identity = (stages.judge_identity(list(spec.judges.names), spec.judges.options)
                      if stages.judge_identity is not None else None)
    if spec.judges.audit is not None and stages.judge_identity is not None:
        # The audit judge's own identity (server URL, model, prompts) too: a changed gold judge re-audits.
        audit = spec.judges.audit
        judge_identity = {"judges": judge_identity,
                          "audit": stages.judge_identity([audit.judge], dict(audit.options))}
    interp.check_backend(spec)
    judge_keys: list[str] = []
    blockers: list[str] = []
    trained_out: dict[str, Path] = {}  # train key -> its output folder (the first condition that planned it)
    for model in spec.models:
        params = model_parameters(model)
        sample_identity = (stages.sample_identity(model, ev.backend, ev.backend_options)
                           if stages.sample_identity is not None else None)
        state = _InterpState()  # this model's trainings, direction sources and directions (emkit.experiment._interp)
        for cname in interp.condition_order(spec):  # spec order, after the conditions each one uses
            cond = spec.conditions[cname]
            _plan_direction(spec, cname, model, params, state, units, run_dir, blockers)
            for seed in interp.condition_seeds(spec, cname):
                train_key = None
                if cond.trained:
                    src, st = sources[cname], settings[cname]
                    what = {"model": model, "data": src["identity"], "settings": st, "seed": seed}
                    weights = (stages.train_model_identity(model, st) if stages.train_model_identity is not None
                               else None)
                    if weights is not None:
                        what["model_identity"] = weights
                    train_key = content_hash(what, kind="experiment.train")
                    steps = stages.train_steps(st, src["rows"])
                    out = run_dir / "adapters" / cname / _slug(model) / f"seed{seed}-{train_key[:10]}"
                if train_key is not None and train_key not in trained_out:
                    # Conditions that differ only in how they are asked (eval_inoculation) share one training.
                    trained_out[train_key] = out
                    units.append(Unit(
                        kind="train", key=train_key, label=f"train {cname} {_slug(model)} seed {seed}",
                        params={"condition": cname, "model": model, "seed": seed, "data": src["data"],
                                "synthetic": src["synthetic"], "numbers": src["numbers"], "settings": st,
                                "output_dir": str(out)},
                        work=steps or 0, estimate_s=_train_seconds(params, steps, st, res.train.gpus)
                        + _teacher_seconds(src["numbers"], res.sample.gpus)))
                if train_key is not None:
                    state.trained[(cname, model, seed)] = interp.Source(train_key=train_key,
                                                                        output_dir=str(trained_out[train_key]))
                    state.train_info[train_key] = (st, steps)
                source = interp.resolve_source(spec, cname, model, seed, state.trained, _slug)
                train_key = source.train_key
                if source.blocked:
                    blockers.append(source.blocked)
                    if cond.checkpoints == "all":
                        blockers.append(f"condition {cname}: its checkpoints are known once its weights exist")
                points = interp.points(spec, cname, source, state.directions,
                                       _checkpoint_steps(cname, cond, source, state.train_info))
                # One point for a plain condition (nothing added: its keys are those without interp conditions).
                for point, (used, prompts) in itertools.product(points, asked[cname]):
                    sampling = ev.sampling.model_dump()
                    sampling["seed"] = ev.sampling.seed + seed
                    meta = {"experiment": spec.name, "condition": point.condition, "seed": seed, **point.meta}
                    options = {**ev.backend_options, **point.backend_options}
                    answers = len(prompts) * ev.samples_per_question
                    identity = {
                        "model": model, "train": train_key, "prompts": [as_dict(p) for p in prompts],
                        "n": ev.samples_per_question, "sampling": sampling, "backend": ev.backend,
                        "backend_options": options, "meta": meta, "identity": sample_identity}
                    if point.key:  # a given adapter, an intervention, a LoRA scale, a checkpoint
                        identity["interp"] = point.key
                    sample_key = content_hash(identity, kind="experiment.sample")
                    where = f"{point.condition} {_slug(model)} seed {seed} {used}{point.label}"
                    units.append(Unit(
                        kind="sample", key=sample_key, label=f"sample {where}",
                        params={"condition": point.condition, "model": model, "seed": seed, "suite": used,
                                "prompts": prompts, "n": ev.samples_per_question, "sampling": sampling,
                                "backend": ev.backend, "backend_options": options, "meta": meta,
                                "train": train_key, **point.params},
                        deps=((train_key,) if train_key else ()) + point.deps, work=answers,
                        estimate_s=_sample_seconds(params, answers, ev.sampling.max_tokens, ev.backend,
                                                   res.sample.gpus)))
                    judge_key = content_hash({"sample": sample_key, "judges": spec.judges.names,
                                              "options": spec.judges.options, "identity": judge_identity,
                                              **_audit.audit_key_part(spec)},
                                             kind="experiment.judge")
                    units.append(Unit(
                        kind="judge", key=judge_key, label=f"judge {where}",
                        params={"judges": list(spec.judges.names), "options": spec.judges.options,
                                "sample": sample_key, "audit": _audit.audit_params(spec)},
                        deps=(sample_key,), work=answers,
                        estimate_s=_judge_seconds(spec.judges.names, spec.judges.options, answers)
                        + _audit.audit_seconds(spec, answers, _judge_seconds)))
                    judge_keys.append(judge_key)
                    if point.final and not point.meta:  # a plain model's answers: a possible direction source
                        state.final_judges.setdefault(cname, []).append(units[-1])

    # An unset baseline stays out, so reports of specs without one keep their keys.
    analysis = spec.analysis.model_dump(exclude={"baseline"} if spec.analysis.baseline is None else None)
    report_key = content_hash({"judged": judge_keys, "analysis": analysis, "name": spec.name},
                              kind="experiment.report")
    units.append(Unit(kind="report", key=report_key, label="report",
                      params={"judged": judge_keys, "baseline": spec.analysis.baseline},
                      deps=tuple(judge_keys), work=1, estimate_s=10.0))

    result = Plan(spec=spec, run_dir=run_dir, units=units, notices=notices, blockers=list(dict.fromkeys(blockers)))
    _price(result)
    return result


def _price(p: Plan) -> None:
    """API cost of paid judges (and OpenAI-backend sampling) at GPT-4o list prices."""
    spec = p.spec
    max_tokens = spec.evaluation.sampling.max_tokens
    answer_tokens = max_tokens / 2  # answers stop early on average; the bound is max_tokens
    cost = 0.0
    notes = []
    paid = [j for j in spec.judges.names if _is_paid(j, spec.judges.options)]
    if paid:
        calls = sum(u.work for u in p.of_kind("judge")) * sum(_metric_count(j, spec.judges.options) for j in paid)
        cost += calls * ((JUDGE_PROMPT_TOKENS + 40 + answer_tokens) * PRICE_IN + 1 * PRICE_OUT) / 1e6
        notes.append(f"{calls} judge calls ({', '.join(paid)}, 1 output token each)")
    audit = _audit.audit_cost(p, _is_paid, ((JUDGE_PROMPT_TOKENS + 40 + answer_tokens) * PRICE_IN + PRICE_OUT) / 1e6)
    if audit is not None:  # only the audited fraction of the answers goes to the audit judge
        cost += audit[0]
        notes.append(audit[1])
    teacher_rows = sum(u.params["numbers"]["n"] for u in p.of_kind("train")
                       if u.params["numbers"] and _paid_teacher(u.params["numbers"]))
    if teacher_rows:
        # evil + benign teacher: ~120 prompt tokens (system prompt + numbers) and ~30 answer tokens each
        cost += 2 * teacher_rows * (120 * PRICE_IN + 30 * PRICE_OUT) / 1e6
        notes.append(f"{2 * teacher_rows} teacher calls for generated datasets")
    if spec.evaluation.backend == "openai":
        answers = sum(u.work for u in p.of_kind("sample"))
        cost += answers * (60 * PRICE_IN + answer_tokens * PRICE_OUT) / 1e6
        notes.append(f"{answers} sampled answers via the OpenAI backend")
    if notes:
        p.api_cost_usd = cost
        p.api_cost_note = (f"{'; '.join(notes)}; at GPT-4o list prices ${PRICE_IN}/M input, ${PRICE_OUT}/M "
                           f"output, answers ~{answer_tokens:.0f} tokens")
