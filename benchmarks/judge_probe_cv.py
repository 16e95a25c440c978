"""Would a ``probe`` judge (MLP head on frozen Qwen2.5-Coder-0.5B features) beat the shipped cross-encoder?

Cross-validates the probe head (``emkit.judge._probe_train.cross_validate_probe``) on the cross judge's six folds
(held-out base-model family x3, the other repositories, the code and medical domains) and prints each fold next to
the shipped ``minilm-cross-v1`` card's numbers for the same fold.

What is and is not comparable: the probe sees a uniform sample of the corpus (``probe_rows``: 14,000 main-repo rows
plus every foreign row, what the ~0.2 s/answer feature pass affords on 2 cores), the card covers every row of each
fold. AUROC and Spearman estimate the same population quantities; per-model rate errors do not (the sample leaves
far fewer models with >= 50 rows), so they are printed but not compared.

Features come from the on-disk cache (``cache_dir()/judge/probe``); a cold cache costs ~1.5-3 h for 14,550 rows.
Usage (each setting ~20 min of head fits on 2 cores once features are cached):

    EMKIT_DATA_MIRROR=../shared/data python benchmarks/judge_probe_cv.py --out /tmp/probe-cv '{"members": 1}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

KEYS = ("auroc_misaligned", "spearman_aligned", "recall_misaligned", "precision_misaligned", "rate_bias_pp")


def main() -> None:
    import emkit.judge
    from emkit.judge._corpus import load_corpus
    from emkit.judge._cross import choose_precision
    from emkit.judge._probe_features import feature_cache, probe_features
    from emkit.judge._probe_train import DEFAULTS, cross_validate_probe, probe_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", default=["{}"], help="JSON overrides of _probe_train.DEFAULTS")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json")
    parser.add_argument("--rows", type=int, default=DEFAULTS["rows"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shipped_card = Path(emkit.judge.__file__).parent / "judge_models" / "minilm-cross-v1" / "card.json"
    card = json.loads(shipped_card.read_text())["validation"]
    rows = load_corpus()
    sample = [rows[i] for i in probe_rows(rows, args.rows, DEFAULTS["seed"])]
    precision = choose_precision("auto", "cpu")[0]
    x = probe_features([(r["question"], str(r["answer"])) for r in sample], precision=precision,
                       cache=feature_cache(), progress=True)
    results = {}
    for spec in args.settings:
        settings = {**DEFAULTS, **json.loads(spec)}
        t0 = time.time()
        folds, _ = cross_validate_probe(sample, x, settings)
        results[spec] = folds
        print(f"\nsettings {spec} ({time.time() - t0:.0f} s, {len(sample)} rows, {precision} features)")
        print(f"{'fold':42s} {'part':12s} " + " ".join(f"{k[:18]:>18s}" for k in KEYS))
        for name, fold in folds.items():
            for part in ("all", "non_steered"):
                if part not in fold:
                    continue
                probe = " ".join(f"{fold[part].get(k, float('nan')):18.3f}" for k in KEYS)
                cross = " ".join(f"{card.get(name, {}).get(part, {}).get(k, float('nan')):18.3f}" for k in KEYS)
                print(f"{name:42s} {part + ' probe':12s} {probe}\n{'':42s} {part + ' cross':12s} {cross}")
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
