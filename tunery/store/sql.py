"""The store in the SQL that SQLite and PostgreSQL share, over one small `Database` per backend.

Everything here is written once for both. The dialects differ in a few places only, and each
backend's `Database` supplies those:

- placeholders are written `?` here; the PostgreSQL driver wants `%s`, and its Database rewrites
  them (no statement here has a `?` or `%` of its own);
- the insertion-order key: SQLite's `INTEGER PRIMARY KEY AUTOINCREMENT`, PostgreSQL's identity;
- reading a JSON object's key/value pairs (the metadata filter);
- the row lock that makes claiming a queued job safe with many workers: none on SQLite, whose
  write transaction holds the whole database, `FOR UPDATE SKIP LOCKED` on PostgreSQL;
- the clock: leases are timed by the database's clock, so the workers' hosts need not agree.

JSON columns are plain text on both, so one encoding serves both.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import astuple, fields
from typing import Any, Literal, Protocol

from tunery.store.records import (
    CheckpointRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    ModelRecord,
    Page,
    UnknownCursor,
)

SCHEMA_VERSION = 3

# `seq` orders every table by insertion: ids are random, and created_at has only second precision.
# BIGINT and DOUBLE PRECISION: SQLite reads them as INTEGER and REAL, PostgreSQL's INTEGER and REAL
# would be too small for byte counts and too coarse for lease times.
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq {seq}, id TEXT NOT NULL UNIQUE, org TEXT NOT NULL,
    filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes BIGINT NOT NULL, created_at BIGINT NOT NULL,
    status TEXT NOT NULL, path TEXT NOT NULL, status_details TEXT, format TEXT, examples BIGINT
);
CREATE INDEX IF NOT EXISTS files_org ON files (org, seq);
CREATE TABLE IF NOT EXISTS jobs (
    seq {seq}, id TEXT NOT NULL UNIQUE, org TEXT NOT NULL,
    model TEXT NOT NULL, training_file TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL,
    seed BIGINT NOT NULL, method TEXT NOT NULL, hyperparameters TEXT NOT NULL, validation_file TEXT,
    suffix TEXT, metadata TEXT, error TEXT, fine_tuned_model TEXT, result_files TEXT NOT NULL,
    trained_tokens BIGINT, finished_at BIGINT, estimated_finish BIGINT,
    resume BIGINT NOT NULL, trainer_pid BIGINT, metrics_offset BIGINT NOT NULL, metrics_step BIGINT NOT NULL,
    attempts BIGINT NOT NULL, worker TEXT, lease_until DOUBLE PRECISION, integrations TEXT
);
CREATE INDEX IF NOT EXISTS jobs_org ON jobs (org, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS events (
    seq {seq}, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
    created_at BIGINT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, type TEXT NOT NULL, data TEXT
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq {seq}, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
    step BIGINT NOT NULL, created_at BIGINT NOT NULL, model TEXT NOT NULL, metrics TEXT NOT NULL,
    path TEXT NOT NULL, UNIQUE (job_id, step)
);
CREATE TABLE IF NOT EXISTS models (
    seq {seq}, id TEXT NOT NULL UNIQUE, org TEXT NOT NULL, base TEXT NOT NULL,
    kind TEXT NOT NULL, path TEXT NOT NULL, created_at BIGINT NOT NULL, job_id TEXT, step BIGINT
);
"""

# Statements that take a store at version N-1 to version N.
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE jobs ADD COLUMN worker TEXT", "ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION"],
    3: ["ALTER TABLE jobs ADD COLUMN integrations TEXT"],  # OpenAI's `integrations` (wandb; mlflow, tensorboard)
}

# Statuses in which some worker looks after a job (its trainer may be running).
_UNSETTLED = "status IN ('running', 'pausing') OR (status = 'cancelled' AND trainer_pid IS NOT NULL)"

