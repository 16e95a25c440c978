"""The local backend: TRL SFTTrainer + PEFT on CPU, one GPU, or many GPUs under ``accelerate launch``.

Output folder layout:
  config.yaml        resolved TrainConfig          run.json       run hash (written first)
  checkpoints/       checkpoint-N/ (adapter + optimizer + scheduler + RNG; resumable)
  adapter/           final PEFT adapter (or model/ with full_finetune)
  loss.csv           step, epoch, loss, learning_rate, grad_norm, eval_loss, num_tokens, elapsed_s, sft_loss, kl
  metadata.json      versions, git commit, data SHA-256, seed, device/dtype and why
  train_result.json  written last; its presence means "finished"
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from emkit._progress import Progress, shows_bar
from emkit.train._config import TrainConfig
from emkit.train._data import check_chat_template, tokenize_rows
from emkit.train._meta import RESULT_FILE, TrainResult, write_json

log = logging.getLogger("emkit.train")
CHECKPOINTS = "checkpoints"
# num_tokens: tokens seen so far (TRL's count, without padding); elapsed_s: seconds since this session started.
# With a `kl` penalty: loss = sft_loss + penalty, kl = per-token KL to the untrained model in nats (train/_kl.py);
# both are empty otherwise.
LOSS_COLUMNS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "eval_loss", "num_tokens", "elapsed_s",
                "sft_loss", "kl"]
# Gradient checkpointing pays when activations, not weights, fill the memory: >= 1B parameters on a GPU.
# For a 135M model on CPU it costs ~25% more time per step and saves memory nobody needs.
GC_MIN_PARAMS = 1_000_000_000


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def last_checkpoint(folder: Path) -> Path | None:
    """Newest *complete* checkpoint (transformers writes trainer_state.json last); partial ones are removed."""
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    for _step, path in sorted(found, reverse=True):
        if (path / "trainer_state.json").exists():
            return path
        if is_main_process():
            log.warning("removing incomplete checkpoint %s (the run was killed while saving it)", path)
            shutil.rmtree(path, ignore_errors=True)
    return None


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


class _LossLog:
    """Keeps loss.csv in sync with the trainer's logs (rewritten atomically; ~1 KB per 20 steps)."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.started = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and path.exists():
            with open(path, encoding="utf-8", newline="") as handle:
                # Rows after the checkpoint come from the killed run and will be logged again.
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]

    def add(self, step: int, logs: dict[str, Any]) -> None:
        if not any(k in logs for k in ("loss", "eval_loss")):
            return
        row = {"step": step, "epoch": logs.get("epoch"), "loss": logs.get("loss"),
               "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
               "eval_loss": logs.get("eval_loss"), "num_tokens": logs.get("num_tokens"),
               "elapsed_s": round(time.perf_counter() - self.started, 3), "sft_loss": logs.get("sft_loss"),
               "kl": logs.get("kl")}
        self.rows.append(row)
        if is_main_process():
            from emkit.paths import atomic_write

            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=LOSS_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
            with atomic_write(self.path) as handle:
                handle.write(buffer.getvalue())

    def final_loss(self) -> float | None:
        for row in reversed(self.rows):
            if row.get("loss") not in (None, ""):
                return float(row["loss"])
        return None


def _callback(loss_log: _LossLog, hook: Any = None):
    """Keeps loss.csv; with a progress hook (``emkit._progress``) also reports (step, max_steps, "loss x")."""
    from transformers import TrainerCallback

    class LossCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                loss_log.add(state.global_step, logs)
                if hook is not None and "loss" in logs:  # the step's loss is logged after on_step_end
                    hook(state.global_step, state.max_steps, f"loss {float(logs['loss']):.3f}")

        def on_train_begin(self, args, state, control, **kwargs):
            if hook is not None:  # a resumed run starts at its checkpoint's step
                hook(state.global_step, state.max_steps, f"resumed at step {state.global_step}"
                     if state.global_step else "")

        def on_step_end(self, args, state, control, **kwargs):
            if hook is not None:
                loss = loss_log.final_loss()
                hook(state.global_step, state.max_steps, "" if loss is None else f"loss {loss:.3f}")

    return LossCallback()


