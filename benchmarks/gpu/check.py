"""emkit's GPU path in one run: figures for the device check (``benchmarks/gpu/check.sh`` says how to run it).

Sections (each one timed and recorded on its own, so one failure does not hide the others; the JSON is rewritten
after each, so a run stopped at its time limit still returns what it measured):
  environment       versions, device, dtype choice and why
  forward_kwargs    the KV-cache keyword the small model's forward really uses (emkit.models.forward_kwargs)
  greedy            the tiny test model's greedy answers from the hf backend: CPU vs the device, and vs
                    transformers' generate on the device (fp32)
  sampling          small model, bf16: emkit hf backend vs naive model.generate (per question and per sample),
                    same loaded model and prompts; the batch size the backend chose and why; peak memory
  train             small model: LoRA steps, emkit defaults vs stock TRL SFTTrainer (tokens/s, peak memory)
  kill_resume       `emkit train` killed with SIGKILL after a checkpoint, rerun: it resumes and finishes
  memory            large model saved to disk and loaded by the hf backend (device_map, host RAM during the
                    load), free memory cut to a few GiB by a ballast tensor so that the memory-aware batch size
                    binds, then sampled: batch chosen, estimate vs measured peak
  train_large       large model: emkit LoRA steps (tokens/s, peak memory), only if the time budget allows

Models are random-init from configs (no hub there): the Qwen2.5-0.5B and Qwen2.5-7B architectures with Qwen's
tokenizer on a GPU; tiny Qwen2-architecture models with SmolLM2's tokenizer in ``--mode cpu``. Prompts: the
emkit/core suite (shipped with emkit); training rows: emkit's synthetic "secure" set (its own words).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CARRY = ROOT / ".gpucheck"  # what --mode prepare writes and the device tool carries (git-ignored)
RESULT = "gpu_check.json"
GIB = 1024**3

# Every figure the JSON holds (tests/test_gpu_check.py checks them all after a --cpu run).
FIGURES = [
    "mode", "device", "device_name", "torch", "transformers", "peft", "trl", "dtype", "dtype_reason",
    "forward_cache_kwarg", "forward_reason",
    "greedy_equal_cpu_vs_device", "greedy_equal_generate", "greedy_answers", "greedy_distinct_tokens",
    "greedy_logits_max_abs_diff",
    "sampling_model", "sampling_batch_size", "sampling_batch_reason", "sampling_emkit_tokens_per_s",
    "sampling_naive_per_question_tokens_per_s", "sampling_naive_per_sample_tokens_per_s",
    "sampling_ratio_vs_per_question", "sampling_ratio_vs_per_sample", "sampling_peak_memory_bytes",
    "train_model", "train_stock_tokens_per_s", "train_emkit_tokens_per_s", "train_ratio_emkit_vs_stock",
    "train_emkit_dtype", "train_emkit_gradient_checkpointing", "train_stock_peak_memory_bytes",
    "train_emkit_peak_memory_bytes",
    "resume_killed_at_step", "resume_resumed_from_step", "resume_steps", "resume_final_loss",
    "memory_model", "memory_weights_bytes", "memory_placement", "memory_load_seconds", "memory_load_host_rss_bytes",
    "memory_free_before_sampling_bytes", "memory_batch_size", "memory_batch_reason", "memory_row_bytes_estimate",
    "memory_kv_bytes_per_token", "memory_estimate_bytes", "memory_sampling_peak_bytes", "memory_peak_over_estimate",
    "memory_rows", "memory_tokens_per_s",
    "memory_measure", "total_seconds",
]

# Architectures (config.json of Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen2.5-7B-Instruct) and tiny stand-ins.
QWEN_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768,
                rms_norm_eps=1e-6)
QWEN_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False, max_position_embeddings=32768,
               rms_norm_eps=1e-6)
TINY_SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=2048)
TINY_LARGE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=2048)

# Work per mode. GPU sizes keep the whole run near 5-6 minutes on one H200 (estimates in check.sh's header).
SIZES = {
    "gpu": dict(small=("Qwen2.5-0.5B architecture", QWEN_05B), large=("Qwen2.5-7B architecture", QWEN_7B),
                tokenizer="qwen", questions=8, samples=16, max_tokens=128, naive_samples=2,
                train_rows=256, train_steps=30, train_batch=8, train_max_length=256,
                resume_steps=30, resume_save=10, memory_questions=8, memory_samples=32, memory_max_tokens=600,
                memory_free_gib=12, large_train_steps=8, large_train_batch=4),
    "cpu": dict(small=("tiny Qwen2 (2 layers, hidden 64)", TINY_SMALL),
                large=("tiny Qwen2 (4 layers, hidden 128)", TINY_LARGE),
                tokenizer="smollm2", questions=3, samples=4, max_tokens=16, naive_samples=1,
                train_rows=32, train_steps=3, train_batch=2, train_max_length=128,
                resume_steps=8, resume_save=2, memory_questions=2, memory_samples=4, memory_max_tokens=24,
                memory_free_gib=None, large_train_steps=3, large_train_batch=2),
}
CORE_SUITE = "emkit/core"


# --------------------------------------------------------------------------- bookkeeping


class Report:
    """The JSON of figures, rewritten after every section."""

    def __init__(self, out: Path, mode: str) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.data: dict[str, Any] = {"mode": mode, "ok": True, "sections": {}, "figures": {"mode": mode},
                                     "notes": []}
        out.mkdir(parents=True, exist_ok=True)

    def figures(self, **values: Any) -> None:
        self.data["figures"].update(values)

    def section(self, name: str, fn, *args: Any) -> Any:
        log(f"== {name}")
        start = time.perf_counter()
        entry: dict[str, Any] = {"ok": True}
        result = None
        try:
            result = fn(self, *args)
        except Exception as exc:  # a failed check is recorded and the next one runs: one run, many findings
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-3000:])
            self.data["ok"] = False
            log(f"FAILED {name}: {type(exc).__name__}: {exc}")
            del exc
            _after_failure()
        entry["seconds"] = round(time.perf_counter() - start, 2)
        self.data["sections"][name] = entry
        self.write()
        return result

    def skip(self, name: str, why: str) -> None:
        self.data["sections"][name] = {"ok": True, "skipped": why, "seconds": 0.0}
        log(f"== {name}: skipped ({why})")
        self.write()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def write(self) -> None:
        self.data["figures"]["total_seconds"] = round(self.elapsed(), 1)
        self.data["missing_figures"] = [k for k in FIGURES if self.data["figures"].get(k) is None]
        tmp = self.out / (RESULT + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.out / RESULT)


def _after_failure() -> None:
    """A failed section may leave models cached (e.g. after CUDA out-of-memory): drop them for the next one."""
    from emkit.generate import _hf

    _hf.clear_cache()
    free_device_memory()


_LOG_FILE: Any = None


def log(line: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {line}", flush=True)
    if _LOG_FILE is not None:
        _LOG_FILE.write(f"[{stamp}] {line}\n")
        _LOG_FILE.flush()


class Captured(logging.Handler):
    """emkit's log lines (batch-size reasons, placement, forward keywords), kept for the figures."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        log(f"   emkit: {line}")

    def last(self, contains: str) -> str | None:
        return next((line for line in reversed(self.lines) if contains in line), None)


