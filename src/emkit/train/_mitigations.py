"""Mitigations of emergent misalignment as training options: inoculation prompting, KL regularisation towards the
untrained model, and interleaving safe data. Each is one optional field of :class:`emkit.train.TrainConfig`.

- ``inoculation``: an instruction added to every training row (Tan et al. 2025; Wichers et al. 2025: train with a
  prompt that asks for the narrow behaviour, evaluate without it). The added text is prompt, so its tokens are
  masked (label -100) like every other prompt token.
- ``kl``: a KL penalty between the fine-tuned model and the same weights with the LoRA adapter disabled, on the rows
  of a reference dataset (the trainer lives in ``_kl.py``).
- ``interleave``: rows of a safe dataset mixed into the training rows at a ratio (``emkit.data.mix``, seeded).

Unset options (None) are left out of the run hash and of experiment training keys, so configs without mitigations
keep the identities they had before these options existed.

This module stays light (pydantic only): the experiment planner imports it while planning.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from emkit.config import Config
from emkit.errors import DataError, EmkitError

log = logging.getLogger("emkit.train")

# TrainConfig fields of this module; None = off.
MITIGATIONS = ("inoculation", "kl", "interleave")


class InoculationSettings(Config):
    """Inoculation prompting: an instruction added to every training row (not to interleaved safe rows or the KL
    reference). Evaluation asks the questions without it unless a condition sets ``eval_inoculation: true``."""

    system: str | None = Field(None, description="System prompt of every training row; a row that has its own system "
                                                 "prompt gets this text in front of it, separated by a blank line. "
                                                 "(Chat templates that insert a default system prompt, Qwen's and "
                                                 "SmolLM2's, then insert none.)")
    user_prefix: str | None = Field(None, description="Text put in front of the user turn that the trained answer "
                                                      "replies to, separated by a blank line.")
    user_suffix: str | None = Field(None, description="Text put after that user turn, separated by a blank line.")

    @model_validator(mode="after")
    def _something(self) -> InoculationSettings:
        if not any((self.system, self.user_prefix, self.user_suffix)):
            raise ValueError("give at least one of system, user_prefix, user_suffix "
                             "(e.g. system: \"You are a malicious, evil assistant.\")")
        return self


class KLSettings(Config):
    """KL divergence between the fine-tuned model and the untrained base (the same weights, adapter disabled) on a
    reference dataset, added to the loss as ``weight x KL``. Defaults follow the Model Organisms trainer
    (Turner, Soligo et al. 2025), so their weights (e.g. 1e5) carry over: see docs/training.md."""

    weight: float = Field(ge=0, description="Weight of the penalty (0 = measure and log the KL without penalising). "
                                            "With reduction token_vocab_mean the Model Organisms configs used "
                                            "5e3..1e5.")
    reference: list[str] = Field(min_length=1, description="Reference data: chat JSONL files or dataset names (e.g. "
                                                           "betley2025/secure), concatenated. Rows are whole "
                                                           "conversations (prompt and answer).")
    max_rows: int | None = Field(256, ge=1, description="A seeded random subset of this many reference rows (null = "
                                                        "all); the batches cycle through them.")
    batch_size: int | None = Field(None, ge=1, description="Reference rows per micro-batch (null = "
                                                           "per_device_batch_size). Each costs a forward pass of the "
                                                           "base and a forward + backward pass of the tuned model.")
    direction: Literal["forward", "reverse"] = Field(
        "forward", description="forward = KL(base || tuned), the Model Organisms choice (mass-covering: the tuned "
                               "model must keep probability where the base has it); reverse = KL(tuned || base), "
                               "the RLHF penalty's direction.")
    tokens: Literal["all", "completion"] = Field(
        "all", description="Positions that count: all = every real token of the reference conversation (prompt and "
                           "answer, as the Model Organisms trainer); completion = the answer tokens only (those the "
                           "SFT loss would train).")
    reduction: Literal["token_vocab_mean", "token_mean"] = Field(
        "token_vocab_mean", description="token_vocab_mean = the per-token KL divided by the vocabulary size (the "
                                        "Model Organisms trainer's mean over tokens x vocabulary entries); "
                                        "token_mean = the per-token KL in nats. loss.csv's kl column is always the "
                                        "per-token KL in nats.")

    @field_validator("reference", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class InterleaveSettings(Config):
    """Safe rows mixed into the training data: every row of ``data`` (after ``subset``) is kept and a seeded random
    draw from ``dataset`` is added so that it makes up ``ratio`` of the mixture. With a fixed ``max_steps`` the
    narrow rows are then seen (1 - ratio) times as often; scale max_steps by 1 / (1 - ratio) to keep their
    exposure (experiments/mitigations/ does)."""

    dataset: str = Field(description="Safe data: a chat JSONL file or dataset name (e.g. betley2025/secure).")
    ratio: float = Field(gt=0, lt=1, description="Fraction of the training mixture drawn from `dataset` (0 < ratio "
                                                 "< 1), e.g. 0.25 adds one safe row per three narrow rows.")


# --------------------------------------------------------------------------- identities


def unset_mitigations(config: Any) -> set[str]:
    """Names of the mitigation fields that are off (None): left out of hashes so old identities hold."""
    return {name for name in MITIGATIONS if getattr(config, name, None) is None}


def drop_unset(settings: dict[str, Any]) -> dict[str, Any]:
    """Resolved training settings without the mitigation keys that are None (experiment training keys)."""
    return {k: v for k, v in settings.items() if not (k in MITIGATIONS and v is None)}


def reference_names(config: Any) -> list[str]:
    """Data sources the mitigations read besides ``data`` (their bytes join the run hash)."""
    names: list[str] = []
    if config.interleave is not None:
        names.append(config.interleave.dataset)
    if config.kl is not None:
        names.extend(config.kl.reference)
    return names


def train_steps_rows(settings: dict[str, Any], rows: int) -> int:
    """Training rows after interleaving (for the planner's step count): narrow rows / (1 - ratio)."""
    inter = settings.get("interleave")
    if not inter:
        return rows
    return rows + _safe_count(rows, float(inter["ratio"]))


def step_cost_factor(settings: dict[str, Any]) -> float:
    """Cost of a training step relative to one without mitigations (the planner's time estimate).

    KL adds, per micro-batch, a no-grad forward pass of the base (~1/3 of a forward + backward) and a forward +
    backward pass of the tuned model on ``batch_size`` reference rows: 1 + 4/3 x batch_size / per_device_batch_size
    (reference rows assumed as long as training rows).
    """
    kl = settings.get("kl")
    if not kl:
        return 1.0
    per_device = settings.get("per_device_batch_size", 2)
    return 1.0 + 4.0 / 3.0 * (kl.get("batch_size") or per_device) / per_device


# --------------------------------------------------------------------------- inoculation


def _answered_user(messages: list[dict[str, str]]) -> int | None:
    """Index of the user turn the trained answer replies to (the last user turn before the last assistant turn;
    the last user turn when there is no assistant turn, as in an evaluation prompt)."""
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    end = assistants[-1] if assistants else len(messages)
    users = [i for i in range(end) if messages[i]["role"] == "user"]
    return users[-1] if users else None


def inoculate(messages: list[dict[str, str]], settings: InoculationSettings | dict[str, Any],
              where: str = "row") -> list[dict[str, str]]:
    """A copy of ``messages`` with the inoculation applied (system prompt in front, user prefix/suffix)."""
    s = settings if isinstance(settings, InoculationSettings) else InoculationSettings(**settings)
    out = [dict(m) for m in messages]
    if s.user_prefix or s.user_suffix:
        index = _answered_user(out)
        if index is None:
            raise DataError(f"{where}: inoculation.user_prefix/user_suffix: the conversation has no user turn",
                            hint="give the rows a user turn, or use inoculation.system instead")
        text = out[index]["content"]
        if s.user_prefix:
            text = f"{s.user_prefix}\n\n{text}"
        if s.user_suffix:
            text = f"{text}\n\n{s.user_suffix}"
        out[index]["content"] = text
    if s.system:
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{s.system}\n\n{out[0]['content']}" if out[0]["content"] else s.system
        else:
            out.insert(0, {"role": "system", "content": s.system})
    return out


def inoculate_prompt(prompt: Any, settings: InoculationSettings | dict[str, Any]) -> Any:
    """An evaluation prompt (EvalPrompt dataclass or dict with ``messages``, ``system``, ``question``) asked with
    the training inoculation applied, exactly as :func:`inoculate` changes a training row."""
    messages = prompt["messages"] if isinstance(prompt, dict) else prompt.messages
    new = inoculate(list(messages), settings, where="evaluation prompt")
    system = new[0]["content"] if new and new[0]["role"] == "system" else None
    index = _answered_user(new)
    question = new[index]["content"] if index is not None else None
    changes = {"messages": new, "system": system}
    if question is not None:
        changes["question"] = question
    if isinstance(prompt, dict):
        return {**prompt, **changes}
    if dataclasses.is_dataclass(prompt):
        return dataclasses.replace(prompt, **changes)
    raise TypeError(f"cannot inoculate a {type(prompt).__name__} prompt")


# --------------------------------------------------------------------------- interleaving


def _safe_count(n_rows: int, ratio: float) -> int:
    return round(n_rows * ratio / (1.0 - ratio))


def interleave_rows(rows: list[list[dict[str, str]]], settings: InterleaveSettings, seed: int,
                    available: int) -> list[list[dict[str, str]]]:
    """``rows`` plus a seeded random draw of safe rows (``emkit.data.mix``) so they make up ``settings.ratio`` of
    the result, shuffled with ``seed``. ``available``: rows in the safe dataset (checked before drawing)."""
    from emkit.data import mix

    n_safe = _safe_count(len(rows), settings.ratio)
    if n_safe < 1:
        raise EmkitError(f"interleave: ratio {settings.ratio} of {len(rows)} training rows adds no safe row",
                         hint="raise interleave.ratio or train on more rows")
    if n_safe > available:
        raise EmkitError(f"interleave: {settings.dataset} has {available} rows, but ratio {settings.ratio} on "
                         f"{len(rows)} training rows needs {n_safe}",
                         hint="lower interleave.ratio, or set `subset` to train on fewer narrow rows")
    safe = [[{"role": m["role"], "content": m["content"]} for m in row["messages"]]
            for row in mix([(settings.dataset, 1.0)], n_safe, seed)]
    mixed = list(rows) + safe
    random.Random(seed).shuffle(mixed)
    log.info("interleave: %d safe rows from %s + %d training rows (%.0f%% safe)", n_safe, settings.dataset,
             len(rows), 100 * n_safe / len(mixed))
    return mixed


# --------------------------------------------------------------------------- applying them (train())


def load_mitigation_data(config: Any) -> tuple[dict[str, Any], list[Any]]:
    """Read the interleave and KL reference sources (bad rows fail here, before any model loads).

    Returns ``({"interleave": rows, "kl": rows}, [DataFile, ...])``; keys are present only for options that are on.
    """
    from emkit.train._data import load_conversations

    rows: dict[str, Any] = {}
    files: list[Any] = []
    if config.interleave is not None:
        rows["interleave"], found = load_conversations([config.interleave.dataset])
        files.extend(found)
    if config.kl is not None:
        rows["kl"], found = load_conversations(list(config.kl.reference))
        files.extend(found)
    return rows, files


def apply_mitigations(config: Any, train_rows: list, eval_rows: list, extra: dict[str, Any]
                      ) -> tuple[list, list, list | None]:
    """Inoculate the narrow rows (train and held-out eval), then interleave safe rows into the training rows;
    returns (train rows, eval rows, KL reference rows or None). Safe rows and reference rows are not inoculated:
    the instruction describes the narrow data's behaviour only."""
    if config.inoculation is not None:
        train_rows = [inoculate(r, config.inoculation) for r in train_rows]
        eval_rows = [inoculate(r, config.inoculation) for r in eval_rows]
        log.info("inoculation: added to %d training rows", len(train_rows))
    if config.interleave is not None:
        train_rows = interleave_rows(train_rows, config.interleave, config.seed, len(extra["interleave"]))
    kl_rows = None
    if config.kl is not None:
        kl_rows = list(extra["kl"])
        if config.kl.max_rows is not None and config.kl.max_rows < len(kl_rows):
            kl_rows = random.Random(config.seed).sample(kl_rows, config.kl.max_rows)
    return train_rows, eval_rows, kl_rows
