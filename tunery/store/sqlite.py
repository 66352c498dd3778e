"""The SQLite database under the store: one file in WAL mode, safe across the API and worker processes.

WAL lets the API read while the worker writes. Each thread keeps its own connection (sqlite3
connections must not cross threads), and every write runs inside `BEGIN IMMEDIATE`, which takes
the write lock up front so two processes never interleave a read-modify-write. That lock is
also what makes claiming a queued job safe, so the claim query needs no row lock here.
SQLite is for one host: its locks do not hold across a network file system.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tunery.store.sql import MIGRATIONS, SCHEMA_VERSION, SQLStore, schema_statements

BUSY_TIMEOUT_S = 30


def connect(path: Path) -> sqlite3.Connection:
    """A connection as every tunery database wants it: WAL, fsync on commit, a 30 s wait for locks,
    rows by name, and no implicit transactions (we BEGIN ourselves).

    Switching a new file to WAL needs a moment of exclusive access, and SQLite reports "database is
    locked" at once, without waiting, when another process holds the file just then (several
    processes opening a new database together); so the switch is retried until the same timeout.
    """
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.02)
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class SQLiteDatabase:
    seq_column = "INTEGER PRIMARY KEY AUTOINCREMENT"
    json_pairs = "json_each({})"
    row_lock = ""
    clock = "(julianday('now') - 2440587.5) * 86400.0"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.write():
            version = self.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}; this tunery expects {SCHEMA_VERSION}")
            for statement in schema_statements(self):
                self.execute(statement)
            if version:  # 0 is a new file, created at the current version just now
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step]:
                        self.execute(statement)
            self.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
        return conn

    def execute(self, sql: str, params: Sequence = ()) -> sqlite3.Cursor:
        return self._conn().execute(sql, params)

    @contextmanager
    def write(self) -> Iterator[None]:
        conn = self._conn()
        if conn.in_transaction:
            raise RuntimeError("nested store transactions are not supported")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def open_sqlite(path: Path) -> SQLStore:
    return SQLStore(SQLiteDatabase(path))
