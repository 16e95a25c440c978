#!/usr/bin/env bash
# emkit's GPU check: one prepared run that writes one JSON of figures ($OUT/gpu_check.json, plus gpu_check.log).
# What it measures (benchmarks/gpu/check.py has the details): the KV-cache keyword the model's forward really
# uses; the tiny test model's greedy answers on CPU vs GPU (fp32) and vs transformers' generate; HF sampling
# throughput of emkit's decode loop vs naive model.generate (same model and prompts) with the batch size emkit
# chose from free memory; LoRA training throughput in bf16, emkit defaults vs stock TRL; a kill -9 and resume of
# `emkit train`; a 7B model loaded with device_map (host RAM during the load), its memory-aware batch size with
# free memory cut to 12 GiB, the estimate vs the measured peak; LoRA steps of the 7B model if time is left.
# Models are random-init from configs (Qwen2.5-0.5B and Qwen2.5-7B architectures, Qwen's tokenizer), since the
# lent machine reaches no hub. Exit 0 when every section passed and every figure is there.
#
# Usage:
#   bash benchmarks/gpu/check.sh --prepare   # here (where pip works): wheels + tokenizers into .gpucheck/ (~19 MiB)
#   bash benchmarks/gpu/check.sh [--gpu]     # on a CUDA machine (installs .gpucheck/whl/*.whl under /tmp first)
#   bash benchmarks/gpu/check.sh --cpu       # CPU fallback: tiny models, every section, ~1-3 min on 2 cores
#                                            # (tests/test_gpu_check.py runs it in the test suite)
#
# On a lent H200 through the device tool (no hub, no internet; torch, transformers, peft, accelerate are there,
# TRL, datasets and pydantic are not):
#   1. here, in the repository root the device tool sends:  bash benchmarks/gpu/check.sh --prepare
#      It pip-downloads (--no-deps, CPython 3.12, manylinux x86-64) trl, datasets, dill, multiprocess, pydantic,
#      pydantic_core, annotated_types, typing_inspection and typing_extensions at this environment's versions
#      (e.g. trl==1.16.0) into .gpucheck/whl, and copies the Qwen2.5 and SmolLM2 tokenizers of the packaged
#      models into .gpucheck/tokenizers. .gpucheck/ is git-ignored: the device tool carries it only when named.
#      To test the pinned transformers rather than the machine's (5.17 when last seen, whose forward takes
#      past_key_values, not cache=): pip download transformers==5.24.0 --no-deps -d .gpucheck/whl (+13 MiB).
#   2. device tool `run` with carry [".gpucheck"] and timeout_s 540, command:  bash benchmarks/gpu/check.sh
#      Expected, an estimate (this script has not yet run on a GPU): ~5-6 minutes on one H200. Install ~15 s;
#      forward, greedy and the 0.5B sections ~3 min with two `emkit train` subprocesses; building, saving and
#      loading the 7B ~1 min; its sampling ~30 s; 7B LoRA steps ~30 s, skipped after 420 s. The JSON and the
#      log come back as the reply's files.
#   3. give the machine back unless a rerun follows at once; put the JSON's "figures" in the issue's note.
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE=gpu
case "${1:-}" in
  ""|--gpu) ;;
  --cpu) MODE=cpu ;;
  --prepare) MODE=prepare ;;
  -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
  *) echo "unknown argument $1 (use --cpu, --prepare or nothing)" >&2; exit 2 ;;
esac
PY=${PY:-python3}
OUT=${OUT:-/tmp/emkit-gpu-check}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_NO_ADVISORY_WARNINGS=1
if [ "$MODE" = gpu ] && compgen -G ".gpucheck/whl/*.whl" >/dev/null; then
  SITE=/tmp/emkit-check-site
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    .gpucheck/whl/*.whl || { echo "installing the carried wheels failed" >&2; exit 1; }
  export PYTHONPATH="$SITE:$PWD/src"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
mkdir -p "$OUT"
shift $(( $# > 0 ? 1 : 0 ))
exec $PY benchmarks/gpu/check.py --mode "$MODE" --out "$OUT" "$@"
