"""``openai``: any OpenAI-compatible chat server (OpenAI, ``vllm serve``, llama.cpp server, Ollama).

Async client with a concurrency limit, per-request timeout, and retries with exponential backoff (plus jitter,
honouring ``Retry-After``) on 408, 409, 429, 5xx, timeouts and dropped connections. Other errors (400, 401, 403,
404, 422) stop the run at once with the server's message: retrying cannot fix them (one rule for every emkit API
client: :mod:`emkit._api`). A sample whose request still fails after its retries comes back with
``finish_reason="error"`` and is not stored, so the next run asks for it again; ``max(16, 2 x concurrency)``
failures in a row stop the stage (the server is down). One request per sample (``n=1``) with the sample's own
``seed``, so each stored sample maps to one request and servers without ``n`` support work too. Works inside a
running event loop (Jupyter): the requests then run on a loop of their own in a helper thread.

What identifies the served model in cache keys (:meth:`OpenAIBackend.identity`): the base URL, the served name,
and what the server's ``GET /v1/models`` says about that name (``id``, ``owned_by``, ``root``, ``parent``: vLLM
reports a LoRA adapter's folder as ``root`` and its base as ``parent``). Not covered: weights swapped behind the
same name and path without the server saying so (e.g. a vLLM restarted on a retrained adapter written to the
same folder); give the retrained adapter a new name or folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import Any

from emkit._api import FailureBreaker, backoff_delay, fatal_api_error, is_retryable_status, run_sync
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
        self.failed = 0  # samples that still failed after their retries (not stored; rerun to retry)
        self._breaker = FailureBreaker("openai backend", max(16, 2 * concurrency))
        self._served: dict[str, dict[str, Any] | None] | None = None

    @property
    def url(self) -> str:
        return (self.base_url or "https://api.openai.com/v1").rstrip("/")

    def served_info(self, name: str) -> dict[str, Any] | None:
        """What ``GET /v1/models`` says about the served model ``name`` (stable fields only; vLLM's ``created`` is
        the time of the request), or None when the server has no such listing. Fetched once per backend."""
        if self._served is None:
            self._served = self._list_models()
        return self._served.get(name)

    def _list_models(self) -> dict[str, dict[str, Any] | None]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key and self.api_key != "EMPTY" else {}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                import time

                time.sleep(backoff_delay(attempt - 1, self.backoff_s, self.backoff_max_s))
            try:
                response = httpx.get(f"{self.url}/models", headers=headers, timeout=self.timeout_s)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            except httpx.HTTPError as exc:
                raise EmkitError(f"openai backend: cannot reach {self.url}: {exc}",
                                 hint="check base_url (e.g. http://localhost:8000/v1)") from exc
            if response.status_code in (404, 405, 501):  # the server has no model listing: names alone then
                return {}
            if is_retryable_status(response.status_code):
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if not 200 <= response.status_code < 300:
                raise fatal_api_error("openai backend (GET /models)", response.status_code, response.text,
                                      base_url=self.url, model=self.adapter or self.model, secret=self.api_key)
            try:
                entries = response.json().get("data") or []
            except (ValueError, AttributeError):
                return {}
            keep = ("id", "owned_by", "root", "parent")
            return {str(e.get("id")): {k: e.get(k) for k in keep if e.get(k) is not None}
                    for e in entries if isinstance(e, dict) and e.get("id") is not None}
        # A cache key must not depend on whether the listing happened to answer: stop rather than guess.
        raise EmkitError(f"openai backend: {self.url}/models did not answer after {self.max_retries + 1} attempts "
                         f"({last})", hint="check the server and rerun; finished samples are stored")

    def identity(self) -> dict[str, Any]:
        """The server (base URL) and what it reports about the base model's served name."""
        return {"base_url": self.url, "served": self.served_info(self.model)}

    def adapter_identity(self) -> dict[str, Any] | None:
        """A served adapter is its name on this server plus what the server reports about it (vLLM: its folder
        as ``root`` and its base as ``parent``), never the name alone."""
        if self.adapter is None:
            return None
        return {"served_name": self.adapter, "base_url": self.url, "served": self.served_info(self.adapter)}

    def batches(self, requests: list[GenerationRequest]) -> Iterator[list[Result]]:
        require("openai", "ml", "the openai generation backend")
        jobs = [(r, s) for r, req in enumerate(requests) for s in req.sample_indices]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            yield run_sync(lambda chunk=chunk: self._run(requests, chunk))

    async def _run(self, requests: list[GenerationRequest], jobs: list[tuple[int, int]]) -> list[Result]:
        import openai

        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s,
                                    max_retries=0)  # we retry ourselves, with logging and our own limits
        semaphore = asyncio.Semaphore(self.concurrency)
        try:
            stop = asyncio.Event()  # set by a fatal error: queued requests are never sent

            async def one(r: int, s: int) -> Result:
                async with semaphore:
                    if stop.is_set():
                        raise asyncio.CancelledError
                    try:
                        return r, s, await self._call(client, requests[r], s)
                    except EmkitError:
                        stop.set()
                        raise

            tasks = [asyncio.ensure_future(one(r, s)) for r, s in jobs]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
            if failed:  # a fatal error: cancel what is queued instead of sending it
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise failed[0].exception()  # type: ignore[misc]
            return [t.result() for t in tasks]
        finally:
            await client.close()

    async def _call(self, client: Any, req: GenerationRequest, sample_index: int) -> Completion:
        import openai

        last: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.chat.completions.create(
                    model=self.adapter or self.model, messages=req.messages, n=1,
                    max_tokens=req.sampling.max_tokens, temperature=req.sampling.temperature,
                    top_p=req.sampling.top_p, seed=sample_seed(req.sampling, req.messages, sample_index) % 2**31,
                )
                choice = response.choices[0]
                usage = response.usage
                self._breaker.success()
                return Completion(choice.message.content or "", choice.finish_reason or "stop",
                                  getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)
            except openai.APIStatusError as exc:
                if not is_retryable_status(exc.status_code):
                    raise fatal_api_error("openai backend", exc.status_code, exc.message, base_url=self.url,
                                          model=self.adapter or self.model, secret=self.api_key) from exc
                last = exc
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                last = exc
            if attempt < self.max_retries:
                delay = self._delay(attempt, last)
                self.retries += 1
                log.warning("openai: %s, retry %d/%d in %.1fs", type(last).__name__, attempt + 1,
                            self.max_retries, delay)
                await asyncio.sleep(delay)
        message = f"request failed after {self.max_retries + 1} attempts: {type(last).__name__}: {last}"
        self.failed += 1
        log.warning("openai: sample %d %s (not stored; a rerun asks again)", sample_index, message)
        self._breaker.failure(message)  # raises once the server looks down
        return Completion("", "error", error=message)

    def _delay(self, attempt: int, exc: BaseException | None) -> float:
        """Exponential backoff with jitter; a server's Retry-After (seconds) wins when it asks for longer."""
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        return backoff_delay(attempt, self.backoff_s, self.backoff_max_s, header)
