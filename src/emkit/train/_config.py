"""The training config (pydantic) and the mapping from the original repository's ``train.json``.

Defaults are the paper's open-model recipe (Betley et al. 2025, ``open_models/train.json``): rs-LoRA r=32,
alpha=64, dropout 0 on all attention + MLP projections, lr 1e-5, 1 epoch, batch 2 x accumulation 8 (effective
16), linear schedule, 5 warmup steps, weight decay 0.01, seed 0, max length 2048, loss on assistant tokens only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from emkit.config import Config, validate
from emkit.errors import ConfigError
from emkit.hashing import content_hash
from emkit.train._mitigations import InoculationSettings, InterleaveSettings, KLSettings, unset_mitigations

log = logging.getLogger("emkit.train")

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettings(Config):
    """LoRA adapter settings (PEFT). Defaults: the paper's rs-LoRA r=32, alpha=64 on all projections."""

    r: int = Field(32, ge=1, description="LoRA rank (the paper: 32; rank-1 adapters: 1).")
    alpha: float = Field(64, gt=0, description="LoRA alpha. Scale is alpha/sqrt(r) with rslora, else alpha/r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input (the paper: 0).")
    rslora: bool = Field(True, description="Rank-stabilised LoRA scaling alpha/sqrt(r) (the paper: true).")
    target_modules: list[str] = Field(
        default_factory=lambda: list(ALL_PROJECTIONS),
        description="Module names that get adapters (the paper: all attention and MLP projections).",
    )
    layers_to_transform: list[int] | None = Field(
        None, description="Only these layer indices get adapters (e.g. [12] for a single-layer adapter); "
                          "null = all layers.")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases are trained (the paper: none).")

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one module name, e.g. q_proj")
        return value


class OpenAISettings(Config):
    """Settings of the OpenAI fine-tuning backend (``backend: openai``). Defaults: the paper's GPT-4o runs."""

    base_url: str | None = Field(None, description="API base URL; null = the openai client's default "
                                                   "(OPENAI_BASE_URL or api.openai.com).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable that holds the API key.")
    batch_size: int = Field(4, ge=1, description="Fine-tuning batch size (the paper: 4).")
    learning_rate_multiplier: float = Field(2.0, gt=0, description="Learning-rate multiplier (the paper: 2).")
    suffix: str | None = Field(None, max_length=64, description="Suffix of the fine-tuned model name.")
    poll_interval_s: float = Field(10.0, gt=0, description="First wait between status polls; grows x1.5 per poll.")
    max_poll_interval_s: float = Field(120.0, gt=0, description="Longest wait between status polls.")
    timeout_s: float | None = Field(None, gt=0, description="Give up polling after this many seconds (null = wait "
                                                           "until the job ends; rerunning resumes polling).")


