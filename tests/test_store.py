"""The SQLite store: upserts, concurrency across processes, crash safety and format versions."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emkit.store import STORE_FORMAT_VERSION, Store, StoreVersionError


def test_put_get_upsert_roundtrip(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    assert store.put_many("generation", [("a", {"text": "x"}), ("b", {"text": "y"})]) == 2
    assert store.get("generation", "a") == {"text": "x"}
    assert store.get("judgment", "a") is None  # kinds are separate namespaces
    store.put("generation", "a", {"text": "z"})  # upsert replaces
    assert store.get_many("generation", ["a", "b", "missing"]) == {"a": {"text": "z"}, "b": {"text": "y"}}
    assert store.count("generation") == 2
    assert [k for k, _ in store.iter("generation")] == ["b", "a"]  # write order; "a" was rewritten last


def test_get_many_handles_more_keys_than_one_query(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.put_many("g", [(str(i), {"i": i}) for i in range(1200)])
    got = store.get_many("g", [str(i) for i in range(1200)])
    assert len(got) == 1200 and got["1199"] == {"i": 1199}


def _writer(path: str, prefix: str, batches: int) -> None:
    store = Store(path)
    for b in range(batches):
        store.put_many("g", [(f"{prefix}-{b}-{i}", {"w": prefix, "b": b}) for i in range(50)])


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite")
    Store(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p, 20)) for p in ("p1", "p2")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    store = Store(path)
    assert store.count("g") == 2 * 20 * 50


KILL_SCRIPT = """
import sys, time
from emkit.store import Store
store = Store(sys.argv[1])
store.put_many("g", [(f"done-{i}", {"i": i}) for i in range(10)])
print("ready", flush=True)
def slow_rows():
    for i in range(100000):
        if i == 500:
            time.sleep(60)  # killed here, mid-transaction
        yield (f"torn-{i}", {"i": i})
store.put_many("g", slow_rows())
"""


def test_writer_killed_mid_batch_leaves_no_partial_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    script = KILL_SCRIPT
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(path)
    keys = [k for k, _ in store.iter("g")]
    assert len(keys) == 10 and all(k.startswith("done-") for k in keys)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value=? WHERE key='format_version'", (str(STORE_FORMAT_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError, match="newer emkit"):
        Store(path)