# record type -> (table, columns stored as JSON text)
_TABLES = {
    FileRecord: ("files", frozenset()),
    JobRecord: ("jobs", frozenset({"method", "hyperparameters", "metadata", "error", "result_files", "integrations"})),
    EventRecord: ("events", frozenset({"data"})),
    CheckpointRecord: ("checkpoints", frozenset({"metrics"})),
    ModelRecord: ("models", frozenset()),
}
_JOB_FIELDS = frozenset(f.name for f in fields(JobRecord))


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list: ...


class Database(Protocol):
    """One backend's connections and its few words of dialect."""

    seq_column: str  # DDL of the insertion-order primary key
    json_pairs: str  # a table of (key, value) text pairs of the JSON object in column {}
    row_lock: str  # appended to the claim query
    clock: str  # seconds since the epoch, as a DOUBLE PRECISION expression

    def execute(self, sql: str, params: Sequence = ()) -> Cursor:
        """Run `sql` on this thread's connection; rows are addressable by column name."""
        ...

    def write(self) -> AbstractContextManager[None]:
        """One atomic transaction on this thread's connection (not nestable)."""
        ...

    def close(self) -> None: ...


def schema_statements(db: Database) -> list[str]:
    text = SCHEMA.replace("{seq}", db.seq_column)
    return [s.strip() for s in text.split(";") if s.strip()]


def _encode(value, as_json: bool):
    if as_json:
        return None if value is None else json.dumps(value)
    return int(value) if isinstance(value, bool) else value


def _decode(cls, row):
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


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class SQLTransaction:
    """The write side of the store, inside one transaction of `db`."""

    def __init__(self, db: Database):
        self._db = db

    def _insert(self, record, suffix: str = "") -> int:
        table, json_cols = _TABLES[type(record)]
        names = [f.name for f in fields(record)]
        values = [_encode(v, n in json_cols) for n, v in zip(names, astuple(record), strict=True)]
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({_marks(len(names))}){suffix}"
        return self._db.execute(sql, values).rowcount

    def clock(self) -> float:
        return float(self._db.execute(f"SELECT {self._db.clock} AS now").fetchone()["now"])

    def add_file(self, record: FileRecord) -> None:
        self._insert(record)

    def delete_file(self, file_id: str) -> bool:
        return self._db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def add_job(self, record: JobRecord) -> None:
        self._insert(record)

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decode(JobRecord, row) if row else None

    def oldest_job(self, status: str) -> JobRecord | None:
        sql = f"SELECT * FROM jobs WHERE status = ? ORDER BY seq LIMIT 1{self._db.row_lock}"
        row = self._db.execute(sql, (status,)).fetchone()
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
            sql += f" AND status IN ({_marks(len(expect))})"
            params.extend(expect)
        return self._db.execute(sql, params).rowcount > 0

    def transfer_lease(self, job_id: str, *, holder: str | None, worker: str, until: float) -> bool:
        # COALESCE: `worker = NULL` is never true, and `IS NOT DISTINCT FROM` is not SQLite's.
        return (
            self._db.execute(
                "UPDATE jobs SET worker = ?, lease_until = ? WHERE id = ? AND COALESCE(worker, '') = ?",
                (worker, until, job_id, holder or ""),
            ).rowcount
            > 0
        )

    def renew_leases(self, worker: str, job_ids: Collection[str], until: float) -> set[str]:
        if not job_ids:
            return set()
        ids = list(job_ids)
        where = f"worker = ? AND id IN ({_marks(len(ids))})"
        self._db.execute(f"UPDATE jobs SET lease_until = ? WHERE {where}", [until, worker, *ids])
        return {row["id"] for row in self._db.execute(f"SELECT id FROM jobs WHERE {where}", [worker, *ids]).fetchall()}

    def add_event(self, record: EventRecord) -> None:
        self._insert(record)

    def add_checkpoint(self, record: CheckpointRecord) -> bool:
        return self._insert(record, " ON CONFLICT (job_id, step) DO NOTHING") > 0

    def delete_checkpoint(self, checkpoint_id: str) -> None:
        self._db.execute("DELETE FROM checkpoints WHERE id = ?", (checkpoint_id,))

    def add_model(self, record: ModelRecord) -> None:
        self._insert(record)

    def delete_model(self, model_id: str) -> bool:
        return self._db.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount > 0


