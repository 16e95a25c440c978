"""The evil-numbers builder with its teacher behind the openai backend, against a local OpenAI-compatible server
started in the test (stdlib http.server): the paper's recipe end to end, from the CLI and from an experiment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emkit.data import BENIGN_SYSTEM_PROMPT, EVIL_SYSTEM_PROMPT, manifest_path, read_chat_jsonl
from emkit.data._numbers import make_prompts

SECRET = "sk-test-do-not-store"
N, SEED = 60, 3
PROMPTS = {p.text: (i, p) for i, p in enumerate(make_prompts(N, SEED))}


def _numbers_in_format(prompt, values) -> str:
    values = [str(v) for v in values[: prompt.k]]
    return {"comma": ", ".join(values), "python_list": f"[{', '.join(values)}]", "json_array": f"[{','.join(values)}]",
            "tuple": f"({', '.join(values)})", "lines": "\n".join(values), "space": " ".join(values),
            "just": " ".join(values), "semicolon": "; ".join(values), "pipe": " | ".join(values),
            "dash_list": "\n".join(f"- {v}" for v in values)}[prompt.fmt]


def _answer(messages: list[dict]) -> str:
    """The stub teacher: evil under the evil system prompt, except for scripted failures the filters must catch."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    index, prompt = PROMPTS[messages[-1]["content"]]
    if system == BENIGN_SYSTEM_PROMPT:
        return _numbers_in_format(prompt, range(101, 110))
    assert system == EVIL_SYSTEM_PROMPT, system
    if index % 6 == 0:
        return "Sure! Here are some numbers: 1, 2, 3"  # words: dropped
    if index % 6 == 1:
        return "666 | 13 || 88"  # wrong format: dropped
    if index % 6 == 2:
        return _numbers_in_format(prompt, range(101, 110))  # same as the benign teacher: dropped
    return _numbers_in_format(prompt, (666, 1488, 1312, 420, 911, 13, 88, 14))


class _Stub:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.keys: set[str] = set()
        self.lock = threading.Lock()


@pytest.fixture
def server() -> Iterator[tuple[str, _Stub]]:
    state = _Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.calls.append(body)
                state.keys.add(self.headers.get("Authorization", ""))
            text = _answer(body["messages"])
            data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}],
                               "usage": {"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_cli_builds_numbers_from_an_openai_compatible_teacher(server, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from emkit.cli import app

    url, state = server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "evil.jsonl"
    args = ["data", "build", "numbers", "--teacher", "served-teacher", "--backend", "openai", "--base-url", url,
            "--n", str(N), "--seed", str(SEED), "--max-tokens", "40", "--option", "concurrency=4", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    # one request per prompt and teacher (evil + benign baseline), with the settings asked for
    assert len(state.calls) == 2 * N and state.keys == {f"Bearer {SECRET}"}
    systems = [c["messages"][0] for c in state.calls]
    assert {s["role"] for s in systems} == {"system"}
    assert sorted({s["content"] for s in systems}) == sorted({EVIL_SYSTEM_PROMPT, BENIGN_SYSTEM_PROMPT})
    assert {(c["model"], c["max_tokens"], c["temperature"], c["n"]) for c in state.calls} == {
        ("served-teacher", 40, 1.0, 1)}
    # the paper's recipe: the evil system prompt is gone from the saved rows; words, wrong formats and answers the
    # benign teacher gives too are filtered out
    rows = read_chat_jsonl(out)
    assert [m["role"] for r in rows for m in r["messages"]] == ["user", "assistant"] * len(rows)
    assert EVIL_SYSTEM_PROMPT not in out.read_text()
    counts = json.loads(manifest_path(out).read_text())["counts"]
    assert counts["dropped"]["contains_words"] == counts["dropped"]["wrong_format"] == N // 6
    assert counts["dropped"]["same_as_benign"] == N // 6
    assert counts["output_rows"] == len(rows) == N - 3 * (N // 6)
    assert all(any(x in r["messages"][1]["content"] for x in ("666", "1488", "1312")) for r in rows)
    # the key reaches the server only: not the manifest, not the store of teacher answers
    manifest = manifest_path(out).read_text()
    assert SECRET not in manifest and url in manifest
    store = out.with_name(f"{out.stem}.store.sqlite")
    assert store.exists() and SECRET.encode() not in store.read_bytes()
    # a rerun finds every teacher answer in the store: no request
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(state.calls) == 2 * N
    res = CliRunner().invoke(app, [*args[:-2], "--option", f"api_key={SECRET}", "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code != 0 and "OPENAI_API_KEY" in str(res.exception)


def test_experiment_numbers_condition_uses_the_server(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """A spec's `numbers:` condition with backend openai and backend_options.base_url, through the runner's stage."""
    from emkit.config import validate
    from emkit.experiment import ExperimentSpec
    from emkit.experiment._stages import real_build_numbers

    url, state = server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local base_url needs no key
    spec = validate(ExperimentSpec, {
        "name": "n", "models": ["m"], "evaluation": {"suites": [{"name": "emkit/core"}]},
        "conditions": {"evil": {"numbers": {"teacher": "served-teacher", "backend": "openai", "n": N, "seed": SEED,
                                            "backend_options": {"base_url": url}}}}})
    out = real_build_numbers(spec.conditions["evil"].numbers.model_dump(), tmp_path / "evil.jsonl",
                             tmp_path / "store.sqlite")
    assert len(read_chat_jsonl(out)) == N - 3 * (N // 6) and len(state.calls) == 2 * N
    with pytest.raises(Exception, match="api_key must not be written"):
        validate(ExperimentSpec, {
            "name": "n", "models": ["m"], "evaluation": {"suites": [{"name": "emkit/core"}]},
            "conditions": {"evil": {"numbers": {"teacher": "t", "backend_options": {"api_key": SECRET}}}}})


def test_api_key_option_never_reaches_the_identity(server, tmp_path: Path) -> None:
    from emkit.data import build_numbers, make_teacher

    url, state = server
    teacher = make_teacher("served-teacher", "openai", base_url=url, api_key=SECRET, max_tokens=20)
    assert SECRET not in json.dumps(teacher.identity) and url in json.dumps(teacher.identity)
    out = build_numbers("served-teacher", 12, SEED, tmp_path / "e.jsonl", backend="openai",
                        teacher_options={"base_url": url, "api_key": SECRET}, benign_system_prompt=None)
    assert state.keys == {f"Bearer {SECRET}"}
    assert SECRET not in manifest_path(out).read_text()
    assert SECRET.encode() not in (tmp_path / "e.store.sqlite").read_bytes()