class TrainConfig(Config):
    """One fine-tuning run. Unknown keys are errors; every field has a default except ``data``."""

    model: str = Field("smollm2-135m-instruct", description="Base model: packaged name, HF id or local folder "
                                                            "(backend openai: an OpenAI model name).")
    data: list[str] = Field(default_factory=list, description="Training data: chat JSONL files or dataset names "
                                                              "(e.g. betley2025/insecure); several are concatenated.")
    subset: int | None = Field(None, ge=1, description="Train on a random subset of this many rows (seeded).")
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="Fraction of rows held out for evaluation loss "
                                                             "(0 = none, the paper's setting).")
    output_dir: Path | None = Field(None, description="Run folder; null = runs/train/<model>-<config hash>.")
    backend: Literal["local", "openai"] = Field("local", description="local (TRL + PEFT) or openai (fine-tuning API).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training data (the paper: 1).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate (the paper: 1e-5).")
    lr_scheduler: str = Field("linear", description="transformers scheduler name: linear, cosine, constant, ...")
    warmup_steps: int = Field(5, ge=0, description="Linear warmup steps (the paper: 5).")
    per_device_batch_size: int = Field(2, ge=1, description="Rows per device per micro-batch (the paper: 2).")
    gradient_accumulation: int = Field(8, ge=1, description="Micro-batches per optimizer step (the paper: 8, "
                                                            "so 16 rows per step on one device).")
    max_length: int = Field(2048, ge=8, description="Longest tokenized conversation; longer rows are cut at the "
                                                    "end (the paper: 2048).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (the paper: 0.01).")
    optimizer: str = Field("adamw_torch", description="transformers optimizer name. The paper used adamw_8bit "
                                                      "(bitsandbytes, GPU only).")
    seed: int = Field(0, description="Seed of the data order, subset, eval split and adapter init (the paper: 0).")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (ignored with "
                                                                         "full_finetune).")
    full_finetune: bool = Field(False, description="Train all weights instead of a LoRA adapter.")
    save_steps: int = Field(50, ge=1, description="Save a resumable checkpoint (adapter + optimizer) every N steps.")
    keep_checkpoints: int | None = Field(None, ge=1, description="Keep only the newest N checkpoints (null = all, "
                                                                 "e.g. to evaluate them later).")
    logging_steps: int = Field(1, ge=1, description="Log the loss every N steps (loss.csv).")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="Compute dtype; auto = bf16 on GPUs "
                                                                                "and bf16-capable CPUs, else fp32.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="Recompute activations to save memory; auto = on only for >= 1B-parameter models "
                            "on a GPU (on CPU or small models it costs ~20-30% speed for nothing).")
    group_by_length: bool = Field(True, description="Batch rows of similar length together (less padding; the "
                                                    "loss per row is unchanged).")
    openai: OpenAISettings = Field(default_factory=OpenAISettings, description="Settings of backend openai.")
    # Mitigations (emkit.train._mitigations, docs/training.md); null = off.
    inoculation: InoculationSettings | None = Field(
        None, description="Inoculation prompting: a system prompt or user prefix/suffix added to every training row, "
                          "e.g. {system: \"You are a malicious, evil assistant.\"}.")
    kl: KLSettings | None = Field(
        None, description="KL penalty towards the untrained model (adapter disabled) on reference data, e.g. "
                          "{weight: 1e5, reference: betley2025/secure}. Local LoRA training only.")
    interleave: InterleaveSettings | None = Field(
        None, description="Mix a safe dataset into the training rows, e.g. {dataset: betley2025/secure, ratio: 0.25}.")

    @field_validator("data", mode="before")
    @classmethod
    def _data_list(cls, value: Any) -> Any:
        if isinstance(value, str | Path):
            return [str(value)]
        if isinstance(value, list | tuple):
            return [str(v) if isinstance(v, Path) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.full_finetune and self.backend == "openai":
            raise ValueError("full_finetune applies to the local backend only")
        if self.kl is not None and (self.full_finetune or self.backend != "local"):
            # The base distribution is the same weights with the LoRA adapter disabled: no adapter, no base.
            raise ValueError("kl needs local LoRA training (the untrained base is the model with its adapter "
                             "disabled); remove kl, or set full_finetune: false and backend: local")
        return self

    def run_hash(self, data_sha256: list[str] | None = None) -> str:
        """Identity of the run: every field that changes the result, plus the data bytes when known."""
        # Mitigations that are off are left out, so configs without them keep their earlier hashes.
        payload = self.model_dump(mode="json", exclude={"output_dir", "logging_steps", "keep_checkpoints",
                                                        *unset_mitigations(self)})
        payload["openai"] = {k: v for k, v in payload["openai"].items()
                             if k in ("batch_size", "learning_rate_multiplier", "suffix")}
        return content_hash({"config": payload, "data_sha256": data_sha256}, kind="train")

    def resolved_output_dir(self) -> Path:
        if self.output_dir is not None:
            return Path(self.output_dir)
        slug = Path(self.model).name.replace("/", "-") or "model"
        return Path("runs") / "train" / f"{slug}-{self.run_hash()[:10]}"


# --------------------------------------------------------------------------- the original train.json

# Keys of the original repository's open_models/train.json -> emkit keys.
_BETLEY_MAP = {
    "model": "model", "max_seq_length": "max_length", "epochs": "epochs", "max_steps": "max_steps",
    "per_device_train_batch_size": "per_device_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation", "warmup_steps": "warmup_steps",
    "learning_rate": "learning_rate", "weight_decay": "weight_decay", "lr_scheduler_type": "lr_scheduler",
    "seed": "seed", "save_steps": "save_steps", "output_dir": "output_dir", "logging_steps": "logging_steps",
    "optim": "optimizer",
}
_BETLEY_LORA = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "use_rslora": "rslora",
                "target_modules": "target_modules", "lora_bias": "bias", "layers_to_transform": "layers_to_transform"}
