"""``openai``: any OpenAI-compatible chat server (OpenAI, ``vllm serve``, llama.cpp server, Ollama).

Async client with a concurrency limit, per-request timeout, and retries with exponential backoff (plus jitter,
honouring ``Retry-After``) on 429, 5xx, timeouts and dropped connections. Other errors (400, 401, 404) stop the
run at once with the server's message: retrying cannot fix them. One request per sample (``n=1``) with the
sample's own ``seed``, so each stored sample maps to one request and servers without ``n`` support work too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterator
from typing import Any

from emkit.errors import EmkitError, require
from emkit.generate._backend import Backend, Result
from emkit.generate._types import Completion, GenerationRequest, sample_seed

log = logging.getLogger("emkit.generate")


class OpenAIBackend(Backend):
    """Options: base_url (else $OPENAI_BASE_URL, else api.openai.com), api_key (else $OPENAI_API_KEY; "EMPTY"
    for a local base_url), concurrency, timeout_s, max_retries, backoff_s, backoff_max_s, batch_size.

    With this backend ``adapter`` is the name under which the server serves the LoRA adapter
    (``vllm serve --lora-modules NAME=DIR``); requests then ask for that model name.
    """

    name = "openai"

    def __init__(self, model: str, adapter: str | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, concurrency: int = 16, timeout_s: float = 120.0, max_retries: int = 6,
                 backoff_s: float = 1.0, backoff_max_s: float = 60.0, batch_size: int = 64, **options: Any) -> None:
        super().__init__(model, adapter, **options)
        self.base_url = base_url or os.environ.get("EMKIT_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or ("EMPTY" if self.base_url else None)
        if not self.api_key:
            raise EmkitError("the openai backend needs an API key (none given and OPENAI_API_KEY is unset)",
                             hint="export OPENAI_API_KEY=..., or give --base-url of a local server (no key needed)")
        if concurrency < 1 or batch_size < 1 or max_retries < 0 or timeout_s <= 0:
            raise EmkitError("openai backend: concurrency and batch_size must be >= 1, max_retries >= 0 and "
                             "timeout_s > 0", hint="fix the backend options")
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.backoff_s, self.backoff_max_s, self.batch_size = backoff_s, backoff_max_s, batch_size
        self.retries = 0  # how many retries were needed in total (reported; tests check it)

    def identity(self) -> dict[str, Any]:
        return {"base_url": self.base_url or "https://api.openai.com/v1"}

    def adapter_identity(self) -> dict[str, Any] | None:
        return None if self.adapter is None else {"served_name": self.adapter}

    def batches(self, requests: list[GenerationRequest]) -> Iterator[list[Result]]:
        require("openai", "ml", "the openai generation backend")
        jobs = [(r, s) for r, req in enumerate(requests) for s in req.sample_indices]
        for start in range(0, len(jobs), self.batch_size):
            yield asyncio.run(self._run(requests, jobs[start : start + self.batch_size]))

    async def _run(self, requests: list[GenerationRequest], jobs: list[tuple[int, int]]) -> list[Result]:
        import openai

        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s,
                                    max_retries=0)  # we retry ourselves, with logging and our own limits
        semaphore = asyncio.Semaphore(self.concurrency)
        try:
            async def one(r: int, s: int) -> Result:
                async with semaphore:
                    return r, s, await self._call(client, requests[r], s)

            return list(await asyncio.gather(*(one(r, s) for r, s in jobs)))
        finally:
            await client.close()

    async def _call(self, client: Any, req: GenerationRequest, sample_index: int) -> Completion:
        import openai

        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                     openai.APIConnectionError)
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.chat.completions.create(
                    model=self.adapter or self.model, messages=req.messages, n=1,
                    max_tokens=req.sampling.max_tokens, temperature=req.sampling.temperature,
                    top_p=req.sampling.top_p, seed=sample_seed(req.sampling, req.messages, sample_index) % 2**31,
                )
                choice = response.choices[0]
                usage = response.usage
                return Completion(choice.message.content or "", choice.finish_reason or "stop",
                                  getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)
            except retryable as exc:
                if attempt == self.max_retries:
                    raise EmkitError(f"openai backend: request failed after {attempt + 1} attempts: "
                                     f"{type(exc).__name__}: {exc}",
                                     hint="check the server; finished samples are stored, rerun to resume "
                                          "(or raise max_retries / timeout_s)") from exc
                delay = self._delay(attempt, exc)
                self.retries += 1
                log.warning("openai: %s, retry %d/%d in %.1fs", type(exc).__name__, attempt + 1,
                            self.max_retries, delay)
                await asyncio.sleep(delay)
            except openai.APIStatusError as exc:
                raise EmkitError(f"openai backend: the server refused the request ({exc.status_code}): {exc.message}",
                                 hint="check the model name, API key and base URL") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, exc: Exception) -> float:
        """Exponential backoff (backoff_s x 2^attempt, capped) with up to 25% jitter; a server's Retry-After
        (seconds) wins when it asks for longer."""
        delay = min(self.backoff_max_s, self.backoff_s * 2**attempt) * (1 + 0.25 * random.random())
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        try:
            if header is not None:
                delay = max(delay, min(self.backoff_max_s, float(header)))
        except ValueError:
            pass
        return delay
