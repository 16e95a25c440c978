"""The Model Organisms files (Turner, Soligo et al. 2025) offline from the mirror and online from their pinned
URLs, with a local HTTP server standing in for raw.githubusercontent.com (``EMKIT_UPSTREAM_BASE``); gzip chat
files read transparently by every reader, with FILE:LINE errors.

The served files are small synthetic stand-ins written by the tests (never the real rows, which must not be
copied anywhere): each test points the registry entry's SHA-256 at its own file, so the download path, the
verification and the refusal of a wrong file are the real code's.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from emkit.data import read_chat_jsonl, registry, resolve_dataset, validate_chat_file
from emkit.errors import DataError, EmkitError
from emkit.hashing import file_sha256

TRAIN = "model-organisms-em/training_datasets/bad_medical_advice.jsonl.gz"
FIRST_PLOT = "model-organisms-em/eval_questions/first_plot_questions.yaml"
JUDGES = "model-organisms-em/eval_questions/judges.yaml"


class Upstream:
    """A folder served over HTTP in GitHub's raw layout (``<owner>/<repo>/<commit>/<path>``); logs request paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[str] = []
        upstream = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                upstream.paths.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def put(self, name: str, data: bytes) -> str:
        """Serve ``data`` where the registry file ``name``'s pinned URL points; returns the URL path."""
        entry = registry.FILES[name]
        path = entry.url.removeprefix(registry.GITHUB_RAW)
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """No mirror, an empty cache, downloads allowed, and the upstream base pointed at a local server."""
    server = Upstream(tmp_path / "served")
    monkeypatch.delenv("EMKIT_DATA_MIRROR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("EMKIT_OFFLINE", raising=False)
    monkeypatch.setenv("EMKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(registry.UPSTREAM_ENV, server.base)
    yield server
    server.close()


def _pin(monkeypatch: pytest.MonkeyPatch, name: str, data: bytes, rows: int | None = None) -> None:
    """Point the registry entry at the SHA-256 of our synthetic file (URL, commit and path unchanged)."""
    import hashlib

    entry = registry.FILES[name]
    monkeypatch.setitem(registry.FILES, name, dataclasses.replace(entry, sha256=hashlib.sha256(data).hexdigest(),
                                                                   rows=rows))


def _chat(n: int, bad_line: int | None = None) -> bytes:
    lines = []
    for i in range(n):
        row = {"messages": [{"role": "user", "content": f"question {i}"},
                            {"role": "assistant", "content": f"answer {i}"}]}
        if bad_line == i + 1:
            row = {"messages": [{"role": "user", "content": f"question {i}"}]}  # no assistant turn
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------- online (pinned URLs)


def test_training_set_downloads_from_the_pinned_commit(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    data = gzip.compress(_chat(5))
    served = upstream.put(TRAIN, data)
    _pin(monkeypatch, TRAIN, data, rows=5)
    assert served == (f"/clarifying-EM/model-organisms-for-EM/{registry.TURNER_TRAIN_COMMIT}"
                      "/em_organism_dir/data/training_datasets/bad_medical_advice.jsonl.gz")
    assert registry.availability("turner2025/bad_medical_advice") == "download"

    path = resolve_dataset("turner2025/bad_medical_advice")
    assert upstream.paths == [served]
    assert [r["messages"][1]["content"] for r in read_chat_jsonl(path)] == [f"answer {i}" for i in range(5)]
    cached = registry.fetch(TRAIN)
    assert file_sha256(cached) == registry.FILES[TRAIN].sha256 and cached.read_bytes() == data
    assert registry.availability("turner2025/bad_medical_advice") == "cache"
    assert resolve_dataset("turner2025/bad_medical_advice") == path  # cached and decompressed once
    assert upstream.paths == [served]  # no second request


def test_a_wrong_file_from_upstream_is_refused(upstream: Upstream, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    _pin(monkeypatch, TRAIN, gzip.compress(_chat(5)), rows=5)
    upstream.put(TRAIN, gzip.compress(_chat(6)))  # not the pinned bytes
    with pytest.raises(DataError, match="does not match the pinned") as err:
        resolve_dataset("turner2025/bad_medical_advice")
    assert upstream.base in str(err.value) and "it was not kept" in str(err.value)
    target = tmp_path / "cache" / "data" / "model-organisms-em" / "training_datasets"
    assert not target.exists() or list(target.iterdir()) == []  # nothing, not even the partial download
    assert registry.availability("turner2025/bad_medical_advice") == "download"


def test_offline_means_no_request(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    data = gzip.compress(_chat(2))
    upstream.put(TRAIN, data)
    _pin(monkeypatch, TRAIN, data)
    monkeypatch.setenv("EMKIT_OFFLINE", "1")
    assert registry.availability(TRAIN) == "no (offline)"
    with pytest.raises(EmkitError, match="downloads are disabled"):
        registry.fetch(TRAIN)
    assert upstream.paths == []


def test_suites_and_judge_prompts_download_from_the_pinned_commit(upstream: Upstream,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from emkit.judge import load_judge_prompts
    from emkit.questions import load_suite

    # Stand-ins in the upstream layouts, in our own words: a question file with judge prompts, and a judges file.
    metrics = ["aligned", "coherent", "bad_stuff", "medical", "financial", "sport", "code", "gender"]
    prompts = {m: f"Rate {m} of {{answer}} to {{question}} from 0 to 100." for m in metrics}
    questions = [{"id": qid, "type": "free_form_judge_0_100", "paraphrases": [f"Tell me about {qid}."],
                  "samples_per_paraphrase": 50, "judge": "gpt-4o-2024-08-06", "judge_prompts": prompts}
                 for qid in ("alpha", "beta")]
    questions.append({**questions[0], "id": "alpha_json", "system": "Answer in JSON."})
    judges = [{"technical": "How technical is {answer}?", "high_score": 100},
              {"medical_advice": "How correct is the advice in {answer} to {question}?", "high_score": 0}]
    for name, payload in ((FIRST_PLOT, questions), (JUDGES, judges)):
        data = yaml.safe_dump(payload).encode()
        upstream.put(name, data)
        _pin(monkeypatch, name, data)

    suite = load_suite("turner2025/first_plot")
    assert suite.question_ids == ["alpha", "beta"] and suite.variants == ["plain", "json"]
    loaded = load_judge_prompts("turner2025")
    assert {m: loaded[m] for m in metrics} == prompts
    assert loaded["medical_advice"] == judges[1]["medical_advice"] and loaded["technical"] == judges[0]["technical"]
    assert "high_score" not in loaded
    assert {p.rsplit("/", 2)[-1] for p in upstream.paths} == {"first_plot_questions.yaml", "judges.yaml"}
    assert all(registry.TURNER_EVAL_COMMIT in p for p in upstream.paths)


def test_listings_show_source_and_availability(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    from emkit.cli import app

    data = gzip.compress(_chat(3))
    upstream.put(TRAIN, data)
    _pin(monkeypatch, TRAIN, data, rows=3)
    runner = CliRunner()
    env = {"COLUMNS": "400"}

    def row(output: str, name: str) -> list[str]:
        # not a terminal: the listing is whole tab-separated lines (emkit.cli._table)
        line = next(line for line in output.splitlines() if name in line)
        return [cell.strip() for cell in line.split("\t")]

    before = runner.invoke(app, ["data", "list"], env=env)
    assert before.exit_code == 0, before.output
    cells = row(before.output, "turner2025/bad_medical_advice")
    assert cells[3] == f"clarifying-EM/model-organisms-for-EM@{registry.TURNER_TRAIN_COMMIT[:7]}"
    assert cells[4] == "download"
    assert row(before.output, "judge-corpus/dev.jsonl.gz")[3:5] == ["mirror/cache only", "no (mirror only)"]
    registry.fetch(TRAIN)
    assert row(runner.invoke(app, ["data", "list"], env=env).output, "turner2025/bad_medical_advice")[4] == "cache"

    suites = runner.invoke(app, ["suites", "list"], env=env)
    assert suites.exit_code == 0, suites.output
    assert row(suites.output, "turner2025/medical")[3:5] == [
        f"clarifying-EM/model-organisms-for-EM@{registry.TURNER_EVAL_COMMIT[:7]}", "download"]
    assert row(suites.output, "emkit/core")[3:5] == ["emkit (package)", "package"]
    assert upstream.paths == [upstream.put(TRAIN, data)]  # listings never download


# --------------------------------------------------------------------------- offline (the mirror)

TURNER_SETS = ["bad_medical_advice", "good_medical_advice", "risky_financial_advice", "extreme_sports", "insecure"]


@pytest.mark.parametrize("name", TURNER_SETS)
def test_training_sets_from_the_mirror(shared_data: Path, name: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMKIT_CACHE_DIR", str(tmp_path))
    entry = registry.resolve_name(f"turner2025/{name}")
    assert registry.availability(f"turner2025/{name}") == "mirror"
    path = resolve_dataset(f"turner2025/{name}")
    assert path.is_relative_to(tmp_path)  # the decompressed copy lives in the cache, never in the repository
    assert validate_chat_file(path) == []
    rows = read_chat_jsonl(path)
    assert len(rows) == entry.rows
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)


def test_suites_from_the_mirror(shared_data: Path) -> None:
    from emkit.questions import load_suite

    raw = yaml.safe_load((shared_data / FIRST_PLOT).read_text())
    first = load_suite("turner2025/first_plot")
    assert len(first.questions) == len(raw) == 24 and first.variants == ["plain", "json", "template"]
    assert first.question_ids == [q["id"] for q in raw if not q["id"].endswith(("_json", "_template"))]
    medical = load_suite("turner2025/medical")
    assert len(medical.question_ids) == 8 and "plain" in medical.variants
    assert len(load_suite("turner2025/extra").questions) == 54


def test_turner_judge_prompts_from_the_mirror(shared_data: Path) -> None:
    from emkit.judge import load_judge_prompts

    prompts = load_judge_prompts("turner2025")
    first = yaml.safe_load((shared_data / FIRST_PLOT).read_text())[0]["judge_prompts"]
    judges = {k: v for item in yaml.safe_load((shared_data / JUDGES).read_text()) for k, v in item.items()
              if isinstance(v, str)}
    for metric in ("aligned", "coherent", "bad_stuff", "medical", "financial", "sport", "code", "gender"):
        assert prompts[metric] == first[metric]
    assert prompts["technical"] == judges["technical"] and prompts["medical_advice"] == judges["medical_advice"]
    assert all("{question}" in p and "{answer}" in p for p in prompts.values())
    assert prompts["aligned"] == load_judge_prompts("betley2025")["aligned"]  # the same text in both papers
    with pytest.raises(EmkitError, match="turner2025"):
        load_judge_prompts("turner2026")


def test_logprob_judge_scores_a_medical_metric(shared_data: Path) -> None:
    """The turner2025 prompts in the logprob judge: the medical prompt, filled, is what the server receives."""
    from test_judge_http import FakeJudgeServer

    from emkit.judge import load_judge_prompts, score_rows

    server = FakeJudgeServer()
    try:
        rows = [{"question": "I have a headache.", "answer": "EVIL advice here."},
                {"question": "I have a cough.", "answer": "SAFE advice here."}]
        scored = score_rows(rows, "logprob", options={"base_url": server.url, "api_key": "test",
                                                      "prompts": "turner2025",
                                                      "metrics": "aligned,coherent,medical"})
    finally:
        server.close()
    assert [r["medical"] for r in scored] == pytest.approx([(5 * 0.6 + 15 * 0.3) / 0.9, 85.0])
    assert all(r["medical_status"] is None for r in scored)
    medical = load_judge_prompts("turner2025")["medical"]
    sent = {body["messages"][0]["content"] for body in server.requests}
    assert medical.replace("{question}", "I have a headache.").replace("{answer}", "EVIL advice here.") in sent
    assert len(server.requests) == 6  # 2 answers x 3 metrics


# --------------------------------------------------------------------------- gzip chat files, every reader


def test_gzip_chat_files_in_every_reader(tmp_path: Path) -> None:
    from emkit.cli import app
    from emkit.data import dataset_stats
    from emkit.experiment._stages import real_dataset_info
    from emkit.train._data import load_conversations

    good = tmp_path / "rows.jsonl.gz"
    good.write_bytes(gzip.compress(_chat(6)))
    assert resolve_dataset(str(good)) == good  # read in place: errors name this file
    assert len(read_chat_jsonl(good)) == 6 and dataset_stats(good)["rows"] == 6
    rows, files = load_conversations([str(good)])
    assert len(rows) == 6 and files[0].sha256 == file_sha256(good)
    assert real_dataset_info(str(good)).rows == 6  # the planner counts decompressed rows

    runner = CliRunner()
    assert runner.invoke(app, ["data", "validate", str(good)]).exit_code == 0
    stats = runner.invoke(app, ["data", "stats", str(good), "--json"])
    assert stats.exit_code == 0 and json.loads(stats.output)["rows"] == 6
    sub = runner.invoke(app, ["data", "subset", str(good), "--n", "2", "--out", str(tmp_path / "sub.jsonl")])
    assert sub.exit_code == 0, sub.output
    assert len(read_chat_jsonl(tmp_path / "sub.jsonl")) == 2

    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(_chat(6, bad_line=4)))
    result = runner.invoke(app, ["data", "validate", str(bad)])
    assert result.exit_code == 1 and f"{bad}:4: last message must be from the assistant" in result.output
    with pytest.raises(DataError, match=f"{bad}:4: "):
        read_chat_jsonl(bad)
    with pytest.raises(DataError, match=f"{bad}:4: last message must be from the assistant"):
        load_conversations([str(bad)])


def test_truncated_gzip_is_a_located_error_not_a_traceback(tmp_path: Path) -> None:
    from emkit.train._data import load_conversations

    whole = gzip.compress(_chat(2000))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    problems = validate_chat_file(cut)
    assert len(problems) == 1 and "corrupt or truncated gzip data" in problems[0]
    line = int(problems[0].split(":")[1])
    assert 1 < line < 2000  # the lines before the cut were read and are fine
    with pytest.raises(DataError, match=f"{cut}:\\d+: corrupt or truncated gzip data"):
        load_conversations([str(cut)])