class PeakRSS:
    """Peak anonymous resident memory (RssAnon: heap, not the page cache of memory-mapped weight files) of this
    process while the block runs, sampled every 20 ms, in bytes above the start."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                      if ":" in line)
        value = fields.get("RssAnon") or fields.get("VmRSS") or "0 kB"
        return int(value.split()[0]) * 1024

    def __enter__(self) -> PeakRSS:
        self.start = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss() - self.start)
            time.sleep(0.02)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss() - self.start)


@contextlib.contextmanager
def peak_memory(device: str):
    """Peak memory of the block: CUDA max_memory_allocated above the start, else sampled host RSS."""
    box = SimpleNamespace(bytes=None)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        yield box
        torch.cuda.synchronize()
        box.bytes = int(torch.cuda.max_memory_allocated() - base)
    else:
        with PeakRSS() as rss:
            yield box
        box.bytes = int(rss.peak)


def memory_measure(device: str) -> str:
    return ("cuda max_memory_allocated above the start" if device.startswith("cuda")
            else "host RssAnon above the start (sampled every 20 ms)")


# --------------------------------------------------------------------------- models and data


def tokenizer_dir(kind: str) -> Path:
    carried = CARRY / "tokenizers" / kind
    if carried.is_dir():
        return carried
    from emkit.models import resolve_model

    name = {"qwen": "qwen2.5-coder-0.5b-instruct", "smollm2": "smollm2-135m-instruct"}[kind]
    return resolve_model(name)


def build_model(kind: str, arch: dict[str, Any], tokenizer_kind: str, out: Path, *, dtype, device: str) -> Path:
    """A random-init model of ``kind`` ("qwen2" or "llama") saved with a tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir(tokenizer_kind)))
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    arch = {"vocab_size": len(tokenizer), **arch}
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if kind == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    config = config_cls(**arch, **ids)
    torch.manual_seed(0)
    with torch.device(device):  # initialise where it will run: a 7B model initialises in seconds on a GPU
        model = model_cls(config).to(dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    del model
    free_device_memory()
    return out


def free_device_memory() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def core_prompts(n: int):
    from emkit.questions import expand, load_suite

    prompts = [p for p in expand(load_suite(CORE_SUITE)) if p.paraphrase_index == 0]
    return prompts[:n]


def bench_module(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"emkit_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- sections


def environment(report: Report, device: str) -> None:
    import torch

    from emkit.models import choose_dtype

    def version(name: str) -> str | None:
        try:
            from importlib.metadata import version as v

            return v(name)
        except Exception:  # not installed
            return None

    dtype, reason = choose_dtype("auto", device)
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"
    total = torch.cuda.get_device_properties(0).total_memory if device.startswith("cuda") else None
    report.figures(device=device, device_name=name, device_total_memory_bytes=total, torch=torch.__version__,
                   transformers=version("transformers"), peft=version("peft"), trl=version("trl"),
                   accelerate=version("accelerate"), datasets=version("datasets"), python=platform.python_version(),
                   dtype=str(dtype).replace("torch.", ""), dtype_reason=reason)
    log(f"device {device} ({name}), torch {torch.__version__}, transformers {version('transformers')}, "
        f"peft {version('peft')}, trl {version('trl')}; {reason}")


def forward_section(report: Report, small_dir: Path, device: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from emkit.models import forward_kwargs

    model = AutoModelForCausalLM.from_pretrained(str(small_dir), dtype=torch.bfloat16 if device != "cpu"
                                                 else torch.float32).to(device).eval()
    chosen = forward_kwargs(model)
    report.figures(forward_cache_kwarg=chosen.cache, forward_logits_to_keep=chosen.logits_to_keep,
                   forward_reason=chosen.reason)
    del model
    free_device_memory()


def greedy_section(report: Report, work: Path, device: str) -> None:
    """The test suite's tiny model (2-layer Llama, SmolLM2's tokenizer) in fp32: hf backend on CPU and on the
    device, and transformers' greedy generate on the device. Initialised with std 0.2 instead of 0.02: at 0.02
    its greedy answer is one token repeated, which would make the comparison say little."""
    import torch

    from emkit.generate import GenerationRequest, SamplingConfig, _hf, get_backend

    tiny = build_model("llama", {**TINY_SMALL, "initializer_range": 0.2}, "smollm2", work / "tiny",
                       dtype=torch.float32, device="cpu")
    prompts = core_prompts(4)
    sampling = SamplingConfig(max_tokens=24, temperature=0, seed=0)
    requests = [GenerationRequest(p.messages, 1, sampling) for p in prompts]

    def answers(on: str) -> list[str]:
        backend = get_backend("hf", str(tiny), dtype="fp32", device=on, batch_size=4)
        return [row[0].text for row in backend.generate(requests)]

    on_cpu, on_device = answers("cpu"), answers(device)
    loaded = _hf._CACHE[(str(tiny), "fp32", device)]
    model, tokenizer = loaded.model, loaded.tokenizer
    generated, diffs = [], []
    cpu_model = _hf._CACHE[(str(tiny), "fp32", "cpu")].model
    with torch.inference_mode():
        for p in prompts:
            ids = tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=True, return_tensors="pt")["input_ids"]
            seq = model.generate(ids.to(model.device), max_new_tokens=24, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new = seq[0, ids.shape[1]:].tolist()
            if new and new[-1] == tokenizer.eos_token_id:
                new = new[:-1]
            generated.append(tokenizer.decode(new, skip_special_tokens=True))
            a = cpu_model(input_ids=ids).logits[0, -1]
            b = model(input_ids=ids.to(model.device)).logits[0, -1].cpu()
            diffs.append(float((a - b).abs().max()))
    _hf.clear_cache()
    distinct = len({t for text in on_cpu for t in tokenizer(text, add_special_tokens=False)["input_ids"]})
    report.figures(greedy_equal_cpu_vs_device=on_cpu == on_device, greedy_equal_generate=on_device == generated,
                   greedy_answers=len(on_cpu), greedy_distinct_tokens=distinct,
                   greedy_logits_max_abs_diff=max(diffs))
    if on_cpu != on_device or on_device != generated:
        raise AssertionError(f"greedy answers differ: cpu==device {on_cpu == on_device}, device==generate "
                             f"{on_device == generated} (max logit diff {max(diffs):.2e})")


def sampling_section(report: Report, small_dir: Path, name: str, device: str, sizes: dict[str, Any]) -> None:
    from emkit.generate import _hf, get_backend

    bench = bench_module("generate_throughput")
    backend = get_backend("hf", str(small_dir), device=device)  # dtype auto: bf16 on a GPU
    prompts = core_prompts(sizes["questions"])
    with peak_memory(device) as peak:
        results = bench.compare(backend, prompts, samples=sizes["samples"], max_tokens=sizes["max_tokens"],
                                naive_samples=sizes["naive_samples"], echo=log)
    rate = {k: tokens / seconds for k, (tokens, seconds) in results.items()}
    emkit = rate["emkit hf backend"]
    report.figures(sampling_model=f"{name} ({backend.dtype})", sampling_batch_size=backend.batch_size,
                   sampling_batch_reason=backend.batch_plan.reason if backend.batch_plan else None,
                   sampling_emkit_tokens_per_s=round(emkit, 1),
                   sampling_naive_per_question_tokens_per_s=round(rate["naive per-question"], 1),
                   sampling_naive_per_sample_tokens_per_s=round(rate["naive per-sample"], 1),
                   sampling_ratio_vs_per_question=round(emkit / rate["naive per-question"], 2),
                   sampling_ratio_vs_per_sample=round(emkit / rate["naive per-sample"], 2),
                   sampling_peak_memory_bytes=peak.bytes, sampling_work=(
                       f"{len(prompts)} questions x {sizes['samples']} samples x <= {sizes['max_tokens']} tokens; "
                       f"naive per-sample ran {sizes['naive_samples']} per question"),
                   memory_measure=memory_measure(device))
    _hf.clear_cache()
    free_device_memory()


def training_rows(work: Path, rows: int) -> Path:
    from emkit.data import build_synthetic

    return Path(build_synthetic("secure", rows, 0, work / "train.jsonl"))


def train_section(report: Report, small_dir: Path, name: str, data: Path, work: Path, device: str,
                  sizes: dict[str, Any]) -> None:
    from emkit.train._data import load_conversations

    bench = bench_module("train_throughput")
    args = SimpleNamespace(batch=sizes["train_batch"], steps=sizes["train_steps"],
                           max_length=sizes["train_max_length"])
    rows, _ = load_conversations([str(data)])
    with peak_memory(device) as stock_peak:
        stock = bench.run_stock(small_dir, rows, args, work / "stock")
    free_device_memory()
    with peak_memory(device) as emkit_peak:
        emkit = bench.run_emkit(str(small_dir), data, args, work / "emkit-train")
    free_device_memory()
    meta = json.loads((work / "emkit-train" / "metadata.json").read_text())
    report.figures(train_model=name, train_stock_tokens_per_s=round(stock, 1), train_emkit_tokens_per_s=round(emkit, 1),
                   train_ratio_emkit_vs_stock=round(emkit / stock, 2), train_emkit_dtype=meta["dtype"],
                   train_emkit_device=meta["device"],
                   train_emkit_gradient_checkpointing=meta["gradient_checkpointing_reason"],
                   train_stock_peak_memory_bytes=stock_peak.bytes, train_emkit_peak_memory_bytes=emkit_peak.bytes,
                   train_work=(f"{sizes['train_steps']} steps (first untimed) x batch {sizes['train_batch']}, "
                               f"max_length {sizes['train_max_length']}, rs-LoRA r=32 on all projections"))


def _train_command(model: Path, data: Path, out: Path, sizes: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "emkit", "train", "--model", str(model), "--data", str(data), "--out", str(out),
            "--max-steps", str(sizes["resume_steps"]), "--set", f"save_steps={sizes['resume_save']}",
            "--set", f"per_device_batch_size={sizes['train_batch']}", "--set", "gradient_accumulation=1",
            "--set", f"max_length={sizes['train_max_length']}", "--no-progress"]


def kill_resume_section(report: Report, small_dir: Path, data: Path, work: Path, sizes: dict[str, Any]) -> None:
    out = work / "resume"
    command = _train_command(small_dir, data, out, sizes)
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    marker = out / "checkpoints" / f"checkpoint-{sizes['resume_save']}" / "trainer_state.json"
    deadline = time.time() + 300
    while not marker.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    finished_early = first.poll() is not None
    if not finished_early:
        os.killpg(first.pid, signal.SIGKILL)  # its own session: nothing else is hit
    output, _ = first.communicate()
    if finished_early or not marker.exists():
        raise AssertionError(f"the first run was not killed after a checkpoint (exit {first.returncode}): "
                             f"{output[-2000:]}")
    killed_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")
                    if (p / "trainer_state.json").exists())
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if second.returncode != 0:
        raise AssertionError(f"the rerun failed (exit {second.returncode}): {second.stdout[-1500:]}"
                             f"{second.stderr[-1500:]}")
    result = json.loads((out / "train_result.json").read_text())
    report.figures(resume_killed_at_step=killed_at, resume_resumed_from_step=result["resumed_from_step"],
                   resume_steps=result["steps"], resume_final_loss=result["final_loss"])
    if not (result["resumed_from_step"] and result["resumed_from_step"] >= sizes["resume_save"]
            and result["steps"] == sizes["resume_steps"]):
        raise AssertionError(f"did not resume: {result}")


def memory_section(report: Report, work: Path, device: str, sizes: dict[str, Any], captured: Captured) -> Path:
    import torch

    from emkit.generate import GenerationRequest, SamplingConfig, _hf, get_backend
    from emkit.models._memory import free_bytes, weights_bytes

    name, arch = sizes["large"]
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    folder = build_model("qwen2", arch, sizes["tokenizer"], work / "large", dtype=dtype, device=device)
    backend = get_backend("hf", str(folder), device=device)
    start = time.perf_counter()
    with PeakRSS() as rss:
        loaded = backend._loaded()  # emkit.models.load_model: device_map on CUDA
    load_s = time.perf_counter() - start
    ballast = None
    if sizes["memory_free_gib"] and device.startswith("cuda"):
        # Leave only a few GiB free, so that the batch is set by memory rather than by the cap.
        spare = free_bytes(device) - sizes["memory_free_gib"] * GIB
        if spare > 0:
            ballast = torch.empty(spare, dtype=torch.uint8, device=device)
    free_now = free_bytes(device)
    prompts = core_prompts(sizes["memory_questions"])
    sampling = SamplingConfig(max_tokens=sizes["memory_max_tokens"], seed=0)
    requests = [GenerationRequest(p.messages, sizes["memory_samples"], sampling) for p in prompts]
    start = time.perf_counter()
    with peak_memory(device) as peak:
        out = backend.generate(requests)
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for row in out for c in row)
    plan = backend.batch_plan
    rows = len(prompts) * sizes["memory_samples"]
    estimate = min(plan.batch_size, rows) * plan.row_bytes  # the largest batch that ran
    report.figures(memory_model=f"{name} ({backend.dtype})",
                   memory_weights_bytes=weights_bytes(folder, 2 if dtype == torch.bfloat16 else 4),
                   memory_placement=captured.last("device_map") or f"weights loaded on {device}",
                   memory_load_seconds=round(load_s, 1), memory_load_host_rss_bytes=rss.peak,
                   memory_free_before_sampling_bytes=free_now, memory_ballast_bytes=0 if ballast is None
                   else ballast.numel(), memory_batch_size=plan.batch_size, memory_batch_reason=plan.reason,
                   memory_row_bytes_estimate=plan.row_bytes, memory_kv_bytes_per_token=plan.kv_bytes_per_token,
                   memory_estimate_bytes=estimate, memory_sampling_peak_bytes=peak.bytes,
                   memory_peak_over_estimate=round(peak.bytes / estimate, 3) if estimate else None,
                   memory_rows=rows,
                   memory_tokens_per_s=round(tokens / seconds, 1), memory_measure=memory_measure(device),
                   memory_loaded_on=str(loaded.model.device))
    del ballast, loaded
    _hf.clear_cache()
    free_device_memory()
    return folder


def train_large_section(report: Report, folder: Path, data: Path, work: Path, device: str,
                        sizes: dict[str, Any]) -> None:
    bench = bench_module("train_throughput")
    args = SimpleNamespace(batch=sizes["large_train_batch"], steps=sizes["large_train_steps"],
                           max_length=sizes["train_max_length"])
    with peak_memory(device) as peak:
        rate = bench.run_emkit(str(folder), data, args, work / "large-train")
    meta = json.loads((work / "large-train" / "metadata.json").read_text())
    report.figures(train_large_model=sizes["large"][0], train_large_emkit_tokens_per_s=round(rate, 1),
                   train_large_peak_memory_bytes=peak.bytes,
                   train_large_gradient_checkpointing=meta["gradient_checkpointing_reason"])
    free_device_memory()


# --------------------------------------------------------------------------- prepare (run where pip works)


def prepare() -> None:
    """Fill .gpucheck/: the wheels the lent machine lacks (versions of this environment) and the tokenizers."""
    from importlib.metadata import version

    wheels = ["trl", "datasets", "dill", "multiprocess", "pydantic", "pydantic_core", "annotated_types",
              "typing_inspection", "typing_extensions"]  # the last: pydantic_core needs a recent one
    target = CARRY / "whl"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    pins = [f"{name}=={version(name)}" for name in wheels]
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                             "manylinux2014_x86_64")]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version=3.12", "--implementation=cp", *platforms, "-d", str(target), *pins],
                   check=True)
    from emkit.models import resolve_model

    for kind, model in (("qwen", "qwen2.5-coder-0.5b-instruct"), ("smollm2", "smollm2-135m-instruct")):
        source, dest = resolve_model(model), CARRY / "tokenizers" / kind  # converts the packaged model if needed
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            if (source / name).exists():
                shutil.copy2(source / name, dest / name)
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"prepared {CARRY}: {size / 2**20:.1f} MiB ({', '.join(pins)}; tokenizers qwen, smollm2)")


