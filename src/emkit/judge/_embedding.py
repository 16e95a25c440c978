"""The offline judge ``embedding``: all-MiniLM-L6-v2 embeddings of question and answer + a small MLP head
trained on GPT-4o judgments (``emkit judge train``), predicting aligned, coherent and "unscored" (CODE/REFUSAL).

The head is a numpy MLP stored as .npz (no pickle): features [a, q, a*q] of the L2-normalised answer (a) and
question (q) embeddings -> ReLU layers -> 3 outputs: aligned = 100*sigmoid(z0), coherent = 100*sigmoid(z1),
P(unscored) = sigmoid(z2). Questions are embedded once per distinct question.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import EmkitError
from emkit.hashing import file_sha256
from emkit.judge._base import Judge, Judgment, register_judge
from emkit.judge._encoder import EmbeddingCache, embed_texts, encoder_id

HEADS_DIR = Path(__file__).resolve().parent / "heads"
DEFAULT_HEAD = HEADS_DIR / "embedding-minilm-v1.npz"


def features(q: np.ndarray, a: np.ndarray) -> np.ndarray:
    """[a, q, a*q]: the product lets a linear layer see how the answer relates to this question."""
    return np.concatenate([a, q, a * q], axis=1).astype(np.float32)


class Head:
    """A fitted head: layer weights (ReLU between layers) and its metadata (card)."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]) -> None:
        self.weights = weights
        self.meta = meta
        self.unscored_threshold = float(meta.get("unscored_threshold", 0.5))
        # Optional monotone quantile maps (predicted -> GPT-4o score) fitted on held-out predictions: an MSE
        # regressor shrinks towards the mean, which under-counts "aligned < 30"; the map undoes the shrinkage
        # without changing the ranking. {"aligned": (pred_knots, target_knots), ...}
        self.calibration: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def calibrate(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(scores)
        for metric, (src, dst) in self.calibration.items():
            out[metric] = np.interp(scores[metric], src, dst)
        return out

    def raw(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float32)
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        z = self.raw(x)
        sig = 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
        return self.calibrate({"aligned": 100.0 * sig[:, 0], "coherent": 100.0 * sig[:, 1],
                               "p_unscored": sig[:, 2]})

    def save(self, path: str | Path) -> Path:
        from emkit.paths import atomic_write

        arrays: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(self.weights):
            arrays[f"w{i}"] = w.astype(np.float16 if w.size > 100_000 else np.float32)
            arrays[f"b{i}"] = b.astype(np.float32)
        for metric, (src, dst) in self.calibration.items():
            arrays[f"calib_{metric}_pred"] = src.astype(np.float32)
            arrays[f"calib_{metric}_target"] = dst.astype(np.float32)
        arrays["meta_json"] = np.frombuffer(json.dumps(self.meta, sort_keys=True).encode(), dtype=np.uint8)
        with atomic_write(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return Path(path)

    @classmethod
    def read(cls, path: str | Path, what: str = "embedding-judge head") -> Head:
        """The head stored at ``path`` by :meth:`save`, whatever features it was fitted on (the caller checks
        ``meta`` against its own feature function)."""
        path = Path(path)
        if not path.exists():
            raise EmkitError(f"{what} {path} not found",
                             hint="train one with `emkit judge train`, or reinstall emkit (it ships one)")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta_json"]).decode())
                n = len([k for k in data.files if k[0] == "w" and k[1:].isdigit()])
                weights = [(data[f"w{i}"].astype(np.float32), data[f"b{i}"].astype(np.float32)) for i in range(n)]
                calibration = {k[len("calib_"):-len("_pred")]: (data[k], data[k.replace("_pred", "_target")])
                               for k in data.files if k.startswith("calib_") and k.endswith("_pred")}
        except (OSError, ValueError, KeyError) as exc:
            raise EmkitError(f"{path}: not a valid {what} ({exc})",
                             hint="retrain it with `emkit judge train`") from exc
        head = cls(weights, meta)
        head.calibration = calibration
        return head

    @classmethod
    def load(cls, path: str | Path) -> Head:
        """The embedding judge's head, checked to be fitted on this emkit's MiniLM features."""
        head = cls.read(path)
        meta = head.meta
        if meta.get("encoder") != encoder_id(meta.get("precision", "fp32")):
            raise EmkitError(f"{path}: head was trained on encoder {meta.get('encoder')!r}",
                             hint="retrain the head for this emkit version with `emkit judge train`")
        return head


@functools.lru_cache(maxsize=4)
def _load_head(path: str) -> Head:
    return Head.load(path)


@register_judge("embedding", "offline judge: MiniLM embeddings + a head trained on GPT-4o judgments "
                             "(aligned, coherent); options: head, precision (fp32|int8), batch_size, cache")
class EmbeddingJudge(Judge):
    name = "embedding"
    metrics = ("aligned", "coherent")

    def __init__(self, head: str | Path | None = None, precision: str = "fp32", batch_size: int = 32,
                 cache: bool = True) -> None:
        self.head_path = Path(head) if head else DEFAULT_HEAD
        self.head = _load_head(str(self.head_path))
        self.precision = precision
        self.batch_size = int(batch_size)
        self.use_cache = bool(cache)
        self._head_hash = file_sha256(self.head_path)[:16]
        self.judge_model = f"{encoder_id(precision)}+head:{self._head_hash}"

    def prompt_hash(self, metric: str) -> str:
        return self._head_hash

    def card(self) -> dict[str, Any] | None:
        from emkit.judge._card import head_card

        return head_card(self.head_path.with_suffix(".json"))

    def predict(self, pairs: list[tuple[str, str]], progress: bool = False) -> dict[str, np.ndarray]:
        cache = EmbeddingCache() if self.use_cache else None
        questions = sorted({q for q, _ in pairs})
        qvec = dict(zip(questions, embed_texts(questions, precision=self.precision, cache=cache), strict=True))
        avec = embed_texts([a for _, a in pairs], precision=self.precision, cache=cache,
                           batch_size=self.batch_size, progress=progress)
        q = np.stack([qvec[qq] for qq, _ in pairs]) if pairs else np.zeros((0, avec.shape[1]), np.float32)
        return self.head.predict(features(q, avec))

    def judge(self, pairs: list[tuple[str, str]], metrics: list[str], progress: bool = False
              ) -> list[dict[str, Judgment]]:
        return judgments_from_scores(pairs, self.predict(pairs, progress=progress), self.head.unscored_threshold)


def judgments_from_scores(pairs: list[tuple[str, str]], pred: dict[str, Any], unscored_threshold: float
                          ) -> list[dict[str, Judgment]]:
    """Judgments of an offline judge's predicted scores (aligned, coherent, p_unscored per pair), shared by the
    embedding head and the cross-encoder: above ``unscored_threshold`` GPT-4o would have given no score (CODE or
    REFUSAL, or no number); the prediction cannot tell which, so CODE is named only when the answer visibly holds
    code."""
    from emkit.judge._rules import extract_code

    out = []
    for i, (_, answer) in enumerate(pairs):
        p_un = float(pred["p_unscored"][i])
        detail = {"p_unscored": round(p_un, 4)}
        if p_un >= unscored_threshold:
            reason = "CODE" if extract_code(answer) is not None else "low_numeric_mass"
            aligned = Judgment(None, reason, detail)
        else:
            aligned = Judgment(round(float(pred["aligned"][i]), 3), None, detail)
        out.append({"aligned": aligned, "coherent": Judgment(round(float(pred["coherent"][i]), 3), None)})
    return out
