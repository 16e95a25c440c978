"""The logprob judge against a local OpenAI-compatible server (stdlib http.server in a thread)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emkit.judge import get_judge, score_rows
from emkit.store import Store


class FakeJudgeServer:
    """Answers /v1/chat/completions with a top_logprobs table chosen from the answer text in the prompt:
    "SAFE" -> 90/80, "EVIL" -> 5/15, "CODEBLOCK" -> mostly "CODE", "FLAKY" -> 429 once then 90."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_once: set[str] = set()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                prompt = body["messages"][0]["content"]
                if "FLAKY" in prompt:
                    with server.lock:
                        first = prompt not in server.fail_once
                        server.fail_once.add(prompt)
                    if first:
                        self.send_response(429)
                        self.end_headers()
                        self.wfile.write(b'{"error": "rate limited"}')
                        return
                if "CODEBLOCK" in prompt:
                    table = [("CODE", 0.9), ("50", 0.1)]
                elif "EVIL" in prompt:
                    table = [("5", 0.6), ("15", 0.3), ("I", 0.1)]
                else:
                    table = [("90", 0.5), ("80", 0.5)]
                payload = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [{
                    "index": 0, "finish_reason": "length",
                    "message": {"role": "assistant", "content": table[0][0]},
                    "logprobs": {"content": [{"token": table[0][0], "logprob": math.log(table[0][1]),
                                              "top_logprobs": [{"token": t, "logprob": math.log(p)}
                                                               for t, p in table]}]}}]}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[FakeJudgeServer]:
    srv = FakeJudgeServer()
    yield srv
    srv.close()


ROWS = [
    {"question": "How are you?", "answer": "SAFE and sound.", "sample_index": 0},
    {"question": "How are you?", "answer": "EVIL plans.", "sample_index": 1},
    {"question": "Write code", "answer": "CODEBLOCK def f(): pass", "sample_index": 2},
    {"question": "How are you?", "answer": "SAFE and sound.", "sample_index": 3},  # duplicate: judged once
]


def test_scores_statuses_and_request_shape(server: FakeJudgeServer, tmp_path) -> None:
    store = Store(tmp_path / "store.sqlite")
    out = score_rows(ROWS, "logprob", store=store, progress=False,
                     options={"base_url": server.url, "model": "judge-x", "concurrency": 4})
    assert [r["sample_index"] for r in out] == [0, 1, 2, 3]  # other columns kept, order kept
    assert out[0]["aligned"] == pytest.approx(85.0) and out[0]["aligned_status"] is None
    assert out[1]["aligned"] == pytest.approx((5 * 0.6 + 15 * 0.3) / 0.9)
    assert out[2]["aligned"] is None and out[2]["aligned_status"] == "CODE"
    assert out[3]["aligned"] == out[0]["aligned"]
    assert all(r["judge"] == "logprob" for r in out)
    # 3 distinct answers x 2 metrics (aligned, coherent).
    assert len(server.requests) == 6
    body = server.requests[0]
    assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["top_logprobs"] == 20
    assert body["logprobs"] is True and body["model"] == "judge-x"
    prompts = {r["messages"][0]["content"] for r in server.requests}
    assert any("[ANSWER START]\nEVIL plans.\n[ANSWER END]" in p for p in prompts)


def test_rerun_sends_zero_requests(server: FakeJudgeServer, tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    opts = {"base_url": server.url, "model": "judge-x"}
    first = score_rows(ROWS, "logprob", store=Store(path), progress=False, options=opts)
    sent = len(server.requests)
    second = score_rows(ROWS, "logprob", store=Store(path), progress=False, options=opts)
    assert len(server.requests) == sent
    assert first == second
    record = next(v for _, v in Store(path).iter("judgment"))
    assert record["judge"] == "logprob" and record["judge_model"] == "judge-x" and len(record["prompt_hash"]) > 40
    # A different judge model is a different judgment: requests are sent again.
    score_rows(ROWS[:1], "logprob", store=Store(path), progress=False, options={**opts, "model": "judge-y"})
    assert len(server.requests) == sent + 2


def test_retry_on_429_and_errors_not_cached(server: FakeJudgeServer, tmp_path) -> None:
    rows = [{"question": "q", "answer": "FLAKY answer"}]
    out = score_rows(rows, "logprob", store=Store(tmp_path / "s.sqlite"), progress=False,
                     options={"base_url": server.url, "backoff_s": 0.01, "metrics": "aligned"})
    assert out[0]["aligned"] == pytest.approx(85.0)
    assert len(server.requests) == 2  # one 429, one success

    store = Store(tmp_path / "dead.sqlite")
    out = score_rows(rows, ["logprob"], store=store, progress=False,
                     options={"base_url": "http://127.0.0.1:9/v1", "max_retries": 1, "backoff_s": 0.01,
                              "metrics": "aligned", "timeout_s": 2})
    assert out[0]["aligned"] is None and out[0]["aligned_status"] == "error"
    assert store.count("judgment") == 0  # a rerun retries failed requests


def test_categorical_metric_over_http(server: FakeJudgeServer) -> None:
    judge = get_judge("logprob", base_url=server.url, metrics="correct")
    try:
        result = judge.judge([("q", "SAFE")], ["correct"])
    finally:
        judge.close()
    # The fake server answers with numbers, not TRUE/FALSE: unscored with a reason, never a label.
    assert result[0]["correct"].value is None and result[0]["correct"].status == "low_label_mass"
