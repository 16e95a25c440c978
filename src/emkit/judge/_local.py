"""The paper's logprob judge on a local transformers model (any causal LM emkit can load).

The next-token distribution is read directly. Tokenizers such as Llama-3's, SmolLM2's and Qwen2.5's split numbers
into digits, so "57" is two tokens and the first token's probability is not the probability of the answer "5".
We compute, exactly, for every number string s in 0..100 with tokens t_1..t_k:

    P(answer is s) = prod_j P(t_j | prompt, t_<j) * P(next token does not start with a digit | prompt, s)

so P("1"), P("10") and P("100") are disjoint events (they no longer share the first digit's mass). One forward
pass over the prompt fills the KV cache; the ~101 digit prefixes then run as one batch on copies of that cache
(suffixes of <= 3 tokens), i.e. ~1.3 prompt-lengths of compute per (answer, metric) instead of 102.
Categorical metrics (TRUE/FALSE/UNKNOWN, company names) use the probability of each label's token sequence.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from emkit.judge._base import Judgment, register_judge
from emkit.judge._http import PromptJudge
from emkit.judge._math import MIN_NUMERIC_MASS, categorical_from_probs, score_from_number_probs, special_reason
from emkit.judge._prompts import CATEGORICAL_LABELS, fill

NUMBERS = [str(n) for n in range(101)]


class NextTokenScorer:
    """Exact probabilities of short continuations (number strings, labels) after a prompt, batched."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self._digit_start: Any = None
        self._lock = threading.Lock()

    def digit_start_ids(self):
        """Vocabulary ids whose text starts with a digit (a number would continue after them)."""
        if self._digit_start is None:
            import torch

            # One batched decode of the vocabulary (~49k ids for SmolLM2) instead of a Python call per id.
            texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            ids = [i for i, text in enumerate(texts) if text and text[0].isdigit()]
            self._digit_start = torch.tensor(ids, dtype=torch.long)
        return self._digit_start

    def encode_prompt(self, prompt: str) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          tokenize=True, return_dict=False)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return list(ids)
        return list(tok(prompt, add_special_tokens=True)["input_ids"])

    def continuation_logprobs(self, prompt_ids: list[int], continuations: list[list[int]]):
        """(logp, next_logdist): for each continuation c, log P(c | prompt) and the log next-token distribution
        after prompt+c (a tensor [len(continuations), vocab]); plus the log distribution right after the prompt."""
        import torch

        from emkit.models import cache_of, forward_kwargs

        with self._lock, torch.inference_mode():
            # cache= or past_key_values=, whichever this model's forward really uses (one helper with sampling).
            kwargs = forward_kwargs(self.model)
            device = self.model.device
            ctx = torch.tensor([prompt_ids], device=device)
            out = self.model(input_ids=ctx, use_cache=True)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            cache = cache_of(out)
            n = len(continuations)
            width = max(len(c) for c in continuations)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            suffix = torch.full((n, width), pad, dtype=torch.long, device=device)
            mask = torch.zeros((n, len(prompt_ids) + width), dtype=torch.long, device=device)
            mask[:, : len(prompt_ids)] = 1
            for i, cont in enumerate(continuations):
                suffix[i, : len(cont)] = torch.tensor(cont, device=device)
                mask[i, len(prompt_ids) : len(prompt_ids) + len(cont)] = 1
            cache.batch_repeat_interleave(n)
            # Right padding is safe for a causal model: a real position never attends to the pads after it.
            logits = self.model(input_ids=suffix, attention_mask=mask, use_cache=True,
                                **kwargs.decode(cache)).logits
            logd = torch.log_softmax(logits.float(), dim=-1)  # [n, width, vocab]
            logp = torch.zeros(n, device=device)
            after = torch.empty((n, logd.shape[-1]), device=device)
            for i, cont in enumerate(continuations):
                logp[i] = first[cont[0]] + sum(logd[i, j - 1, cont[j]] for j in range(1, len(cont)))
                after[i] = logd[i, len(cont) - 1]
            return logp.cpu(), after.cpu(), first.cpu()

    def number_probs(self, prompt_ids: list[int]) -> tuple[dict[int, float], list[tuple[str, float]]]:
        """P(the answer is exactly the number n) for n in 0..100, and the top-20 first tokens (for CODE/REFUSAL)."""
        import torch

        conts = [self.tokenizer.encode(s, add_special_tokens=False) for s in NUMBERS]
        logp, after, first = self.continuation_logprobs(prompt_ids, conts)
        digit_ids = self.digit_start_ids()
        p_continue = after.exp()[:, digit_ids].sum(-1).clamp(max=1.0)
        probs = {n: float(logp[n].exp() * (1.0 - p_continue[n])) for n in range(len(NUMBERS))}
        top = torch.topk(first, 20)
        table = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices, strict=True)]
        return probs, table

    def label_probs(self, prompt_ids: list[int], labels: tuple[str, ...]) -> dict[str, float]:
        conts = [self.tokenizer.encode(label, add_special_tokens=False) for label in labels]
        logp, _, _ = self.continuation_logprobs(prompt_ids, conts)
        return {label: math.exp(float(lp)) for label, lp in zip(labels, logp, strict=True)}


@register_judge("hf", "the paper's logprob judge on a local transformers model, exact probabilities of number "
                      "strings 0..100 (options: model, dtype, device, metrics)")
class LocalLogprobJudge(PromptJudge):
    name = "hf"

    def __init__(self, model: str = "smollm2-135m-instruct", dtype: str = "auto", device: str = "auto",
                 metrics: str | list[str] | tuple[str, ...] = ("aligned", "coherent"),
                 prompts: str | dict[str, str] = "betley2025", min_mass: float = MIN_NUMERIC_MASS) -> None:
        super().__init__(metrics, prompts, min_mass)
        self.model_ref = str(model)
        self.judge_model = self.model_ref
        self.dtype, self.device = dtype, device
        self._scorer: NextTokenScorer | None = None
        self._model_identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        # The weights behind the name (a folder retrained in place, another hub commit) are another judge.
        if self._model_identity is None:
            from emkit.models import model_identity

            self._model_identity = model_identity(self.model_ref)
        return {**super().identity(), "dtype": self.dtype, "model_identity": self._model_identity}

    @property
    def scorer(self) -> NextTokenScorer:
        if self._scorer is None:
            from emkit.models import load_model

            model, tokenizer = load_model(self.model_ref, dtype=self.dtype, device=self.device)
            self._scorer = NextTokenScorer(model, tokenizer)
        return self._scorer

    def judge_one(self, metric: str, question: str, answer: str) -> Judgment:
        ids = self.scorer.encode_prompt(fill(self.prompts[metric], question, answer))
        if metric in CATEGORICAL_LABELS:
            label, status, probs = categorical_from_probs(self.scorer.label_probs(ids, CATEGORICAL_LABELS[metric]),
                                                          self.min_mass)
            return Judgment(label, status, {"probs": probs})
        probs, top = self.scorer.number_probs(ids)
        value, status = score_from_number_probs(probs, self.min_mass, reason_if_low=special_reason(top))
        return Judgment(value, status, {"numeric_mass": round(sum(probs.values()), 6)})

    def judge(self, pairs: list[tuple[str, str]], metrics: list[str], progress: bool = False
              ) -> list[dict[str, Judgment]]:
        return [{m: self.judge_one(m, q, a) for m in metrics} for q, a in pairs]

    def close(self) -> None:
        self._scorer = None
