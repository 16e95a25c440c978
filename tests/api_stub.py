"""A local OpenAI-compatible server for tests (stdlib http.server in a thread), in the pattern of the stubs in
test_judge_http.py and test_generate_openai.py, with failures on demand.

- ``POST /v1/chat/completions``: a request with ``logprobs`` is a judge call and gets a top-logprobs table (90/80,
  so aligned = coherent = 85); any other request is sampling and gets an echo of the last message and its seed.
- ``fail(prompt) -> int | None``: an HTTP status to answer with instead (e.g. 500 while a server is "down");
  ``no_logprobs``: answer judge calls like a server without logprobs support.
- ``GET /v1/models``: ``{"data": [...]}`` from ``models`` (404 when ``models`` is None).
- ``posts`` / ``gets`` record every request body / path.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.fail: Callable[[str], int | None] = lambda prompt: None
        self.models: list[dict[str, Any]] | None = None
        self.no_logprobs = False  # answer judge calls without logprobs (a server that does not support them)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                with server.lock:
                    server.gets.append(self.path)
                if self.path.rstrip("/").endswith("/models") and server.models is not None:
                    return self._send(200, {"object": "list", "data": server.models})
                return self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.posts.append(body)
                prompt = body["messages"][-1]["content"]
                status = server.fail(prompt)
                if status is not None:
                    return self._send(status, {"error": {"message": f"stub says {status}"}})
                if body.get("logprobs") and not server.no_logprobs:
                    table = [("90", 0.5), ("80", 0.5)]
                    return self._send(200, {"id": "j", "object": "chat.completion", "model": body["model"],
                                            "choices": [{"index": 0, "finish_reason": "length",
                                                         "message": {"role": "assistant", "content": "90"},
                                                         "logprobs": {"content": [{
                                                             "token": "90", "logprob": math.log(0.5),
                                                             "top_logprobs": [{"token": t, "logprob": math.log(p)}
                                                                              for t, p in table]}]}}]})
                text = f"echo {prompt[:40]} seed={body.get('seed')}"
                return self._send(200, {"id": "s", "object": "chat.completion", "created": 0, "model": body["model"],
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": text}}],
                                        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog of 5 refuses connections when 16 clients connect at once

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def judge_calls(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.posts if b.get("logprobs")]

    def sample_calls(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.posts if not b.get("logprobs")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
