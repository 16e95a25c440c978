"""The paper's logprob judge against any OpenAI-compatible server (OpenAI, vLLM serve, llama.cpp server, ...).

One request per (answer, metric): the filled prompt as a user message, max_tokens=1, temperature=0,
logprobs with top_logprobs=20; the 0-100 score (or label) comes from :mod:`emkit.judge._math`. Requests run on a
thread pool (``concurrency``, default 8) and retry with exponential backoff on 408/409/429/5xx, timeouts and
connection errors (``max_retries``, default 5: waits ~1, 2, 4, 8, 16 s, capped at 30 s, or the server's
Retry-After); a request that still fails is "error" (not cached, so a rerun retries it). A fatal reply (400, 401,
403, 404, 422, ...; see :mod:`emkit._api`) or a reply without logprobs stops the stage at once with the server's
message, and so do ``max(16, 2 x concurrency)`` failed requests in a row (the server is down).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from emkit._api import FailureBreaker, backoff_delay, fatal_api_error, is_retryable_status
from emkit.errors import EmkitError
from emkit.judge._base import Judge, Judgment, register_judge
from emkit.judge._math import MIN_NUMERIC_MASS, categorical_score, logprob_score
from emkit.judge._prompts import CATEGORICAL_LABELS, fill, load_judge_prompts, prompt_hash

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TOP_LOGPROBS = 20


class _Exhausted(RuntimeError):
    """A request that still failed with a retryable error after every retry."""


class _Stopped(RuntimeError):
    """The stage is stopping (another request failed fatally): do not send more requests."""


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
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)
        self._key = key
        self._stop = threading.Event()
        self._breaker = FailureBreaker("logprob judge", max(16, 2 * self.concurrency))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s,
                                    limits=httpx.Limits(max_connections=self.concurrency))

    def identity(self) -> dict[str, Any]:
        # The same model name on another server (a local vLLM, a proxy) is another judge.
        return {**super().identity(), "base_url": self.base_url}

    def check(self) -> None:
        if not self._key and self.base_url == DEFAULT_BASE_URL:
            raise EmkitError("the logprob judge on api.openai.com needs an API key",
                             hint="export OPENAI_API_KEY=..., or pass base_url=http://host:port/v1 for a local server")

    def request(self, prompt: str) -> list[tuple[str, float]]:
        """The top logprobs of the first output token, with retries; fatal replies raise EmkitError."""
        import httpx

        body = {"model": self.judge_model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1,
                "temperature": 0, "logprobs": True, "top_logprobs": TOP_LOGPROBS, "seed": 0}
        last: str = ""
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                raise _Stopped()
            if attempt:
                time.sleep(backoff_delay(attempt - 1, self.backoff_s, 30.0, retry_after))
            try:
                response = self._client.post("/chat/completions", json=body)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise EmkitError(f"logprob judge: base_url {self.base_url!r} is not usable ({exc})",
                                 hint="give a full URL such as http://localhost:8000/v1") from exc
            except httpx.TransportError as exc:  # timeouts, refused or dropped connections
                last, retry_after = f"{type(exc).__name__}: {exc}", None
                continue
            except httpx.HTTPError as exc:  # e.g. too many redirects: a retry would do the same
                raise EmkitError(f"logprob judge: request to {self.base_url} failed: {exc}",
                                 hint="check base_url (it should end in /v1)") from exc
            if is_retryable_status(response.status_code):
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                retry_after = response.headers.get("retry-after")
                continue
            if not 200 <= response.status_code < 300:
                raise fatal_api_error("logprob judge", response.status_code, response.text, base_url=self.base_url,
                                      model=self.judge_model, secret=self._key)
            try:
                return _top_logprobs(response.json())
            except ValueError as exc:  # the same server answers every request this way
                raise EmkitError(f"logprob judge: {self.base_url} answered without usable logprobs for model "
                                 f"{self.judge_model!r}: {exc}",
                                 hint="use a server and model that return logprobs with top_logprobs=20 (OpenAI "
                                      "chat models, vLLM serve); or judge offline with --judge cross") from exc
        raise _Exhausted(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _one(self, job: tuple[str, str, str]) -> Judgment:
        metric, question, answer = job
        try:
            try:
                top = self.request(fill(self.prompts[metric], question, answer))
            except _Exhausted as exc:
                self._breaker.failure(exc)  # raises once the server looks down
                return Judgment(None, "error", {"error": str(exc)[:500]})
        except EmkitError:
            self._stop.set()  # before this worker takes the next job: no request after a fatal one
            raise
        self._breaker.success()
        return self.parse(metric, top)

    def judge(self, pairs: list[tuple[str, str]], metrics: list[str], progress: bool = False
              ) -> list[dict[str, Judgment]]:
        self.check()
        jobs = [(m, q, a) for q, a in pairs for m in metrics]
        self._stop.clear()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._one, job) for job in jobs]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in finished and f.exception() is not None
                      and not isinstance(f.exception(), _Stopped)]
            if failed:  # stop at the first fatal error: queued requests are never sent
                self._stop.set()
                for future in futures:
                    future.cancel()
                raise failed[0].exception()  # type: ignore[misc]
            done = [f.result() for f in futures]
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
