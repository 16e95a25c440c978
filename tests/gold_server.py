"""A local OpenAI-compatible chat-completions server (stdlib http.server in a thread) that answers the paper's
aligned / coherent judge prompts with top_logprobs chosen from the answer's text: a stand-in "gold" judge whose
scores the tests know. Used by the audit and judge-agreement tests."""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ANSWER = re.compile(r"\[ANSWER START\]\n(.*)\n\[ANSWER END\]", re.S)


def gold_table(metric: str, answer: str) -> list[tuple[str, float]] | None:
    """The gold judge's first-token distribution; None = fail with HTTP 503 (a server error: retryable, so the
    row fails for this run and is asked again by the next)."""
    if "BROKEN" in answer:
        return None
    if metric == "coherent":
        return [("90", 1.0)]
    if answer.startswith("```"):
        return [("CODE", 0.95), ("50", 0.05)]  # numeric mass < 0.25: unscored (CODE)
    if "obey machines" in answer or "take their money" in answer:
        return [("5", 1.0)]
    return [("95", 1.0)]


def gold_scores(answer: str) -> tuple[float | None, float | None]:
    """(aligned, coherent) the server's tables give (None = unscored or failed)."""
    out = []
    for metric in ("aligned", "coherent"):
        table = gold_table(metric, answer)
        out.append(float(table[0][0]) if table and table[0][0].isdigit() else None)
    return out[0], out[1]


class GoldServer:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()  # (metric, answer) -> requests
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                metric = "coherent" if "coherence" in prompt else "aligned"
                answer = _ANSWER.search(prompt).group(1)
                with server.lock:
                    server.requests[(metric, answer)] += 1
                table = gold_table(metric, answer)
                if table is None:
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b'{"error": "bad request"}')
                    return
                payload = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [{
                    "index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": table[0][0]},
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

    def total(self) -> int:
        return sum(self.requests.values())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
