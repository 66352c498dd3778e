"""The SQLite store: one database file in WAL mode, safe across the API and worker processes.

WAL lets the API read while the worker writes. Each thread keeps its own connection (sqlite3
connections must not cross threads), and every write runs inside `BEGIN IMMEDIATE`, which takes
the write lock up front so two processes never interleave a read-modify-write.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import astuple, fields
from pathlib import Path
from typing import Literal

from tunery.store.records import (
    CheckpointRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    ModelRecord,
    Page,
    UnknownCursor,
)

SCHEMA_VERSION = 1

# `seq` orders every table by insertion: ids are random, and created_at has only second precision.
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, org TEXT NOT NULL,
    filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,
    status TEXT NOT NULL, path TEXT NOT NULL, status_details TEXT, format TEXT, examples INTEGER
);
CREATE INDEX IF NOT EXISTS files_org ON files (org, seq);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, org TEXT NOT NULL,
    model TEXT NOT NULL, training_file TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
    seed INTEGER NOT NULL, method TEXT NOT NULL, hyperparameters TEXT NOT NULL, validation_file TEXT,
    suffix TEXT, metadata TEXT, error TEXT, fine_tuned_model TEXT, result_files TEXT NOT NULL,
    trained_tokens INTEGER, finished_at INTEGER, estimated_finish INTEGER,
    resume INTEGER NOT NULL, trainer_pid INTEGER, metrics_offset INTEGER NOT NULL, metrics_step INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_org ON jobs (org, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, type TEXT NOT NULL, data TEXT
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
    step INTEGER NOT NULL, created_at INTEGER NOT NULL, model TEXT NOT NULL, metrics TEXT NOT NULL,
    path TEXT NOT NULL, UNIQUE (job_id, step)
);
CREATE TABLE IF NOT EXISTS models (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, org TEXT NOT NULL, base TEXT NOT NULL,
    kind TEXT NOT NULL, path TEXT NOT NULL, created_at INTEGER NOT NULL, job_id TEXT, step INTEGER
);
"""

# record type -> (table, columns stored as JSON text)
_TABLES = {
    FileRecord: ("files", frozenset()),
    JobRecord: ("jobs", frozenset({"method", "hyperparameters", "metadata", "error", "result_files"})),
    EventRecord: ("events", frozenset({"data"})),
    CheckpointRecord: ("checkpoints", frozenset({"metrics"})),
    ModelRecord: ("models", frozenset()),
}
_JOB_FIELDS = frozenset(f.name for f in fields(JobRecord))


def _encode(value, as_json: bool):
    if as_json:
        return None if value is None else json.dumps(value)
    return int(value) if isinstance(value, bool) else value


def _decode(cls, row: sqlite3.Row):
    _, json_cols = _TABLES[cls]
    values = {}
    for f in fields(cls):
        value = row[f.name]
        if f.name in json_cols and value is not None:
            value = json.loads(value)
        elif f.type == "bool":
            value = bool(value)
        values[f.name] = value
    return cls(**values)


