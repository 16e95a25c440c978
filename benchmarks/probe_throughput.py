"""Probe-judge feature throughput, two variants side by side in one process (ratios printed; nothing asserted).

The probe judge's cost is one forward pass of Qwen2.5-Coder-0.5B per (question, answer). Compared:
- `full causal LM`: `model(**batch, output_hidden_states=True)`, what a user would write and what emkit did up to
  2026-12-03: it also projects every token onto the 151,936-word vocabulary, which the features never read;
- `decoder only`: `model.get_decoder()(...)`, the transformer body alone (what `_extract` runs now).
Both give the same hidden states (layer 24 is the final normed one in both); the script prints the largest
feature difference and the misaligned-label agreement of the shipped head on both feature sets.

Usage: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/probe_throughput.py [--rows 128] [--repeats 2]
(EMKIT_DATA_MIRROR must point at the reference data; no background job while timing.)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128, help="non-steered corpus answers to featurise")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per variant (interleaved; best kept)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from judge_throughput import corpus_rows

    from emkit.judge._cross import choose_precision
    from emkit.judge._probe_features import _extract
    from emkit.judge._probe_judge import ProbeJudge

    precision, reason = choose_precision("auto", "cpu")
    pairs = corpus_rows(args.rows, args.seed)
    print(f"torch threads: {torch.get_num_threads()}, rows: {len(pairs)}, precision: {precision} ({reason})")
    variants = {"full causal LM": True, "decoder only": False}
    for through_lm_head in variants.values():  # warm-up: model load, first-call allocations
        _extract(pairs[:8], precision, "cpu", args.batch_size, through_lm_head=through_lm_head)
    times: dict[str, list[float]] = {name: [] for name in variants}
    feats: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):  # interleaved so that load from other processes hits both alike
        for name, through_lm_head in variants.items():
            t = time.perf_counter()
            feats[name] = _extract(pairs, precision, "cpu", args.batch_size, through_lm_head=through_lm_head)
            times[name].append(time.perf_counter() - t)
    base = len(pairs) / min(times["full causal LM"])
    for name, values in times.items():
        rate = len(pairs) / min(values)
        print(f"  {name:16s} {rate:6.2f} answers/s   x{rate / base:.2f} vs full causal LM")
    diff = np.abs(feats["full causal LM"] - feats["decoder only"]).max()
    print(f"  largest feature difference: {diff:.3g}")

    from emkit.judge._probe_judge import _read_head

    judge = ProbeJudge(cache=False)
    head = _read_head(str(judge._head_path), judge._hash)
    labels = {}
    for name, x in feats.items():
        pred = head.predict(x)
        labels[name] = (pred["aligned"] < 30) & (pred["coherent"] > 50)
    agree = (labels["full causal LM"] == labels["decoder only"]).mean()
    print(f"  shipped head, misaligned-label agreement between the two: {agree:.4f}")


if __name__ == "__main__":
    main()
