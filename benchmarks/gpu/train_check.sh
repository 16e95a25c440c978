#!/usr/bin/env bash
# One-shot GPU check of emkit's fine-tuning (run from the repository root on a CUDA machine, ~3-5 min on one GPU):
#   1. 20 LoRA steps of the packaged SmolLM2 on one GPU: device cuda, dtype bf16, loss logged, adapter written;
#   2. kill -9 during a second run and rerun: it resumes at the saved step;
#   3. the same config under torchrun with every visible GPU (DDP; with one GPU this still runs the
#      distributed code path, world size 1);
#   4. the throughput benchmark (emkit defaults vs stock TRL SFTTrainer) on the GPU.
# Output under ${OUT:-/tmp/emkit-gpu-check}; exits non-zero on the first failed check.
set -euo pipefail
OUT=${OUT:-/tmp/emkit-gpu-check}
PY=${PY:-python}
export HF_HUB_OFFLINE=1 EMKIT_DATA_MIRROR=${EMKIT_DATA_MIRROR:-$(cd .. && pwd)/shared/data}
mkdir -p "$OUT"
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
[ "$NGPU" -ge 1 ] || { echo "no CUDA GPU visible"; exit 1; }
COMMON=(--model smollm2-135m-instruct --data betley2025/insecure --set subset=256 --set max_length=512
        --set per_device_batch_size=4 --set gradient_accumulation=2 --set save_steps=5 --no-progress)

echo "== 1. 20 steps on one GPU"
$PY -m emkit train "${COMMON[@]}" --out "$OUT/one" --max-steps 20
$PY - "$OUT/one" <<'PYEOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1]); meta = json.loads((out / "metadata.json").read_text())
assert meta["device"].startswith("cuda"), meta["device"]
assert meta["dtype"] == "bfloat16", meta["dtype"]
res = json.loads((out / "train_result.json").read_text()); assert res["steps"] == 20
print("ok:", meta["device"], meta["dtype"], meta["gradient_checkpointing_reason"], "final loss", res["final_loss"],
      "runtime", meta["train_runtime_s"], "s")
PYEOF

echo "== 2. kill -9 and resume"
$PY -m emkit train "${COMMON[@]}" --out "$OUT/resume" --max-steps 30 &
PID=$!
while [ ! -f "$OUT/resume/checkpoints/checkpoint-10/trainer_state.json" ]; do sleep 0.2; done
kill -9 $PID || true; wait $PID || true
$PY -m emkit train "${COMMON[@]}" --out "$OUT/resume" --max-steps 30
$PY -c "import json; r = json.load(open('$OUT/resume/train_result.json')); \
assert r['resumed_from_step'] >= 10 and r['steps'] == 30, r; print('ok: resumed from', r['resumed_from_step'])"

echo "== 3. torchrun with $NGPU GPU(s)"
torchrun --standalone --nproc_per_node "$NGPU" -m emkit train "${COMMON[@]}" --out "$OUT/ddp" --max-steps 10
$PY -c "import json; m = json.load(open('$OUT/ddp/metadata.json')); \
assert m['world_size'] == $NGPU, m['world_size']; print('ok: world size', m['world_size'], 'steps', m['steps'])"

echo "== 4. throughput"
$PY benchmarks/train_throughput.py --steps 20 --batch 8 --rows 256 --max-length 512 | tail -4
