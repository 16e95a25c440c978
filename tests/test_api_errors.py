"""One rule for every API client (issue 17, cases 2 and 9): 408/409/429/5xx, timeouts and connection errors are
retried; any other status (bad key, unknown model, malformed request) stops the stage at its first occurrence with
the server's message and the fix. Sampling and judging also work from inside a running event loop (Jupyter)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from api_stub import StubServer

from emkit.errors import EmkitError


@pytest.fixture()
def server() -> Iterator[StubServer]:
    srv = StubServer()
    yield srv
    srv.close()


def test_classification() -> None:
    from emkit._api import is_retryable_status

    assert [s for s in (400, 401, 403, 404, 408, 409, 410, 413, 422, 429, 500, 502, 503, 504, 529)
            if is_retryable_status(s)] == [408, 409, 429, 500, 502, 503, 504, 529]


@pytest.mark.parametrize("status, fix", [(401, "API key was refused"), (403, "no access"),
                                         (404, "unknown model or wrong URL"), (400, "malformed"),
                                         (422, "could not process")])
def test_judge_stops_at_the_first_fatal_error(server: StubServer, status: int, fix: str) -> None:
    from emkit.judge import score_rows

    server.fail = lambda prompt: status
    rows = [{"question": "q", "answer": f"a{i}"} for i in range(20)]
    with pytest.raises(EmkitError) as info:
        score_rows(rows, "logprob", progress=False,
                   options={"base_url": server.url, "model": "judge-x", "concurrency": 1, "api_key": "sk-secret-key-1"})
    text = str(info.value)
    assert f"HTTP {status}" in text and f"stub says {status}" in text and "judge-x" in text and fix in text
    assert len(server.posts) == 1  # not 40 requests (20 answers x 2 metrics), each failing the same way


def test_a_server_without_logprobs_stops_the_judge(server: StubServer) -> None:
    from emkit.judge import score_rows

    server.no_logprobs = True  # HTTP 200 every time, but no logprobs: each row used to become "error", forever
    rows = [{"question": "q", "answer": f"a{i}"} for i in range(10)]
    with pytest.raises(EmkitError, match="answered without usable logprobs.*\n  fix: use a server and model"):
        score_rows(rows, "logprob", progress=False, options={"base_url": server.url, "concurrency": 1})
    assert len(server.posts) == 1


def test_openai_backend_stops_at_the_first_fatal_error(server: StubServer) -> None:
    from emkit.generate import GenerationRequest, get_backend

    server.fail = lambda prompt: 401
    backend = get_backend("openai", "served-model", base_url=server.url, api_key="sk-secret-key-1", concurrency=1)
    with pytest.raises(EmkitError, match="HTTP 401: .*stub says 401.*\n  fix: the API key was refused"):
        backend.generate([GenerationRequest([{"role": "user", "content": "hi"}], n=20)])
    assert len(server.sample_calls()) == 1 and backend.retries == 0


def test_retryable_then_fine_and_a_dead_server_trips_the_breaker(server: StubServer) -> None:
    from emkit.judge import score_rows

    seen: set[str] = set()

    def once(prompt: str) -> int | None:  # each request fails once with 503, then works
        if prompt in seen:
            return None
        seen.add(prompt)
        return 503

    server.fail = once
    rows = [{"question": "q", "answer": f"a{i}"} for i in range(3)]
    out = score_rows(rows, "logprob", progress=False,
                     options={"base_url": server.url, "backoff_s": 0.01, "metrics": "aligned"})
    assert [r["aligned"] for r in out] == [85.0] * 3 and len(server.posts) == 6
    # A server that is down: after max(16, 2 x concurrency) failures in a row the stage stops with the last error.
    server.fail = lambda prompt: 500
    many = [{"question": "q", "answer": f"b{i}"} for i in range(40)]
    with pytest.raises(EmkitError, match="16 requests in a row failed.*HTTP 500"):
        score_rows(many, "logprob", progress=False,
                   options={"base_url": server.url, "backoff_s": 0.01, "max_retries": 0, "concurrency": 1,
                            "metrics": "aligned"})


def test_sampling_and_judging_inside_a_running_event_loop(server: StubServer) -> None:
    from emkit.generate import SamplingConfig, sample_rows
    from emkit.judge import score_rows
    from emkit.questions import expand, load_suite

    prompts = expand(load_suite("emkit/core"))[:2]

    async def notebook_cell() -> list[dict]:  # a Jupyter cell runs inside the kernel's event loop
        rows = sample_rows("served-model", prompts, n=2, sampling=SamplingConfig(max_tokens=8), backend="openai",
                           progress=False, backend_options={"base_url": server.url, "api_key": "k"})
        return score_rows(rows, "logprob", progress=False, options={"base_url": server.url})

    scored = asyncio.run(notebook_cell())
    assert len(scored) == 4 and all(r["answer"].startswith("echo ") for r in scored)
    assert all(r["aligned"] == 85.0 for r in scored)
