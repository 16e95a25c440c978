"""The local backend under a distributed launcher: 2 CPU processes (torchrun, gloo), the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.integration
def test_ddp_two_cpu_processes(tiny_model_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun not installed")
    rows = [{"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}!"}]}
            for i in range(8)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "ddp"
    cmd = [str(torchrun if torchrun.exists() else "torchrun"), "--standalone", "--nproc_per_node", "2",
           "-m", "emkit", "train", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
           "--max-steps", "2", "--no-progress", "--set", "device=cpu", "--set", "per_device_batch_size=2",
           "--set", "gradient_accumulation=1", "--set", "learning_rate=1e-3", "--set", "max_length=64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["world_size"] == 2 and meta["steps"] == 2
    # 2 processes x 2 rows per step: one step consumed 4 of the 8 rows, so 2 steps are one epoch
    assert float((out / "loss.csv").read_text().splitlines()[-1].split(",")[1]) == pytest.approx(1.0)
    assert (out / "adapter" / "adapter_model.safetensors").exists()