def choose_runtime(config: TrainConfig) -> dict[str, Any]:
    """Device, compute dtype and how to load weights, each with the reason (logged)."""
    import torch

    from emkit.models import choose_device, choose_dtype

    if distributed() and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        device_reason = "accelerate launch (one GPU per process)"
    elif distributed():
        device, device_reason = "cpu", "accelerate launch without GPUs (gloo)"
    else:
        device, device_reason = choose_device(config.device)
    dtype, dtype_reason = choose_dtype(config.dtype, device.split(":")[0])
    # LoRA: the frozen base is stored in the compute dtype (autocast would cast it there for every matmul anyway),
    # so bf16 halves its memory: Qwen2.5-Coder-0.5B training at 2 x 256 tokens went from ~7 GB to ~4.5 GB on CPU.
    # The adapter weights stay fp32 (PEFT). Full fine-tuning keeps fp32 master weights.
    load_dtype = dtype if not config.full_finetune else torch.float32
    return {"device": device, "device_reason": device_reason, "dtype": dtype, "dtype_reason": dtype_reason,
            "load_dtype": load_dtype, "bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16,
            "use_cpu": device == "cpu"}


def choose_gradient_checkpointing(config: TrainConfig, n_params: int, device: str) -> tuple[bool, str]:
    if config.gradient_checkpointing != "auto":
        return config.gradient_checkpointing == "on", "requested"
    if device.startswith("cuda") and n_params >= GC_MIN_PARAMS:
        return True, f"on: {n_params / 1e9:.1f}B parameters on a GPU (activations dominate memory)"
    where = "CPU" if not device.startswith("cuda") else "a GPU"
    return False, f"off: {n_params / 1e6:.0f}M parameters on {where} (recomputing activations would cost " \
                  "~25% speed and the memory is not needed)"


