"""The openai backend against a local OpenAI-compatible server started in the test (stdlib http.server)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emkit.errors import EmkitError
from emkit.generate import GenerationRequest, SamplingConfig, get_backend, sample_rows
from emkit.questions import expand, load_suite


class _Server:
    """Counts requests in flight; answers 429 once for prompts containing RATE, stalls once on SLOW."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[dict] = []
        self.failed_once: set[str] = set()
        self.status_always: int | None = None


def _handler(state: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                state.calls.append(body)
            try:
                assert self.path == "/v1/chat/completions", self.path
                content = body["messages"][-1]["content"]
                tag = f"{content}|{body['seed']}"
                if state.status_always is not None:
                    return self._send(state.status_always, {"error": {"message": "no such model"}})
                if "RATE" in content and tag not in state.failed_once:
                    state.failed_once.add(tag)
                    return self._send(429, {"error": {"message": "slow down"}}, {"retry-after": "0"})
                if "SLOW" in content and tag not in state.failed_once:
                    state.failed_once.add(tag)
                    time.sleep(1.5)  # longer than the client's timeout
                else:
                    time.sleep(0.05)  # long enough for requests to overlap
                text = f"echo {content} seed={body['seed']} max={body['max_tokens']} T={body['temperature']}"
                self._send(200, {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
                })
            finally:
                with state.lock:
                    state.in_flight -= 1

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, _Server]]:
    state = _Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _backend(url: str, **kw):
    options = dict(base_url=url, api_key="test", concurrency=4, timeout_s=0.5, max_retries=3, backoff_s=0.01)
    return get_backend("openai", "served-model", **{**options, **kw})


def test_concurrency_limit(server) -> None:
    url, state = server
    backend = _backend(url)
    reqs = [GenerationRequest([{"role": "user", "content": f"q{i}"}], n=3, sampling=SamplingConfig(seed=2))
            for i in range(6)]
    out = backend.generate(reqs)
    assert len(state.calls) == 18 and 1 < state.max_in_flight <= 4
    assert out[0][0].text.startswith("echo q0 seed=") and out[0][0].completion_tokens == 4
    assert len({c.text for c in out[0]}) == 3  # each sample sent its own seed
    call = state.calls[0]
    assert (call["model"], call["n"], call["max_tokens"], call["temperature"], call["top_p"]) == (
        "served-model", 1, 600, 1.0, 1.0)
    assert backend.generate(reqs) == out  # seeds are stable


def test_429_then_success(server) -> None:
    url, state = server
    backend = _backend(url)
    out = backend.generate([GenerationRequest([{"role": "user", "content": "RATE me"}], n=2)])
    assert all(c.text.startswith("echo RATE me") for c in out[0])
    assert backend.retries == 2 and len(state.calls) == 4


def test_timeout_then_success(server) -> None:
    url, state = server
    backend = _backend(url)
    out = backend.generate([GenerationRequest([{"role": "user", "content": "SLOW one"}], n=1)])
    assert out[0][0].text.startswith("echo SLOW one") and backend.retries == 1
    assert len(state.calls) == 2


def test_gives_up_and_non_retryable(server) -> None:
    url, state = server
    # A retryable failure that outlasts the retries is one failed sample, not a crash of the whole batch.
    backend = _backend(url, max_retries=0)
    out = backend.generate([GenerationRequest([{"role": "user", "content": "RATE again"}])])
    assert out[0][0].finish_reason == "error" and out[0][0].text == "" and "after 1 attempts" in out[0][0].error
    assert backend.failed == 1
    state.status_always = 404
    backend = _backend(url)
    with pytest.raises(EmkitError, match="refused the request for model 'served-model' with HTTP 404: .*no such model"):
        backend.generate([GenerationRequest([{"role": "user", "content": "hi"}])])
    assert backend.retries == 0


def test_sample_rows_over_openai(server, tmp_path) -> None:
    from emkit.store import Store

    url, state = server
    prompts = expand(load_suite("emkit/core"))[:3]
    options = dict(base_url=url, api_key="k", concurrency=3, backoff_s=0.01)
    with Store(tmp_path / "s.sqlite") as store:
        rows = sample_rows("served-model", prompts, n=2, sampling=SamplingConfig(max_tokens=20), backend="openai",
                           store=store, progress=False, backend_options=options)
        calls = len(state.calls)
        again = sample_rows("served-model", prompts, n=2, sampling=SamplingConfig(max_tokens=20), backend="openai",
                            store=store, progress=False, backend_options=options)
    assert calls == 6 and len(state.calls) == 6 and again == rows
    assert rows[0]["answer"].startswith("echo ") and "max=20" in rows[0]["answer"]


def test_needs_key_or_url(monkeypatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "EMKIT_OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(EmkitError, match="API key"):
        get_backend("openai", "gpt-4o")
    assert get_backend("openai", "m", base_url="http://localhost:1/v1").api_key == "EMPTY"