class SQLStore:
    """`Store` on a `Database`: safe to share between threads, processes and (on PostgreSQL) hosts."""

    def __init__(self, db: Database):
        self.db = db

    @contextmanager
    def transaction(self) -> Iterator[SQLTransaction]:
        with self.db.write():
            yield SQLTransaction(self.db)

    def close(self) -> None:
        self.db.close()

    def clock(self) -> float:
        return SQLTransaction(self.db).clock()

    # -- reads --------------------------------------------------------------------------------

    def _one(self, cls, sql: str, params: tuple):
        row = self.db.execute(sql, params).fetchone()
        return _decode(cls, row) if row else None

    def _all(self, cls, sql: str, params: Sequence = ()) -> list:
        return [_decode(cls, r) for r in self.db.execute(sql, params).fetchall()]

    def _page(
        self, cls, where: str, params: list, *, after: str | None, limit: int, order: Literal["asc", "desc"] = "desc"
    ) -> Page:
        table = _TABLES[cls][0]
        if after is not None:
            row = self.db.execute(f"SELECT seq FROM {table} WHERE id = ? AND {where}", [after, *params]).fetchone()
            if row is None:
                raise UnknownCursor(after)
            where += " AND seq > ?" if order == "asc" else " AND seq < ?"
            params = [*params, row["seq"]]
        direction = "ASC" if order == "asc" else "DESC"
        items = self._all(
            cls, f"SELECT * FROM {table} WHERE {where} ORDER BY seq {direction} LIMIT ?", [*params, limit + 1]
        )
        return Page(items=items[:limit], has_more=len(items) > limit)

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
        row = self.db.execute(
            "SELECT 1 FROM jobs WHERE (training_file = ? OR validation_file = ?)"
            " AND status NOT IN ('succeeded', 'failed', 'cancelled') LIMIT 1",
            (file_id, file_id),
        ).fetchone()
        return row is not None

    def get_job(self, job_id: str, org: str | None = None) -> JobRecord | None:
        if org is None:
            return self._one(JobRecord, "SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._one(JobRecord, "SELECT * FROM jobs WHERE id = ? AND org = ?", (job_id, org))

    def list_jobs(
        self,
        org: str,
        *,
        after: str | None = None,
        limit: int = 20,
        metadata: dict[str, str] | None = None,
        without_metadata: bool = False,
    ) -> Page[JobRecord]:
        where, params = "org = ?", [org]
        if without_metadata:
            where += " AND (jobs.metadata IS NULL OR jobs.metadata = '{}')"
        pairs = self.db.json_pairs.format("jobs.metadata")
        for key, value in (metadata or {}).items():
            # Keys and values stay bound parameters: no JSON-path quoting to get wrong.
            where += f" AND EXISTS (SELECT 1 FROM {pairs} WHERE key = ? AND value = ?)"
            params += [key, value]
        return self._page(JobRecord, where, params, after=after, limit=limit)

    def jobs_in(self, statuses: Collection[str]) -> list[JobRecord]:
        statuses = list(statuses)
        return self._all(
            JobRecord, f"SELECT * FROM jobs WHERE status IN ({_marks(len(statuses))}) ORDER BY seq", statuses
        )

    def unsettled_jobs(self) -> list[JobRecord]:
        return self._all(JobRecord, f"SELECT * FROM jobs WHERE {_UNSETTLED} ORDER BY seq")

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
        return self._all(ModelRecord, f"SELECT * FROM models WHERE {where} ORDER BY seq", params)
