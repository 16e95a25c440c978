"""Shared test setup: offline hub, the reference-data mirror, and small models.

- ``smollm2_dir``: the packaged SmolLM2-135M-Instruct converted folder (pulled once into the cache).
- ``tiny_model_dir``: a random-init 2-layer Llama (~1M params) with SmolLM2's tokenizer and chat template,
  for fast plumbing tests where the model's answers do not matter.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "EMKIT_DATA_MIRROR" not in os.environ and SHARED_DATA.exists():
    os.environ["EMKIT_DATA_MIRROR"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"reference data mirror {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from emkit.models import pull

    return pull("smollm2-135m-instruct", progress=False)


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def real_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Result files made by the real stages (mock sampling, the embedding and numbers judges): runs.csv,
    checkpoints.jsonl, numbers.parquet; see tests/real_results.py."""
    from real_results import build

    return build(tmp_path_factory.mktemp("real-results"))
