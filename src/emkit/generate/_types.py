"""The one generation interface: requests (messages, n, sampling) -> completions, and the content hashes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from emkit.config import Config
from emkit.hashing import content_hash


class SamplingConfig(Config):
    """How answers are sampled. Defaults are the paper's evaluation settings (temperature 1, 600 tokens)."""

    max_tokens: int = Field(600, ge=1, description="most new tokens per answer (the paper: 600)")
    temperature: float = Field(1.0, ge=0.0, description="softmax temperature; 0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass; 1 = off")
    seed: int = Field(0, description="base seed; each sample's seed derives from it, its messages and its index")


@dataclass
class GenerationRequest:
    """``n`` samples of one conversation. ``sample_indices`` (default ``0..n-1``) names which samples these are,
    so a resumed run asks only for the missing ones and each keeps its own seed."""

    messages: list[dict[str, str]]
    n: int = 1
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    sample_indices: list[int] | None = None

    def __post_init__(self) -> None:
        if self.sample_indices is None:
            self.sample_indices = list(range(self.n))
        elif len(self.sample_indices) != self.n:
            raise ValueError(f"sample_indices has {len(self.sample_indices)} entries but n={self.n}")


@dataclass
class Completion:
    """One sampled answer."""

    text: str
    finish_reason: str  # "stop" (end of turn), "length" (hit max_tokens) or "error" (never stored)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # why sampling failed (finish_reason "error")

    def to_record(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": self.finish_reason, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}


def sample_seed(sampling: SamplingConfig, messages: list[dict[str, str]], sample_index: int) -> int:
    """The seed of one sample: a 63-bit number from (seed, messages, index).

    The model is deliberately not part of it: base and fine-tuned models draw the same random numbers for the
    same sample (common random numbers), which lowers the variance of their comparison.
    """
    digest = content_hash({"seed": sampling.seed, "messages": messages, "sample_index": sample_index},
                          kind="sample-seed")
    return int(digest[:15], 16)


def generation_key(*, backend: str, model: str, adapter: dict | None, identity: dict, sampling: SamplingConfig,
                   messages: list[dict[str, str]], sample_index: int) -> str:
    """The content hash a sample is stored under: everything that determines its text."""
    return content_hash({
        "backend": backend, "model": model, "adapter": adapter, "backend_identity": identity,
        "sampling": sampling.model_dump(mode="json"), "messages": messages, "sample_index": sample_index,
    }, kind="generation")
