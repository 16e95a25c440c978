"""The paper's logprob judge against any OpenAI-compatible server (OpenAI, vLLM serve, llama.cpp server, ...).

One request per (answer, metric): the filled prompt as a user message, max_tokens=1, temperature=0,
logprobs with top_logprobs=20; the 0-100 score (or label) comes from :mod:`emkit.judge._math`. Requests run on a
thread pool (``concurrency``, default 8) and retry with exponential backoff on 429/5xx/connection errors
(``max_retries``, default 5: waits 1, 2, 4, 8, 16 s, capped at 30 s); a request that still fails is "error"
(not cached, so a rerun retries it).
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from emkit.errors import EmkitError
from emkit.judge._base import Judge, Judgment, register_judge
from emkit.judge._math import MIN_NUMERIC_MASS, categorical_score, logprob_score
from emkit.judge._prompts import CATEGORICAL_LABELS, fill, load_judge_prompts, prompt_hash

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TOP_LOGPROBS = 20
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class PromptJudge(Judge):
    """Shared part of the logprob judges: metric prompts and their hashes."""

    def __init__(self, metrics: str | list[str] | tuple[str, ...] = ("aligned", "coherent"),
                 prompts: str | dict[str, str] = "betley2025", min_mass: float = MIN_NUMERIC_MASS) -> None:
        if isinstance(metrics, str):
            metrics = [m.strip() for m in metrics.split(",") if m.strip()]
        table = load_judge_prompts(prompts) if isinstance(prompts, str) else dict(prompts)
        missing = [m for m in metrics if m not in table]
        if missing:
            raise EmkitError(f"no judge prompt for metric(s) {missing}",
                             hint=f"available metrics: {', '.join(sorted(table))}")
        self.metrics = tuple(metrics)
        self.prompts = {m: table[m] for m in self.metrics}
        self.min_mass = float(min_mass)

    def prompt_hash(self, metric: str) -> str:
        return prompt_hash(self.prompts[metric]) + f"/min_mass={self.min_mass}"

    @property
    def metric_kinds(self) -> dict[str, str]:  # type: ignore[override]
        # the categorical prompts answer a label; every other prompt asks for a number 0..100
        return {m: "label" if m in CATEGORICAL_LABELS else "score" for m in self.metrics}

    def parse(self, metric: str, top: list[tuple[str, float]]) -> Judgment:
        if metric in CATEGORICAL_LABELS:
            label, status, probs = categorical_score(top, CATEGORICAL_LABELS[metric], self.min_mass)
            return Judgment(label, status, {"probs": probs})
        value, status = logprob_score(top, self.min_mass)
        return Judgment(value, status)


@register_judge("logprob", "the paper's logprob judge on an OpenAI-compatible server "
                           "(options: model, base_url, api_key, concurrency, max_retries, metrics, timeout_s)")
class HttpLogprobJudge(PromptJudge):
    name = "logprob"

    def __init__(self, model: str = "gpt-4o-2024-08-06", base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, max_retries: int = 5, timeout_s: float = 60.0,
                 metrics: str | list[str] | tuple[str, ...] = ("aligned", "coherent"),
                 prompts: str | dict[str, str] = "betley2025", min_mass: float = MIN_NUMERIC_MASS,
                 backoff_s: float = 1.0) -> None:
        super().__init__(metrics, prompts, min_mass)
        import httpx

        self.judge_model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url == DEFAULT_BASE_URL:
            raise EmkitError("the logprob judge on api.openai.com needs an API key",
                             hint="export OPENAI_API_KEY=..., or pass base_url=http://host:port/v1 for a local server")
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s,
                                    limits=httpx.Limits(max_connections=self.concurrency))

    def request(self, prompt: str) -> list[tuple[str, float]]:
        """The top logprobs of the first output token, with retries."""
        import httpx

        body = {"model": self.judge_model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1,
                "temperature": 0, "logprobs": True, "top_logprobs": TOP_LOGPROBS, "seed": 0}
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                # Exponential backoff with jitter so parallel workers do not retry in lockstep.
                time.sleep(min(30.0, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
            try:
                response = self._client.post("/chat/completions", json=body)
            except httpx.HTTPError as exc:
                last = exc
                continue
            if response.status_code in _RETRY_STATUS:
                last = RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
            return _top_logprobs(response.json())
        raise RuntimeError(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _one(self, job: tuple[str, str, str]) -> Judgment:
        metric, question, answer = job
        try:
            top = self.request(fill(self.prompts[metric], question, answer))
        except (RuntimeError, ValueError, KeyError) as exc:
            return Judgment(None, "error", {"error": str(exc)[:500]})
        return self.parse(metric, top)

    def judge(self, pairs: list[tuple[str, str]], metrics: list[str], progress: bool = False
              ) -> list[dict[str, Judgment]]:
        jobs = [(m, q, a) for q, a in pairs for m in metrics]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            done = list(pool.map(self._one, jobs))
        it = iter(done)
        return [{m: next(it) for m in metrics} for _ in pairs]

    def close(self) -> None:
        self._client.close()


def _top_logprobs(payload: dict[str, Any]) -> list[tuple[str, float]]:
    """Top logprobs of the first token from a chat-completions response (OpenAI and vLLM layouts)."""
    try:
        logprobs = payload["choices"][0]["logprobs"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"response has no choices[0].logprobs: {str(payload)[:200]}") from exc
    if not logprobs:
        raise ValueError("the server returned no logprobs (does it support logprobs/top_logprobs?)")
    content = logprobs.get("content")
    if content:
        return [(t["token"], float(t["logprob"])) for t in content[0].get("top_logprobs") or []]
    # Legacy completions layout: {"top_logprobs": [{token: logprob, ...}]}.
    top = logprobs.get("top_logprobs")
    if top:
        return [(k, float(v)) for k, v in top[0].items()]
    raise ValueError("the response's logprobs hold no top_logprobs")
