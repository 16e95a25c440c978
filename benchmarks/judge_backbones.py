"""Which frozen backbone knows harm better? MiniLM vs the packaged Qwen2.5-Coder-0.5B, side by side.

Both backbones get the same training rows (every base-model family but the held-out one, question-stratified),
the same MLP head (``emkit.judge._train.fit_mlp``, 3 seeds) and the same held-out rows (a random sample of the
held-out family's ordinary fine-tunes), so the difference is the features alone:
- MiniLM: sentence-transformers mean pooling of "question [SEP] answer" (384 dims);
- Qwen: the chat-formatted pair (user: question, assistant: answer, 256 tokens at most), mean over the answer's
  tokens and the last token of hidden layers 8, 14, 20 and 24 (7,168 dims), bf16 where the CPU has it.

Measured 2026-12-02 (2 cores, AMX/bf16; 14B family held out, 8,000 train / 1,500 held-out rows; Qwen features
5-6 rows/s, 29 min; MiniLM 41 rows/s): see the #11 note. Usage (about 35 min on 2 free cores):

    EMKIT_DATA_MIRROR=../shared/data python benchmarks/judge_backbones.py --out /tmp/backbones
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emkit.judge._corpus import is_steered, load_corpus, question_weights, stratified_sample
from emkit.judge._cross_train import base_family
from emkit.judge._embedding import Head
from emkit.judge._train import _targets, fit_mlp
from emkit.judge._validate import evaluate

KEYS = ("auroc_misaligned", "spearman_aligned", "recall_misaligned", "precision_misaligned",
        "rate_error_mean_pp", "rate_bias_pp")


def minilm_features(pairs: list[tuple[str, str]]) -> np.ndarray:
    from emkit.judge._encoder import load_encoder

    encoder = load_encoder("fp32")
    return encoder.encode([f"{q} [SEP] {a}" for q, a in pairs], batch_size=32, convert_to_numpy=True,
                          show_progress_bar=False).astype(np.float32)


def qwen_features(pairs: list[tuple[str, str]]) -> np.ndarray:
    """The ``probe`` judge's features (``emkit.judge._probe_features``), bf16 where the CPU has it."""
    from emkit.judge._cross import choose_precision
    from emkit.judge._probe_features import probe_features

    return probe_features(pairs, precision=choose_precision("auto", "cpu")[0], progress=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", default="model:Qwen2.5-14B-Instruct", help="base family (base_family)")
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--test", type=int, default=1500)
    parser.add_argument("--out", type=Path, required=True, help="folder for feature caches and results.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = load_corpus()
    fam = np.array([base_family(r) for r in rows])
    rng = np.random.default_rng(0)
    pool = [i for i in np.flatnonzero(fam == args.held_out) if not is_steered(rows[i])]
    test = sorted(rng.choice(pool, size=min(args.test, len(pool)), replace=False).tolist())
    train_pool = np.flatnonzero(fam != args.held_out)
    order = stratified_sample([rows[i] for i in train_pool], cap_per_question=10**9, seed=0)[: args.train]
    train = [int(train_pool[i]) for i in order]
    train_rows, test_rows = [rows[i] for i in train], [rows[i] for i in test]
    ya, yc, yu = _targets(train_rows)
    results: dict[str, dict] = {}
    for name, extract in (("minilm", minilm_features), ("qwen", qwen_features)):
        xs = []
        for part, idx in (("train", train), ("test", test)):
            cache = args.out / f"{name}-{part}-{len(idx)}.npy"
            if not cache.exists():
                t0 = time.time()
                np.save(cache, extract([(rows[i]["question"], str(rows[i]["answer"])) for i in idx]))
                print(f"{name} {part}: {len(idx)} rows in {time.time() - t0:.0f} s", flush=True)
            xs.append(np.load(cache))
        mu, sd = xs[0].mean(0), xs[0].std(0) + 1e-6
        xtr, xte = (xs[0] - mu) / sd, (xs[1] - mu) / sd
        per_seed = []
        for seed in (0, 1, 2):
            head = Head(fit_mlp(xtr, ya, yc, yu, weights=question_weights(train_rows), seed=seed, epochs=40), {})
            per_seed.append(evaluate(test_rows, head.predict(xte)))
        values = {k: [m[k] for m in per_seed if m.get(k) is not None] for k in KEYS}
        results[name] = {k: round(float(np.mean(v)), 4) if v else None for k, v in values.items()}
        print(name, results[name], flush=True)
    ratio = results["qwen"]["auroc_misaligned"] / results["minilm"]["auroc_misaligned"]
    print(f"AUROC qwen / minilm: {ratio:.3f}")
    (args.out / "results.json").write_text(json.dumps({"held_out": args.held_out, "results": results}, indent=1))


if __name__ == "__main__":
    main()
