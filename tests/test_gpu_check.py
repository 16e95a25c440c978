"""The device check's CPU fallback (`bash benchmarks/gpu/check.sh --cpu`) runs every section and writes every
figure, so the script a lent GPU will run cannot rot unnoticed (no GPU in CI)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _check_module():
    spec = importlib.util.spec_from_file_location("emkit_gpu_check", ROOT / "benchmarks" / "gpu" / "check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_gpu_check_cpu_fallback(tmp_path: Path, smollm2_dir: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PY": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu/check.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    result = out / "gpu_check.json"
    assert result.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(result.read_text())
    failed = {name: s.get("error") for name, s in data["sections"].items() if not s["ok"]}
    assert proc.returncode == 0 and not failed, (failed, proc.stdout[-3000:], proc.stderr[-2000:])
    check = _check_module()
    figures = data["figures"]
    assert [k for k in check.FIGURES if figures.get(k) is None] == [] == data["missing_figures"]
    assert set(data["sections"]) == {"environment", "build_small", "build_data", "forward_kwargs", "greedy",
                                     "sampling", "train", "kill_resume", "memory", "train_large"}
    assert not any("skipped" in s for s in data["sections"].values())
    assert figures["mode"] == "cpu" and figures["device"] == "cpu"
    assert figures["forward_cache_kwarg"] in ("cache", "past_key_values")
    assert figures["greedy_equal_generate"] is True and figures["greedy_distinct_tokens"] > 10
    assert figures["resume_resumed_from_step"] >= 2 and figures["resume_steps"] == check.SIZES["cpu"]["resume_steps"]
    assert figures["memory_batch_size"] >= 1 and "KV cache" in figures["memory_batch_reason"]
    for key in ("sampling_emkit_tokens_per_s", "sampling_naive_per_question_tokens_per_s",
                "train_stock_tokens_per_s", "train_emkit_tokens_per_s", "memory_tokens_per_s"):
        assert figures[key] > 0, key
    assert (out / "gpu_check.log").stat().st_size > 0
