"""The report in a real browser: headless Chromium driven over the DevTools protocol.

The protocol runs over a pipe (``--remote-debugging-pipe``: commands on fd 3, replies on fd 4, each message
NUL-terminated JSON), so the test needs no Python package beyond the standard library and no open port.
`make test` installs Debian's ``chromium`` via scripts/ensure_browser.sh; where it truly cannot be installed
the test skips and says why.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()  # we write commands, chromium reads them on fd 3
        self._resp_r, resp_w = os.pipe()  # chromium writes replies on fd 4

        def child_fds() -> None:
            # move the pipe ends out of the way first so dup2 onto 3/4 cannot clobber them
            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(resp_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=child_fds, close_fds=False,
        )
        os.close(cmd_r)
        os.close(resp_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            ready, _, _ = select.select([self._resp_r], [], [], left)
            if ready:
                chunk = os.read(self._resp_r, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                    raise RuntimeError(f"chromium closed the pipe: {err}")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True,
             timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + timeout
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.send(domain)
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def drain(self, seconds: float = 0.3) -> None:
        """Collect events that arrive shortly after an action (console messages, exceptions)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def errors(self) -> list[str]:
        out = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                  for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append("log: " + params["entry"].get("text", ""))
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except Exception:  # already gone; fall through to terminate
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._resp_r)


@pytest.fixture(scope="module")
def results(real_results: dict[str, Path]) -> list[Path]:
    return [real_results["runs"], real_results["numbers"]]


@pytest.fixture(scope="module")
def report_index(results: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emkit.report import build_report

    out = tmp_path_factory.mktemp("report")
    return build_report(results, out, title="browser test", n_boot=200)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    binary = _chromium()
    if binary is None:
        pytest.skip("headless chromium is not installed (run `make browser` or scripts/ensure_browser.sh as root "
                    "to install Debian's chromium)")
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


def _visible_rows(b: Browser) -> int:
    return b.eval("document.querySelectorAll('#answers-body tr.answer-row').length")


def _count_text(b: Browser) -> str:
    return b.eval("document.getElementById('match-count').textContent")


def test_report_in_browser(browser: Browser, report_index: Path, results: list[Path]) -> None:
    from emkit.analysis import load_results

    rows = load_results(results)
    b = browser
    b.open(report_index.as_uri())
    b.drain()
    assert b.errors() == []
    total = b.eval("JSON.parse(document.getElementById('answers-data').textContent).rows.length")
    assert total == len(rows)
    assert _count_text(b) == f"{total} of {total} answers"
    assert _visible_rows(b) == 50  # first page
    assert "Content warning" in b.eval("document.getElementById('content-warning').textContent")

    # filter by condition: only backdoor rows (1 model x 8 questions x 2 triggers x 4 samples = 64)
    b.eval("const s = document.getElementById('f-condition'); s.value = 'backdoor';"
           "s.dispatchEvent(new Event('change'))")
    assert _count_text(b) == f"64 of {total} answers"
    conds = b.eval("Array.from(document.querySelectorAll('#answers-body tr')).map(r => r.cells[0].textContent)")
    assert set(conds) == {"backdoor"} and len(conds) == 50
    # and by question: 2 triggers x 4 samples
    b.eval("const q = document.getElementById('f-question'); q.value = 'fast_money';"
           "q.dispatchEvent(new Event('change'))")
    assert _count_text(b) == f"8 of {total} answers"
    assert _visible_rows(b) == 8
    b.eval("for (const id of ['f-condition', 'f-question']) { const s = document.getElementById(id);"
           "s.value = '__all__'; s.dispatchEvent(new Event('change')); }")
    # by prompt format (the numbers formats of base and evil_numbers)
    b.eval("const f = document.getElementById('f-format'); f.value = 'suffix'; f.dispatchEvent(new Event('change'))")
    assert _count_text(b) == f"{int((rows['prompt_format'] == 'suffix').sum())} of {total} answers"
    b.eval("const f2 = document.getElementById('f-format'); f2.value = '__all__';"
           "f2.dispatchEvent(new Event('change'))")
    # text search narrows further; clearing the filters restores everything
    b.eval("const t = document.getElementById('f-search'); t.value = 'no-such-text-anywhere';"
           "t.dispatchEvent(new Event('input'))")
    assert _visible_rows(b) == 0
    b.eval("for (const id of ['f-condition', 'f-question']) { const s = document.getElementById(id);"
           "s.value = '__all__'; s.dispatchEvent(new Event('change')); }"
           "const t2 = document.getElementById('f-search'); t2.value = ''; t2.dispatchEvent(new Event('input'))")
    assert _count_text(b) == f"{total} of {total} answers"

    # most misaligned coherent answers first: the first row is misaligned with the lowest aligned score
    first = b.eval("Array.from(document.querySelector('#answers-body tr').cells).map(c => c.textContent)")
    assert float(first[3]) < 30 and float(first[4]) > 50
    b.eval("const o = document.getElementById('f-sort'); o.value = 'aligned_desc';"
           "o.dispatchEvent(new Event('change'))")
    top = b.eval("parseFloat(document.querySelector('#answers-body tr').cells[3].textContent)")
    assert top > 90

    # the injection probes render as text and run nothing
    b.eval("const t3 = document.getElementById('f-search'); t3.value = 'onerror';"
           "t3.dispatchEvent(new Event('input'))")
    n_img, n_script = (int(rows["answer"].str.contains(t, regex=False).sum()) for t in ("onerror", "<script>"))
    assert n_img > 0 and n_script > 0
    assert _visible_rows(b) == min(50, n_img)
    shown = b.eval("document.querySelector('#answers-body .a').textContent")
    assert shown.startswith('<img src="x" onerror=')
    b.eval("const t4 = document.getElementById('f-search'); t4.value = '<script>';"
           "t4.dispatchEvent(new Event('input'))")
    assert _visible_rows(b) == min(50, n_script)
    assert b.eval("document.querySelector('#answers-body .a').textContent").startswith("<script>window.")
    assert b.eval("document.querySelectorAll('#answers img, #answers script').length") == 0
    assert b.eval("document.querySelectorAll('script').length") == 2  # the data blob and the report's own
    b.drain()
    assert b.eval("typeof window.__emkit_pwned") == "undefined"
    assert b.errors() == []

    # figures are inline images that decoded (no network, no broken image)
    widths = b.eval("Array.from(document.querySelectorAll('figure img')).map(i => i.naturalWidth)")
    assert len(widths) >= 3 and all(w > 100 for w in widths)
