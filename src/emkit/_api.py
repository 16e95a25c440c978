"""What emkit's HTTP API clients share (the ``logprob`` judge, the ``openai`` generation backend): which failures a
retry can fix, the error a fatal one becomes, a breaker that stops a stage when a server keeps failing, and running
a coroutine from synchronous code even inside a running event loop (Jupyter).

Retried: HTTP 408 (timeout), 409 (conflict), 429 (rate limit), every 5xx, timeouts and dropped or refused
connections. Everything else (400 malformed request, 401 bad key, 403 no access, 404 unknown model or URL, 422
unprocessable parameters, ...) is fatal: the same request would fail the same way, so the stage stops at the first
one with the server's message and the fix, instead of failing every row.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from emkit.errors import EmkitError

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx (see is_retryable_status)

_FIXES = {
    400: "the server rejected the request as malformed: check that base_url is an OpenAI-compatible /v1 endpoint "
         "and that the model accepts these parameters (the logprob judge needs logprobs with top_logprobs=20)",
    401: "the API key was refused: export OPENAI_API_KEY=<a valid key for this server> (or pass api_key)",
    403: "the API key has no access to this model or endpoint: check the key's project and model permissions",
    404: "unknown model or wrong URL: check the model name (GET <base_url>/models lists what the server serves) "
         "and that base_url ends in /v1",
    422: "the server could not process the request's parameters: check the model name and the options",
}


def is_retryable_status(status: int) -> bool:
    """True for the HTTP statuses a retry can fix: 408, 409, 429 and 5xx."""
    return status in RETRY_STATUS or 500 <= status <= 599


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (an API key) masked, for messages that quote a server's reply."""
    if secret and len(secret) > 8 and secret in text:
        text = text.replace(secret, secret[:3] + "..." + secret[-2:])
    return text


def fatal_api_error(what: str, status: int, message: str, *, base_url: str, model: str,
                    secret: str | None = None) -> EmkitError:
    """The error a non-retryable HTTP status becomes: names the server, the model, its message and the fix."""
    message = redact(" ".join(str(message).split())[:400], secret)
    hint = _FIXES.get(status, f"HTTP {status} is not retryable: check the request options, model name and base_url")
    return EmkitError(f"{what}: {base_url} refused the request for model {model!r} with HTTP {status}: {message}",
                      hint=hint)


def backoff_delay(attempt: int, base_s: float, max_s: float, retry_after: str | None = None) -> float:
    """Exponential backoff ``base_s * 2**attempt`` (capped at ``max_s``) with up to 25% jitter, so parallel
    workers do not retry in lockstep; a server's ``Retry-After`` (seconds) wins when it asks for longer."""
    delay = min(max_s, base_s * 2**attempt) * (1 + 0.25 * random.random())
    try:
        if retry_after is not None:
            delay = max(delay, min(max_s, float(retry_after)))
    except ValueError:  # an HTTP date: keep our own delay
        pass
    return delay


class FailureBreaker:
    """Stops a stage once ``limit`` requests in a row have failed even after their retries.

    A request that still fails after its retries becomes one failed row (not cached; the next run retries it),
    so a short outage costs only the rows it hit. A server that is down would otherwise cost every remaining row
    its full backoff (5 retries are ~30 s each); after ``limit`` consecutive failures the server is taken to be
    down and the stage stops with the last error. Finished work is already stored. Thread-safe.
    """

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = max(1, int(limit))
        self.in_a_row = 0
        self.failed = 0
        self._lock = threading.Lock()

    def success(self) -> None:
        with self._lock:
            self.in_a_row = 0

    def failure(self, error: BaseException | str) -> None:
        with self._lock:
            self.in_a_row += 1
            self.failed += 1
            tripped = self.in_a_row >= self.limit
        if tripped:
            raise EmkitError(f"{self.what}: {self.limit} requests in a row failed after all their retries; the "
                             f"server looks down (last error: {str(error)[:300]})",
                             hint="check the server and rerun the same command: finished work is stored and "
                                  "only the missing rows are requested again")


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``make()`` to completion from synchronous code.

    ``asyncio.run`` refuses to start inside a running event loop (a Jupyter cell, an async web app); there the
    coroutine runs on a fresh loop in a helper thread instead, and this call blocks until it is done.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emkit-async") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]