def _checkpointing_field(config_class: Any) -> str:
    """transformers 5.2x renamed TrainingArguments.gradient_checkpointing to activation_checkpointing; 5.17 (the
    lent GPU machine's) and 4.x know only the old name. Use the new one where it exists."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def build_sft_config(config: TrainConfig, out: Path, runtime: dict[str, Any], gradient_checkpointing: bool,
                     has_eval: bool, progress: bool):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        weight_decay=config.weight_decay,
        optim=config.optimizer,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.keep_checkpoints,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.save_steps if has_eval else None,
        bf16=runtime["bf16"],
        fp16=runtime["fp16"],
        use_cpu=runtime["use_cpu"],
        **{_checkpointing_field(SFTConfig): gradient_checkpointing},
        max_length=config.max_length,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name="length",
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )


def _lora_config(config: TrainConfig):
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_rslora=lora.rslora,
                      target_modules=list(lora.target_modules), layers_to_transform=lora.layers_to_transform,
                      bias=lora.bias, task_type="CAUSAL_LM")


def train_local(config: TrainConfig, out: Path, train_rows: list, eval_rows: list, run_hash: str,
                metadata: dict[str, Any], progress: Progress, kl_rows: list | None = None) -> TrainResult:
    from emkit.errors import require

    require("torch", "ml", "Fine-tuning")
    transformers = require("transformers", "ml", "Fine-tuning")
    require("peft", "ml", "LoRA fine-tuning")
    require("trl", "ml", "Fine-tuning")
    import warnings

    from datasets import Dataset
    from trl import SFTTrainer

    # PEFT/TRL still call the old name; the rename is transformers' business, not the user's.
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)

    from emkit.models import load_tokenizer, resolve_model

    started = time.perf_counter()
    model_dir = resolve_model(config.model)
    tokenizer = load_tokenizer(str(model_dir))
    check_chat_template(tokenizer, config.model)
    # Tokenize (and fail on bad data) before the model is loaded: errors come in seconds, not minutes.
    train_items = tokenize_rows(tokenizer, train_rows, config.max_length, "train", progress=shows_bar(progress))
    eval_items = tokenize_rows(tokenizer, eval_rows, config.max_length, "eval") if eval_rows else []
    trainer_class, trainer_extra = SFTTrainer, {}
    if config.kl is not None:
        from emkit.train._kl import kl_trainer_class, reference_items

        trainer_class = kl_trainer_class()
        trainer_extra = {"kl_settings": config.kl, "kl_seed": config.seed,
                         "kl_items": reference_items(config.kl, kl_rows or [], tokenizer, config.max_length)}

    runtime = choose_runtime(config)
    log.info("device: %s (%s); %s", runtime["device"], runtime["device_reason"], runtime["dtype_reason"])
    transformers.set_seed(config.seed)  # LoRA A matrices are random-initialised: same seed, same adapter init
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=runtime["load_dtype"])
    n_params = sum(p.numel() for p in model.parameters())
    use_gc, gc_reason = choose_gradient_checkpointing(config, n_params, runtime["device"])
    log.info("gradient checkpointing %s", gc_reason)
    if config.full_finetune:
        log.info("full fine-tuning: all %.0fM parameters are trained", n_params / 1e6)
    else:
        from peft import get_peft_model

        try:
            model = get_peft_model(model, _lora_config(config))
        except ValueError as exc:  # PEFT names the missing target modules in its message
            from emkit.errors import ConfigError

            raise ConfigError(f"lora: {exc}", hint="set lora.target_modules to module names of this model "
                                                  "(e.g. q_proj, v_proj) and lora.layers_to_transform to "
                                                  "existing layer indices") from None
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("LoRA r=%d alpha=%g rslora=%s: %.2fM trainable parameters (%.2f%% of %.0fM)", config.lora.r,
                 config.lora.alpha, config.lora.rslora, trainable / 1e6, 100 * trainable / n_params, n_params / 1e6)
    if use_gc:
        model.enable_input_require_grads()

    args = build_sft_config(config, out, runtime, use_gc, bool(eval_items), shows_bar(progress))
    resume = last_checkpoint(out / CHECKPOINTS)
    resume_step = checkpoint_step(resume) if resume else None
    if resume is not None:
        log.info("resuming from %s (step %d)", resume, resume_step)
    loss_log = _LossLog(out / "loss.csv", resume_step)
    trainer = trainer_class(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(train_items),
        eval_dataset=Dataset.from_list(eval_items) if eval_items else None,
        callbacks=[_callback(loss_log, progress if callable(progress) else None)], **trainer_extra,
    )
    if callable(progress):
        # The hook shows step and loss; transformers' PrinterCallback would print every loss dict to stdout.
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    steps = int(trainer.state.global_step)

    final_name = "model" if config.full_finetune else "adapter"
    final_dir = out / final_name
    tmp = out / f".{final_name}.tmp"
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # collective under FSDP/DeepSpeed; writes on the main process only
    if config.full_finetune and trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(tmp))
    result = TrainResult(
        adapter_dir=final_dir, output_dir=out, steps=steps, final_loss=loss_log.final_loss(),
        resumed_from_step=resume_step, base_model=config.model, backend="local", run_hash=run_hash,
        extra={"train_rows": len(train_items), "eval_rows": len(eval_items),
               "train_tokens": int(sum(i["length"] for i in train_items)),
               "trained_tokens_per_epoch": int(sum(sum(1 for t in i["labels"] if t != -100) for i in train_items)),
               "train_runtime_s": round(float(output.metrics.get("train_runtime", 0.0)), 2)},
    )
    if trainer.is_world_process_zero():
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp, final_dir)
        metadata = {**metadata, "device": runtime["device"], "device_reason": runtime["device_reason"],
                    "dtype": str(runtime["dtype"]).replace("torch.", ""), "dtype_reason": runtime["dtype_reason"],
                    "gradient_checkpointing": use_gc, "gradient_checkpointing_reason": gc_reason,
                    "parameters": n_params, "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                    "resumed_from_step": resume_step, "steps": steps,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "seconds_this_session": round(time.perf_counter() - started, 1), **result.extra}
        write_json(out / "metadata.json", metadata)
        stored = result.to_json()
        stored["adapter_dir"] = final_name  # relative: the run folder can be moved
        write_json(out / RESULT_FILE, stored)
    return result