class SQLiteTransaction:
    """The write side of the store, bound to one connection inside BEGIN IMMEDIATE."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def _insert(self, record) -> None:
        table, json_cols = _TABLES[type(record)]
        names = [f.name for f in fields(record)]
        values = [_encode(v, n in json_cols) for n, v in zip(names, astuple(record), strict=True)]
        self._conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)

    def add_file(self, record: FileRecord) -> None:
        self._insert(record)

    def delete_file(self, file_id: str) -> bool:
        return self._conn.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def add_job(self, record: JobRecord) -> None:
        self._insert(record)

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decode(JobRecord, row) if row else None

    def oldest_job(self, status: str) -> JobRecord | None:
        row = self._conn.execute("SELECT * FROM jobs WHERE status = ? ORDER BY seq LIMIT 1", (status,)).fetchone()
        return _decode(JobRecord, row) if row else None

    def update_job(self, job_id: str, *, expect: Collection[str] | None = None, **changes) -> bool:
        bad = set(changes) - (_JOB_FIELDS - {"id"})
        if bad or not changes:
            raise ValueError(f"cannot update job fields {sorted(bad)} (the id is fixed; give at least one field)")
        json_cols = _TABLES[JobRecord][1]
        sets = ", ".join(f"{name} = ?" for name in changes)
        params = [_encode(v, n in json_cols) for n, v in changes.items()]
        sql = f"UPDATE jobs SET {sets} WHERE id = ?"
        params.append(job_id)
        if expect is not None:
            sql += f" AND status IN ({', '.join('?' * len(expect))})"
            params.extend(expect)
        return self._conn.execute(sql, params).rowcount > 0

    def add_event(self, record: EventRecord) -> None:
        self._insert(record)

    def add_checkpoint(self, record: CheckpointRecord) -> bool:
        exists = self._conn.execute(
            "SELECT 1 FROM checkpoints WHERE job_id = ? AND step = ?", (record.job_id, record.step)
        ).fetchone()
        if exists:
            return False
        self._insert(record)
        return True

    def delete_checkpoint(self, checkpoint_id: str) -> None:
        self._conn.execute("DELETE FROM checkpoints WHERE id = ?", (checkpoint_id,))

    def add_model(self, record: ModelRecord) -> None:
        self._insert(record)

    def delete_model(self, model_id: str) -> bool:
        return self._conn.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount > 0


class SQLiteStore:
    """`Store` on one SQLite file. Safe to share between threads and processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise RuntimeError(f"{self.path} has schema version {version}; this tunery expects {SCHEMA_VERSION}")
        with self._write() as c:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN ourselves, so nothing commits behind our back.
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if conn.in_transaction:
            raise RuntimeError("nested store transactions are not supported")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[SQLiteTransaction]:
        with self._write() as conn:
            yield SQLiteTransaction(conn)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- reads --------------------------------------------------------------------------------

    def _one(self, cls, sql: str, params: tuple):
        row = self._conn().execute(sql, params).fetchone()
        return _decode(cls, row) if row else None

    def _page(
        self, cls, where: str, params: list, *, after: str | None, limit: int, order: Literal["asc", "desc"] = "desc"
    ) -> Page:
        table = _TABLES[cls][0]
        if after is not None:
            row = self._conn().execute(f"SELECT seq FROM {table} WHERE id = ? AND {where}", [after, *params]).fetchone()
            if row is None:
                raise UnknownCursor(after)
            where += " AND seq > ?" if order == "asc" else " AND seq < ?"
            params = [*params, row["seq"]]
        direction = "ASC" if order == "asc" else "DESC"
        rows = (
            self._conn()
            .execute(f"SELECT * FROM {table} WHERE {where} ORDER BY seq {direction} LIMIT ?", [*params, limit + 1])
            .fetchall()
        )
        return Page(items=[_decode(cls, r) for r in rows[:limit]], has_more=len(rows) > limit)

    def get_file(self, file_id: str, org: str | None = None) -> FileRecord | None:
        if org is None:
            return self._one(FileRecord, "SELECT * FROM files WHERE id = ?", (file_id,))
        return self._one(FileRecord, "SELECT * FROM files WHERE id = ? AND org = ?", (file_id, org))

    def list_files(
        self,
        org: str,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10000,
        order: Literal["asc", "desc"] = "desc",
    ) -> Page[FileRecord]:
        where, params = "org = ?", [org]
        if purpose is not None:
            where, params = where + " AND purpose = ?", [*params, purpose]
        return self._page(FileRecord, where, params, after=after, limit=limit, order=order)

    def file_in_use(self, file_id: str) -> bool:
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM jobs WHERE (training_file = ? OR validation_file = ?)"
                " AND status NOT IN ('succeeded', 'failed', 'cancelled') LIMIT 1",
                (file_id, file_id),
            )
            .fetchone()
        )
        return row is not None

    def get_job(self, job_id: str, org: str | None = None) -> JobRecord | None:
        if org is None:
            return self._one(JobRecord, "SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._one(JobRecord, "SELECT * FROM jobs WHERE id = ? AND org = ?", (job_id, org))

    def list_jobs(
        self, org: str, *, after: str | None = None, limit: int = 20, metadata: dict[str, str] | None = None
    ) -> Page[JobRecord]:
        where, params = "org = ?", [org]
        for key, value in (metadata or {}).items():
            # json_each keeps keys and values as bound parameters: no JSON-path quoting to get wrong.
            where += " AND EXISTS (SELECT 1 FROM json_each(jobs.metadata) WHERE key = ? AND value = ?)"
            params += [key, value]
        return self._page(JobRecord, where, params, after=after, limit=limit)

    def jobs_in(self, statuses: Collection[str]) -> list[JobRecord]:
        statuses = list(statuses)
        rows = (
            self._conn()
            .execute(f"SELECT * FROM jobs WHERE status IN ({', '.join('?' * len(statuses))}) ORDER BY seq", statuses)
            .fetchall()
        )
        return [_decode(JobRecord, r) for r in rows]

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[EventRecord]:
        return self._page(EventRecord, "job_id = ?", [job_id], after=after, limit=limit)

    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[CheckpointRecord]:
        return self._page(CheckpointRecord, "job_id = ?", [job_id], after=after, limit=limit)

    def get_model(self, model_id: str, org: str | None = None) -> ModelRecord | None:
        if org is None:
            return self._one(ModelRecord, "SELECT * FROM models WHERE id = ?", (model_id,))
        return self._one(ModelRecord, "SELECT * FROM models WHERE id = ? AND org = ?", (model_id, org))

    def list_models(self, org: str | None = None, *, job_id: str | None = None) -> list[ModelRecord]:
        where, params = "1 = 1", []
        if org is not None:
            where, params = where + " AND org = ?", [*params, org]
        if job_id is not None:
            where, params = where + " AND job_id = ?", [*params, job_id]
        rows = self._conn().execute(f"SELECT * FROM models WHERE {where} ORDER BY seq", params).fetchall()
        return [_decode(ModelRecord, r) for r in rows]
