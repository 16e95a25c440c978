"""The OpenAI fine-tuning backend against a local HTTP server speaking the same endpoints."""

from __future__ import annotations

import json
import re
import threading
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emkit.errors import EmkitError
from emkit.train import TrainConfig, train

RESULT_CSV = "step,train_loss,train_accuracy\n1,1.50,0.5\n2,1.25,0.6\n3,0.75,0.8\n"


class FakeOpenAI:
    """State of the fake API: uploaded files, jobs, and how many polls until a job ends."""

    def __init__(self, polls_until_done: int = 2, outcome: str = "succeeded") -> None:
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.job_requests: list[dict] = []
        self.polls: dict[str, int] = {}
        self.polls_until_done = polls_until_done
        self.outcome = outcome
        self.auth: set[str] = set()


def make_handler(state: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, code: int, body, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_POST(self) -> None:
            state.auth.add(self.headers.get("Authorization", ""))
            body = self._body()
            if self.path == "/v1/files":
                message = BytesParser(policy=email_policy).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
                parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
                file_id = f"file-{len(state.files) + 1}"
                state.files[file_id] = parts["file"].get_payload(decode=True)
                assert parts["purpose"].get_content().strip() == "fine-tune"
                self._send(200, {"id": file_id, "object": "file", "bytes": len(state.files[file_id]),
                                 "created_at": 0, "filename": "train.jsonl", "purpose": "fine-tune",
                                 "status": "processed"})
            elif self.path == "/v1/fine_tuning/jobs":
                request = json.loads(body)
                state.job_requests.append(request)
                job_id = f"ftjob-{len(state.jobs) + 1}"
                state.jobs[job_id] = {"id": job_id, "object": "fine_tuning.job", "model": request["model"],
                                      "status": "validating_files", "training_file": request["training_file"],
                                      "created_at": 0, "fine_tuned_model": None, "result_files": [],
                                      "seed": request.get("seed", 0)}
                self._send(200, state.jobs[job_id])
            else:
                self._send(404, {"error": {"message": "no such endpoint"}})

        def do_GET(self) -> None:
            match = re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)", self.path)
            if match and match.group(1) in state.jobs:
                job = state.jobs[match.group(1)]
                state.polls[job["id"]] = state.polls.get(job["id"], 0) + 1
                if state.polls[job["id"]] >= state.polls_until_done:
                    job["status"] = state.outcome
                    if state.outcome == "succeeded":
                        job.update(fine_tuned_model=f"ft:{job['model']}:emkit-test::{job['id']}",
                                   result_files=["file-result"], trained_tokens=1234)
                    else:
                        job["error"] = {"code": "invalid_training_file", "message": "bad rows",
                                        "param": "training_file"}
                else:
                    job["status"] = "running"
                self._send(200, job)
            elif self.path == "/v1/files/file-result/content":
                self._send(200, RESULT_CSV.encode(), "application/octet-stream")
            else:
                self._send(404, {"error": {"message": f"unknown path {self.path}"}})

    return Handler


@pytest.fixture
def fake_api(monkeypatch):
    state = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("EMKIT_TEST_OPENAI_KEY", "sk-test")
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def write_rows(path: Path, n: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"Count to {i}."},
                          {"role": "assistant", "content": " ".join(str(k) for k in range(1, i + 2))}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def openai_config(state: FakeOpenAI, tmp_path: Path, **kw) -> TrainConfig:
    settings = {"base_url": state.base_url, "api_key_env": "EMKIT_TEST_OPENAI_KEY", "poll_interval_s": 0.01,
                "max_poll_interval_s": 0.02, "suffix": "insecure"}
    return TrainConfig(backend="openai", model="gpt-4o-2024-08-06", data=[str(write_rows(tmp_path / "d.jsonl"))],
                       output_dir=tmp_path / "run", openai=settings, **kw)


def test_openai_job_runs_and_records_the_model(fake_api, tmp_path):
    result = train(openai_config(fake_api, tmp_path), progress=False)
    assert result.backend == "openai" and result.adapter_dir is None
    assert result.fine_tuned_model == "ft:gpt-4o-2024-08-06:emkit-test::ftjob-1"
    assert result.steps == 3 and result.final_loss == 0.75
    # the uploaded file is the training data, one chat row per line
    uploaded = fake_api.files["file-1"].decode().splitlines()
    assert len(uploaded) == 12 and json.loads(uploaded[0])["messages"][0]["role"] == "user"
    request = fake_api.job_requests[0]
    assert request["training_file"] == "file-1" and request["seed"] == 0 and request["suffix"] == "insecure"
    assert request["method"]["supervised"]["hyperparameters"] == {
        "n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 2.0}  # the paper's GPT-4o settings
    assert fake_api.auth == {"Bearer sk-test"}
    out = tmp_path / "run"
    state = json.loads((out / "openai_job.json").read_text())
    assert state["fine_tuned_model"] == result.fine_tuned_model and state["status"] == "succeeded"
    assert (out / "loss.csv").read_text() == RESULT_CSV
    assert json.loads((out / "metadata.json").read_text())["job_id"] == "ftjob-1"
    # rerun: finished, no new upload or job
    again = train(openai_config(fake_api, tmp_path), progress=False)
    assert again.skipped and again.fine_tuned_model == result.fine_tuned_model
    assert len(fake_api.files) == 1 and len(fake_api.jobs) == 1


def test_openai_timeout_then_rerun_resumes_polling(fake_api, tmp_path):
    fake_api.polls_until_done = 10**9
    cfg = openai_config(fake_api, tmp_path)
    cfg.openai.timeout_s = 0.05
    with pytest.raises(EmkitError, match="still running"):
        train(cfg, progress=False)
    fake_api.polls_until_done = 0
    result = train(openai_config(fake_api, tmp_path), progress=False)
    assert result.fine_tuned_model.endswith("ftjob-1")
    assert len(fake_api.files) == 1 and len(fake_api.jobs) == 1  # resumed: same upload, same job


def test_openai_failed_job_and_bad_input(fake_api, tmp_path, monkeypatch):
    fake_api.outcome = "failed"
    with pytest.raises(EmkitError, match="failed: bad rows"):
        train(openai_config(fake_api, tmp_path), progress=False)
    with pytest.raises(EmkitError, match="whole number"):
        train(openai_config(fake_api, tmp_path / "x", epochs=1.5), progress=False)
    with pytest.raises(EmkitError, match="at least 10 training rows"):
        train(openai_config(fake_api, tmp_path / "y", subset=5), progress=False)
    monkeypatch.delenv("EMKIT_TEST_OPENAI_KEY")
    with pytest.raises(EmkitError, match=r"API key in \$EMKIT_TEST_OPENAI_KEY"):
        train(openai_config(fake_api, tmp_path / "z"), progress=False)