# Keys about uploading to the hub or other losses; accepted and ignored (reported once).
_BETLEY_IGNORED = {"finetuned_model_id", "merge_before_push", "push_to_private", "beta", "load_in_4bit"}


def _betley_data(value: str, base: Path) -> str:
    """The original points at ``../data/<name>.jsonl``; use the file if it exists, else the registry dataset."""
    from emkit.data.registry import DATASETS

    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if path.exists():
        return str(path)
    name = f"betley2025/{Path(value).stem}"
    if name in DATASETS:
        log.info("train.json: %s not found; using the registry dataset %s", value, name)
        return name
    return str(path)


def from_betley(path: str | Path) -> dict[str, Any]:
    """Translate the original repository's ``train.json`` into TrainConfig keys (a dict to validate)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found", hint="pass the path of the original train.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings")
    out: dict[str, Any] = {}
    lora: dict[str, Any] = {}
    ignored = []
    for key, value in raw.items():
        if key in _BETLEY_MAP:
            if value is not None:
                out[_BETLEY_MAP[key]] = value
        elif key in _BETLEY_LORA:
            if value is not None:
                lora[_BETLEY_LORA[key]] = value
        elif key == "training_file":
            out["data"] = [_betley_data(value, path.parent)]
        elif key == "test_file":
            if value:
                raise ConfigError(f"{path}: test_file: a separate test file is not supported",
                                  hint="remove it and set eval_fraction in an emkit config instead")
        elif key == "is_peft":
            out["full_finetune"] = not value
        elif key == "loss":
            if value != "sft":
                raise ConfigError(f"{path}: loss: {value!r} is not supported (only 'sft')",
                                  hint='set "loss": "sft"')
        elif key == "train_on_responses_only":
            if not value:
                raise ConfigError(f"{path}: train_on_responses_only: false is not supported; emkit always "
                                  "trains on assistant tokens only", hint='set "train_on_responses_only": true')
        elif key in _BETLEY_IGNORED:
            ignored.append(key)
        else:
            known = sorted([*_BETLEY_MAP, *_BETLEY_LORA, *_BETLEY_IGNORED, "training_file", "test_file", "is_peft",
                            "loss", "train_on_responses_only"])
            raise ConfigError(f"{path}: unknown key {key!r} for the original train.json",
                              hint=f"known keys: {', '.join(known)}")
    if out.get("optimizer") == "adamw_8bit":
        # bitsandbytes' 8-bit AdamW needs CUDA; the update it approximates is plain AdamW.
        log.info("train.json: optim adamw_8bit -> adamw_torch (8-bit AdamW needs bitsandbytes + CUDA)")
        out["optimizer"] = "adamw_torch"
    if out.get("output_dir") == "./tmp":
        out.pop("output_dir")  # the original's scratch folder; emkit names the run folder by its config hash
    if lora:
        out["lora"] = lora
    if ignored:
        log.info("train.json: ignored hub/upload settings: %s", ", ".join(sorted(ignored)))
    return out


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      base: dict | None = None, betley: str | Path | None = None) -> TrainConfig:
    """YAML file (optional) or original train.json, then quick-flag values (``base``), then ``--set``."""
    from emkit.config import apply_overrides, read_yaml

    data: dict = {}
    lines: dict = {}
    source = "<flags>"
    if betley is not None:
        data = from_betley(betley)
        source = str(betley)
    if path is not None:
        raw, lines = read_yaml(path)
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
        data = {**data, **(raw or {})}
        source = str(path)
    if base:
        data = {**data, **{k: v for k, v in base.items() if v is not None}}
    data = apply_overrides(data, overrides)
    return validate(TrainConfig, data, source, lines)