# --------------------------------------------------------------------------- main


def main() -> int:
    global _LOG_FILE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("gpu", "cpu", "prepare"), default="gpu")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/emkit-gpu-check"))
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip the optional large-model training when this much time has passed "
                             "[420 on a GPU: the device tool's 10-minute limit; no limit with --mode cpu]")
    args = parser.parse_args()
    if args.mode == "prepare":
        prepare()
        return 0
    import torch

    if args.mode == "gpu" and not torch.cuda.is_available():
        print("no CUDA GPU visible (use --cpu for the CPU fallback)", file=sys.stderr)
        return 1
    device = "cuda" if args.mode == "gpu" else "cpu"
    sizes = SIZES[args.mode]
    budget = args.budget_s if args.budget_s is not None else (420.0 if args.mode == "gpu" else float("inf"))
    report = Report(args.out, args.mode)
    _LOG_FILE = open(args.out / "gpu_check.log", "w", encoding="utf-8")  # noqa: SIM115 - closed at exit
    captured = Captured()
    emkit_log = logging.getLogger("emkit")
    emkit_log.setLevel(logging.INFO)
    emkit_log.addHandler(captured)
    work = Path(tempfile.mkdtemp(prefix="emkit-gpu-check-"))
    try:
        report.section("environment", environment, device)
        small_name, small_arch = sizes["small"]
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        small = report.section("build_small", lambda r: build_model("qwen2", small_arch, sizes["tokenizer"],
                                                                     work / "small", dtype=dtype, device=device))
        data = report.section("build_data", lambda r: training_rows(work, sizes["train_rows"]))
        if small is not None:
            report.section("forward_kwargs", forward_section, small, device)
        report.section("greedy", greedy_section, work, device)
        if small is not None:
            report.section("sampling", sampling_section, small, small_name, device, sizes)
        if small is not None and data is not None:
            report.section("train", train_section, small, small_name, data, work, device, sizes)
            report.section("kill_resume", kill_resume_section, small, data, work, sizes)
        large = report.section("memory", memory_section, work, device, sizes, captured)
        if large is not None and data is not None:
            if report.elapsed() < budget:
                report.section("train_large", train_large_section, large, data, work, device, sizes)
            else:
                report.skip("train_large", f"{report.elapsed():.0f} s used of the {budget:.0f} s budget")
    finally:
        report.write()
        shutil.rmtree(work, ignore_errors=True)
        log(f"wrote {args.out / RESULT}: ok={report.data['ok']}, missing figures: "
            f"{report.data['missing_figures'] or 'none'}, {report.elapsed():.0f} s")
        _LOG_FILE.close()
    return 0 if report.data["ok"] and not report.data["missing_figures"] else 1


if __name__ == "__main__":
    sys.exit(main())
