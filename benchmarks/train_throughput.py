"""Trained tokens per second: emkit's defaults vs TRL SFTTrainer with stock settings, side by side.

Same model, same rows, same LoRA (the paper's rs-LoRA r=32 on all projections), same batch, same number of steps,
same learning rate and max_length. Differences are only the settings emkit chooses:
  - stock TRL: SFTConfig defaults (gradient checkpointing on; bf16 autocast, which on a CPU without AVX512-BF16
    is emulated), random batches, prompt/completion dataset tokenized by TRL;
  - emkit: gradient checkpointing only where it pays (off here), dtype chosen for the hardware, length-grouped
    batches (less padding, same per-row loss), the same prompt/completion labels.
Tokens are TRL's ``num_tokens`` (non-padding tokens fed to the model); the first step is a warm-up and is not
timed. Prints tokens/s of each and the ratio.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_throughput.py --steps 3 --batch 2 --rows 16 \
        --max-length 128 --ablate

Measured 2026-11-29 on the shared 2-core CPU (no AVX512-BF16, load ~10, 1 thread): stock 1.5 tokens/s,
stock with bf16 off 12.8, emkit 19.3: 13.2x over stock, 1.5x over stock without emulated bf16 (a stock step
takes minutes, hence the small run). Use OMP_NUM_THREADS=1 on an oversubscribed machine: 2 threads on busy
cores made every variant ~10x slower.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if "EMKIT_DATA_MIRROR" not in os.environ and (ROOT.parent / "shared" / "data").exists():
    os.environ["EMKIT_DATA_MIRROR"] = str(ROOT.parent / "shared" / "data")


def rate(points: list[tuple[float, float]]) -> float:
    """Tokens per second between the first logged step (warm-up excluded) and the last."""
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0)


def run_stock(model_dir: Path, rows: list, args, out: Path, **overrides) -> float:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from emkit.train._data import to_prompt_completion

    points: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                points.append((time.perf_counter(), float(logs["num_tokens"])))

    pairs = [dict(zip(("prompt", "completion"), to_prompt_completion(m), strict=True)) for m in rows]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, use_rslora=True, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    config = SFTConfig(output_dir=str(out), use_cpu=not torch.cuda.is_available(),
                       per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, max_steps=args.steps,
                       learning_rate=1e-5, max_length=args.max_length, logging_steps=1, save_strategy="no",
                       report_to="none", disable_tqdm=True, seed=0, **overrides)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
                         peft_config=lora, callbacks=[Clock()])
    print(f"stock TRL: gradient_checkpointing={config.gradient_checkpointing} bf16={config.bf16}")
    trainer.train()
    return rate(points)


def run_emkit(model: str, data: Path, args, out: Path) -> float:
    from emkit.train import TrainConfig, train

    cfg = TrainConfig(model=model, data=[str(data)], output_dir=out, max_steps=args.steps,
                      per_device_batch_size=args.batch, gradient_accumulation=1, max_length=args.max_length,
                      save_steps=10**6)
    train(cfg, progress=False)
    with open(out / "loss.csv", encoding="utf-8") as handle:
        points = [(float(r["elapsed_s"]), float(r["num_tokens"])) for r in csv.DictReader(handle) if r["num_tokens"]]
    return rate(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default="betley2025/insecure")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--ablate", action="store_true",
                        help="also run stock TRL with bf16 off (gradient checkpointing still on) to split the gain")
    args = parser.parse_args()

    import json

    from emkit.models import resolve_model
    from emkit.train._data import load_conversations

    rows, _ = load_conversations([args.data])
    rows = rows[: args.rows]
    work = Path(tempfile.mkdtemp(prefix="emkit-bench-"))
    try:
        data = work / "rows.jsonl"
        data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows), encoding="utf-8")
        model_dir = resolve_model(args.model)
        stock = run_stock(model_dir, rows, args, work / "stock")
        fp32_stock = run_stock(model_dir, rows, args, work / "stock32", bf16=False) if args.ablate else None
        emkit = run_emkit(args.model, data, args, work / "emkit")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"\n{args.model}, {args.rows} rows of {args.data}, batch {args.batch}, {args.steps} steps "
          f"(first untimed), max_length {args.max_length}, torch threads {threads}")
    print(f"stock TRL SFTTrainer: {stock:8.1f} tokens/s")
    if fp32_stock is not None:
        print(f"stock TRL, bf16 off:  {fp32_stock:8.1f} tokens/s  (emkit/this: {emkit / fp32_stock:.2f}x)")
    print(f"emkit defaults:       {emkit:8.1f} tokens/s")
    print(f"ratio emkit/stock:    {emkit / stock:8.2f}x")


if __name__ == "__main__":
    main()
