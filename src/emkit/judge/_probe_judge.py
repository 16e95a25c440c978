"""The offline judge ``probe``: an MLP head on frozen hidden states of the packaged Qwen2.5-Coder-0.5B-Instruct
reading question and answer as one chat (``emkit.judge._probe_features``), predicting GPT-4o's ``aligned`` and
``coherent`` scores and whether GPT-4o would have given no score.

Why it exists beside the default ``cross``: on the same held-out folds it ranks answers closer to GPT-4o (Spearman
of ``aligned`` 0.82-0.87 on the held-out Qwen2.5 families against 0.78-0.81) and under-counts the medical domain less,
at the price of a 0.5B LM forward pass per answer (~1.9 answers/s on 2 CPU cores in bf16, ~50x slower than
``cross``; benchmarks/probe_throughput.py); its card (``judge_models/qwen-probe-v1/card.md``) has the measured
table. A folder comes from ``emkit judge train --kind probe --out DIR``; ``--option probe.model=DIR`` uses it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import EmkitError
from emkit.judge._base import register_judge
from emkit.judge._cross_judge import FolderJudge

VERSION = "probe-v1"
PACKAGED = Path(__file__).resolve().parent / "judge_models" / "qwen-probe-v1"
WEIGHT_FILES = ("head.npz",)


@register_judge("probe", "offline judge: MLP head on frozen Qwen2.5-Coder-0.5B hidden states, trained on GPT-4o "
                         "judgments (aligned, coherent; agreement in its card; ~50x slower than cross); options: model "
                         "(a folder from `emkit judge train --kind probe`), precision (auto|bf16|fp32), batch_size, "
                         "device, cache")
class ProbeJudge(FolderJudge):
    name = "probe"
    metrics = ("aligned", "coherent")

    def __init__(self, model: str | Path | None = None, precision: str = "auto", batch_size: int = 8,
                 device: str = "auto", cache: bool = True) -> None:
        from emkit.judge._probe_train import FORMAT, HEAD_FILE

        self.device = self._open_folder(model, packaged=PACKAGED, what="probe-judge",
                                        train="emkit judge train --kind probe", fmt=FORMAT,
                                        weight_files=WEIGHT_FILES, version=VERSION, precision=precision,
                                        device=device, batch_size=batch_size)
        self.use_cache = bool(cache)
        self._head_path = self.folder / HEAD_FILE

    def prompt_hash(self, metric: str) -> str:
        from emkit.judge._probe_features import feature_id

        return f"{self._hash}/{feature_id(self.precision)}{self._rules_key()}"

    def predict(self, pairs: list[tuple[str, str]], progress: bool = False) -> dict[str, np.ndarray]:
        from emkit.judge._cross import apply_no_score_rules
        from emkit.judge._probe_features import DIM, feature_cache, probe_features

        head = _read_head(str(self._head_path), self._hash)
        if head.weights[0][0].shape[0] != DIM:
            raise EmkitError(f"{self._head_path}: head takes {head.weights[0][0].shape[0]} features, not {DIM}",
                             hint="retrain it with `emkit judge train --kind probe` for this emkit version")
        x = probe_features(pairs, precision=self.precision, device=self.device, batch_size=self.batch_size,
                           cache=feature_cache() if self.use_cache else None, progress=progress)
        return apply_no_score_rules(pairs, head.predict(x), self.no_score_rules)


@functools.lru_cache(maxsize=4)
def _read_head(path: str, weights_hash: str) -> Any:
    """The head of a folder, read once per process and weights (``weights_hash`` keys a retrained folder anew)."""
    from emkit.judge._embedding import Head

    return Head.read(path, "probe-judge head")
