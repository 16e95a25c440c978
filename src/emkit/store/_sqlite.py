"""SQLite (WAL) key-value store of JSON records grouped by kind.

Why SQLite: one file per run, safe concurrent writers across processes (WAL + busy timeout), and each
``put_many`` is one transaction, so a writer killed mid-batch leaves either the whole batch or none of it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from emkit.errors import EmkitError

# Version of the on-disk layout. A store written by a newer version is refused rather than misread.
STORE_FORMAT_VERSION = 1
# SQLite's limit on bound variables is 32766 in recent builds; stay far below it per query.
_CHUNK = 500


class StoreVersionError(EmkitError):
    """The store file was written by a newer emkit."""


class Store:
    """A content-addressed record store in one SQLite file.

    Records are JSON objects under ``(kind, key)``; ``kind`` is e.g. ``"generation"`` or ``"judgment"`` and
    ``key`` a content hash (:func:`emkit.hashing.content_hash`). Writing an existing key replaces it (upsert).
    """

    def __init__(self, path: str | Path, timeout_s: float = 120.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: we manage transactions explicitly (BEGIN IMMEDIATE takes the write lock up
        # front, so two writers queue on busy_timeout instead of deadlocking on lock upgrades).
        self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._init_schema()

    # ------------------------------------------------------------------ schema
    def _init_schema(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL, "
                    "value TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (kind, key))"
                )
                row = self._conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
                if row is None:
                    self._conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(STORE_FORMAT_VERSION),))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        found = int(row[0]) if row else STORE_FORMAT_VERSION
        if found > STORE_FORMAT_VERSION:
            raise StoreVersionError(
                f"{self.path}: store format version {found} was written by a newer emkit "
                f"(this one reads up to {STORE_FORMAT_VERSION}).",
                hint="upgrade emkit (pip install -U emkit), or point this run at a new store/run folder",
            )
        self.format_version = found

    # ------------------------------------------------------------------ reads
    def get(self, kind: str, key: str) -> dict | None:
        """The record under (kind, key), or None."""
        return self.get_many(kind, [key]).get(key)

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict]:
        """Records for the keys that exist (missing keys are simply absent from the result)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, value FROM records WHERE kind=? AND key IN ({marks})", (kind, *chunk)
                ).fetchall()
                found.update((k, json.loads(v)) for k, v in rows)
        return found

    def has(self, kind: str, key: str) -> bool:
        return self.get(kind, key) is not None

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            return self._conn.execute("SELECT COUNT(*) FROM records WHERE kind=?", (kind,)).fetchone()[0]

    def iter(self, kind: str) -> Iterator[tuple[str, dict]]:
        """All (key, record) of one kind, in the order they were (last) written."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM records WHERE kind=? ORDER BY created, rowid", (kind,)
            ).fetchall()
        for key, value in rows:
            yield key, json.loads(value)

    def kinds(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT DISTINCT kind FROM records ORDER BY kind")]

    # ------------------------------------------------------------------ writes
    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self.put_many(kind, [(key, value)])

    def put_many(self, kind: str, items: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Upsert many records in one transaction (all or nothing); returns how many were written."""
        now = time.time()
        written = 0

        def rows():  # streamed inside the transaction: a kill while items are produced commits nothing
            nonlocal written
            for key, value in items:
                written += 1
                yield (kind, key, json.dumps(value, ensure_ascii=False), now)

        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", rows())
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return written

    def delete(self, kind: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("DELETE FROM records WHERE kind=? AND key=?", [(kind, k) for k in keys])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"
