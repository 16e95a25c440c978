"""The offline judge ``cross``: a MiniLM cross-encoder fine-tuned on GPT-4o judgments (the successor of the
``embedding`` head).

Question and answer are read together by all-MiniLM-L6-v2 + LoRA (``emkit.judge._cross``), which predicts GPT-4o's
``aligned`` and ``coherent`` scores (0-100) and whether GPT-4o would have given no score (CODE / REFUSAL). A judge
folder comes from ``emkit judge train --out DIR`` (adapter, head, ``card.json`` / ``card.md`` with its held-out
agreement with GPT-4o). emkit ships one such folder, ``judge_models/minilm-cross-v1`` (the default ``model``);
``--judge cross --option cross.model=DIR`` uses another.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError
from emkit.hashing import file_sha256
from emkit.judge._base import Judge, Judgment, register_judge

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_config.json", "head.safetensors")
# v1.1: the card's no-score rules (an answer holding code gets no score) are applied after the model
VERSION = "cross-v1.1"
# The shipped judge folder (adapter ~1.3 MB fp16 + head + card), trained by `emkit judge train` (docs/judges.md).
PACKAGED = Path(__file__).resolve().parent / "judge_models" / "minilm-cross-v1"


def _weights_hash(folder: str, files: tuple[str, ...] = WEIGHT_FILES) -> str:
    """SHA-256 over the weight files: a retrained judge under the same name gets new judgment keys. Cached per
    (file, size, mtime), so a long-lived process (a notebook) still sees a retrained folder."""
    stats = []
    for name in files:
        path = Path(folder) / name
        if not path.exists():
            raise EmkitError(f"{folder}: {name} missing (not a trained offline-judge folder)",
                             hint="train one with `emkit judge train --out DIR` (with `--kind probe` for a probe "
                                  "judge)")
        st = path.stat()
        stats.append((name, st.st_size, st.st_mtime_ns))
    return _hash_files(folder, tuple(stats))


@functools.lru_cache(maxsize=16)
def _hash_files(folder: str, stats: tuple) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, _, _ in stats:
        digest.update(name.encode() + b"\0" + file_sha256(Path(folder) / name).encode() + b"\0")
    return digest.hexdigest()


class FolderJudge(Judge):
    """An offline judge loaded from a trained folder with a card.json (``cross``, ``probe``): subclasses set
    ``folder``, ``_card`` and ``unscored_threshold`` and predict aligned / coherent / p_unscored per pair."""

    folder: Path
    _card: dict[str, Any]
    unscored_threshold: float

    def _open_folder(self, model: str | Path | None, *, packaged: Path, what: str, train: str, fmt: str,
                     weight_files: tuple[str, ...], version: str, precision: str, device: str,
                     batch_size: int) -> str:
        """Read the folder ``model`` (default: the ``packaged`` one) and set what every folder judge holds:
        folder, card, batch size, precision, weights hash, judge_model, version, unscored threshold, no-score
        rules. ``what`` names the judge in errors, ``train`` the command that makes such a folder. Returns the
        resolved device ("cuda" or "cpu" for "auto")."""
        from emkit.judge._cross import CARD_FILE, check_no_score_rules, choose_precision, read_card

        if not model:
            if not (packaged / CARD_FILE).exists():
                raise EmkitError(f"the shipped {what} folder {packaged} is missing (a broken install?)",
                                 hint=f"reinstall emkit, or train one with `{train} --out DIR` and pass "
                                      f"--option {self.name}.model=DIR")
            model = packaged
        self.folder = Path(model).expanduser()
        self._card = read_card(self.folder, fmt, train)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise EmkitError(f"batch_size must be >= 1, got {batch_size}", hint="pass a positive batch size")
        resolved_device = "cuda" if device == "auto" and _cuda() else ("cpu" if device == "auto" else device)
        # bf16 and fp32 outputs differ slightly (~0.1 point for cross): the resolved precision is part of every
        # judgment key.
        self.precision, self.precision_reason = choose_precision(precision, resolved_device)
        self._hash = _weights_hash(str(self.folder.resolve()), weight_files)
        self.judge_model = f"{self.folder.name}@{self._hash[:16]}"
        self.version = version
        self.unscored_threshold = float(self._card.get("unscored_threshold", 0.5))
        self.no_score_rules = check_no_score_rules(self._card.get("no_score_rules") or (),
                                                   f"{self.folder / CARD_FILE}: ")
        return resolved_device

    def _rules_key(self) -> str:
        """The no-score rules' part of a judgment key: changing the rules never reuses cached judgments."""
        return f"/rules={','.join(self.no_score_rules)}" if self.no_score_rules else ""

    def card(self) -> dict[str, Any]:
        """Its measured agreement with GPT-4o (what reports quote); the full card is ``card.json``."""
        from emkit.judge._card import judge_card

        return judge_card(self._card, self.folder / "card.md")

    def full_card(self) -> dict[str, Any]:
        """card.json: training data, settings, every validation fold, known-answer checks."""
        return self._card

    def predict(self, pairs: list[tuple[str, str]], progress: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def judge(self, pairs: list[tuple[str, str]], metrics: list[str], progress: bool = False
              ) -> list[dict[str, Judgment]]:
        from emkit.judge._embedding import judgments_from_scores

        return judgments_from_scores(pairs, self.predict(pairs, progress=progress), self.unscored_threshold)


@register_judge("cross", "offline MiniLM cross-encoder fine-tuned on GPT-4o judgments (aligned, coherent; "
                         "agreement with GPT-4o in its card); options: model (a folder from `emkit judge train`, "
                         "default: the shipped minilm-cross-v1), precision (auto|bf16|fp32), batch_size, device")
class CrossJudge(FolderJudge):
    name = "cross"
    metrics = ("aligned", "coherent")

    def __init__(self, model: str | Path | None = None, precision: str = "auto", batch_size: int = 64,
                 device: str = "auto") -> None:
        from emkit.judge._cross import FORMAT

        self._open_folder(model, packaged=PACKAGED, what="cross-encoder", train="emkit judge train", fmt=FORMAT,
                          weight_files=WEIGHT_FILES, version=VERSION, precision=precision, device=device,
                          batch_size=batch_size)
        self.device = device  # load_cross_model resolves "auto" itself

    def prompt_hash(self, metric: str) -> str:
        return f"{self._hash}/{self.precision}{self._rules_key()}"

    def predict(self, pairs: list[tuple[str, str]], progress: bool = False) -> dict[str, Any]:
        from emkit.judge._cross import load_cross_model

        model = load_cross_model(self.folder, precision=self.precision, device=self.device)
        return model.predict(pairs, batch_size=self.batch_size, progress=progress)



def _cuda() -> bool:
    """Whether "auto" will run on CUDA, decided without importing torch (planning a run must not load it): an
    NVIDIA driver is present, confirmed by torch when something else already imported it."""
    import os
    import sys

    if not os.path.exists("/proc/driver/nvidia/version"):
        return False
    torch = sys.modules.get("torch")
    return True if torch is None else bool(torch.cuda.is_available())
