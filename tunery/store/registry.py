"""The registry: content-addressed datasets, the lineage of every run, its reports, and monitoring.

One SQLite file, `$TUNERY_HOME/registry.sqlite`, shared by every CLI process and by the jobs the
server runs (a job is a `tunery train` process), so a run lands here however it was started. As
in the server's store, the file is in WAL mode (readers never wait for the writer), a writer
waits up to 30 s for the lock, and every write is one `BEGIN IMMEDIATE` transaction: it takes the
write lock before it reads, so two processes never interleave a read-modify-write or lose a row.

Rows come back as frozen dataclasses with their JSON columns already decoded. Lookups by id
accept a unique prefix, as git does (`tunery runs show 3fa9`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunery.errors import TuneryError
from tunery.store.sqlite import connect

SCHEMA_VERSION = 1
FILENAME = "registry.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    registered_at REAL NOT NULL, format TEXT, examples INTEGER NOT NULL, bytes INTEGER NOT NULL,
    ok INTEGER NOT NULL, errors INTEGER NOT NULL, warnings INTEGER NOT NULL,
    issue_counts TEXT NOT NULL, stats TEXT NOT NULL, blob TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_paths (
    dataset_id TEXT NOT NULL, path TEXT NOT NULL, seen_at REAL NOT NULL, PRIMARY KEY (dataset_id, path)
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, path TEXT NOT NULL,
    registered_at REAL NOT NULL, created_at TEXT, status TEXT NOT NULL, method TEXT NOT NULL,
    adapter TEXT NOT NULL, base_model TEXT NOT NULL, base_model_path TEXT, base_model_sha256 TEXT,
    seed INTEGER, config TEXT NOT NULL, versions TEXT NOT NULL, metrics TEXT NOT NULL,
    threads INTEGER, reproduces TEXT
);
CREATE INDEX IF NOT EXISTS runs_path ON runs (path);
CREATE TABLE IF NOT EXISTS run_datasets (
    run_id TEXT NOT NULL, role TEXT NOT NULL, dataset_id TEXT, path TEXT NOT NULL, file_sha256 TEXT,
    PRIMARY KEY (run_id, role)
);
CREATE INDEX IF NOT EXISTS run_datasets_dataset ON run_datasets (dataset_id);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, path TEXT NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
    created_at REAL NOT NULL, summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_run ON reports (run_id, seq);
CREATE TABLE IF NOT EXISTS monitor_suites (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL,
    eval_path TEXT NOT NULL, every_s INTEGER NOT NULL, threshold REAL NOT NULL, graders TEXT,
    webhook TEXT, created_at REAL NOT NULL, next_due REAL NOT NULL, baseline TEXT
);
CREATE TABLE IF NOT EXISTS monitor_results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, suite_id TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL NOT NULL, dataset_id TEXT, metrics TEXT NOT NULL, level TEXT NOT NULL,
    message TEXT NOT NULL, report_path TEXT
);
CREATE INDEX IF NOT EXISTS monitor_results_suite ON monitor_results (suite_id, seq);
CREATE TABLE IF NOT EXISTS monitor_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, suite_id TEXT NOT NULL, at REAL NOT NULL, level TEXT NOT NULL,
    message TEXT NOT NULL, data TEXT
);
"""


@dataclass(frozen=True)
class DatasetRecord:
    id: str  # sha256 of the canonical JSONL (see tunery.lineage.datasets)
    name: str  # the file name it was first registered from
    registered_at: float
    format: str | None
    examples: int
    bytes: int  # of the canonical form
    ok: bool  # no validation errors
    errors: int
    warnings: int
    issue_counts: dict  # validation code -> count
    stats: dict  # tunery.data.validate.Stats as JSON
    blob: str  # the stored canonical copy


@dataclass(frozen=True)
class RunDataset:
    role: str  # "train" | "validation"
    dataset_id: str | None  # None when the file changed after training and cannot be identified
    path: str
    file_sha256: str | None  # the raw file hash the trainer recorded


@dataclass(frozen=True)
class CheckpointRow:
    step: int
    path: str
    metrics: dict


@dataclass(frozen=True)
class RunRecord:
    id: str
    path: str  # the run directory, resolved
    registered_at: float
    created_at: str | None
    status: str
    method: str
    adapter: str
    base_model: str
    base_model_path: str | None
    base_model_sha256: str | None
    seed: int | None
    config: dict  # the resolved RunConfig as JSON
    versions: dict  # tunery and library versions
    metrics: dict  # final metrics
    threads: int | None  # CPU threads the run used (bitwise results depend on it)
    reproduces: str | None = None  # the run this one re-ran, for `tunery reproduce`
    datasets: tuple[RunDataset, ...] = field(default=())
    checkpoints: tuple[CheckpointRow, ...] = field(default=())


@dataclass(frozen=True)
class ReportRecord:
    seq: int
    run_id: str
    kind: str  # "eval" | "compare" | "monitor"
    path: str
    created_at: float
    summary: dict


@dataclass(frozen=True)
class SuiteRecord:
    id: str
    run_id: str
    eval_path: str
    every_s: int
    threshold: float  # the largest tolerated drop below the baseline, in metric units
    graders: list | None
    webhook: str | None
    created_at: float
    next_due: float
    baseline: dict | None  # metric -> value, from the suite's first successful result


@dataclass(frozen=True)
class ResultRecord:
    seq: int
    suite_id: str
    started_at: float
    finished_at: float
    dataset_id: str | None
    metrics: dict
    level: str  # "ok" | "warn" | "error" | "failed"
    message: str
    report_path: str | None


@dataclass(frozen=True)
class MonitorEvent:
    seq: int
    suite_id: str
    at: float
    level: str
    message: str
    data: dict | None


def _dumps(value) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(text: str | None):
    return None if text is None else json.loads(text)


class Registry:
    """The registry database. One instance per process and thread; cheap to open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.path)  # transactions are ours (BEGIN IMMEDIATE)
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise TuneryError(f"{self.path} has registry schema {version}; this tunery reads {SCHEMA_VERSION}")
        if version == 0:
            with self._write() as conn:  # not executescript(): it would COMMIT our transaction early
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database's write lock from its first statement."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _rows(self, sql: str, params=()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    def integrity_check(self) -> str:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    def _resolve_id(self, table: str, ref: str, what: str, hint: str) -> str:
        """A full id from an id or a unique prefix of one."""
        rows = self._rows(f"SELECT id FROM {table} WHERE id >= ? AND id < ? LIMIT 2", (ref, ref + "\uffff"))
        if not rows:
            raise TuneryError(f"no {what} {ref!r} in the registry ({self.path})", hint=hint)
        if len(rows) > 1:
            raise TuneryError(f"{what} id {ref!r} is ambiguous", hint="give more characters of the id")
        return rows[0]["id"]

    # -- datasets -------------------------------------------------------------------------------

    def add_dataset(self, record: DatasetRecord, path: str) -> bool:
        """Insert the dataset unless its id is known; remember `path` either way. True if new."""
        values = asdict(record)
        values["ok"] = int(record.ok)
        values["issue_counts"], values["stats"] = _dumps(record.issue_counts), _dumps(record.stats)
        names = list(values)
        with self._write() as conn:
            inserted = conn.execute(
                f"INSERT OR IGNORE INTO datasets ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [values[n] for n in names],
            ).rowcount
            conn.execute(
                "INSERT OR IGNORE INTO dataset_paths (dataset_id, path, seen_at) VALUES (?, ?, ?)",
                (record.id, path, time.time()),
            )
        return inserted > 0

    def has_dataset(self, dataset_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)))

    def add_dataset_path(self, dataset_id: str, path: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO dataset_paths (dataset_id, path, seen_at) VALUES (?, ?, ?)",
                (dataset_id, path, time.time()),
            )

    def get_dataset(self, ref: str) -> DatasetRecord:
        """By id or unique id prefix. Raises TuneryError when none or several match."""
        dataset_id = self._resolve_id("datasets", ref, "dataset", "list them with `tunery datasets list`")
        return self._dataset(self._rows("SELECT * FROM datasets WHERE id = ?", (dataset_id,))[0])

    def list_datasets(self) -> list[DatasetRecord]:
        return [self._dataset(row) for row in self._rows("SELECT * FROM datasets ORDER BY seq")]

    def dataset_paths(self, dataset_id: str) -> list[str]:
        rows = self._rows("SELECT path FROM dataset_paths WHERE dataset_id = ? ORDER BY seen_at", (dataset_id,))
        return [row["path"] for row in rows]

    def runs_using(self, dataset_id: str) -> list[tuple[str, str]]:
        """(run id, role) of every run trained or validated on this dataset."""
        rows = self._rows("SELECT run_id, role FROM run_datasets WHERE dataset_id = ? ORDER BY run_id", (dataset_id,))
        return [(row["run_id"], row["role"]) for row in rows]

    @staticmethod
    def _dataset(row: sqlite3.Row) -> DatasetRecord:
        values = {k: row[k] for k in row.keys() if k != "seq"}
        values["ok"] = bool(values["ok"])
        values["issue_counts"], values["stats"] = _loads(values["issue_counts"]), _loads(values["stats"])
        return DatasetRecord(**values)

    # -- runs -----------------------------------------------------------------------------------

    def add_run(self, record: RunRecord) -> bool:
        """Insert or refresh a run with its datasets and checkpoints, all in one transaction.

        Returns True when the run id was new. Registering a run again (after an eval, say)
        replaces its row, data links and checkpoint list, and keeps its reports.
        """
        run_columns = {k: v for k, v in asdict(record).items() if k not in ("datasets", "checkpoints")}
        for name in ("config", "versions", "metrics"):
            run_columns[name] = _dumps(run_columns[name])
        names = list(run_columns)
        with self._write() as conn:
            existed = conn.execute("SELECT reproduces FROM runs WHERE id = ?", (record.id,)).fetchone()
            if existed is not None and record.reproduces is None:
                run_columns["reproduces"] = existed["reproduces"]
            conn.execute("DELETE FROM runs WHERE id = ?", (record.id,))
            conn.execute(
                f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [run_columns[n] for n in names],
            )
            conn.execute("DELETE FROM run_datasets WHERE run_id = ?", (record.id,))
            conn.executemany(
                "INSERT INTO run_datasets (run_id, role, dataset_id, path, file_sha256) VALUES (?, ?, ?, ?, ?)",
                [(record.id, d.role, d.dataset_id, d.path, d.file_sha256) for d in record.datasets],
            )
            conn.execute("DELETE FROM checkpoints WHERE run_id = ?", (record.id,))
            conn.executemany(
                "INSERT INTO checkpoints (run_id, step, path, metrics) VALUES (?, ?, ?, ?)",
                [(record.id, c.step, c.path, _dumps(c.metrics)) for c in record.checkpoints],
            )
        return existed is None

    def set_reproduces(self, run_id: str, original_id: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE runs SET reproduces = ? WHERE id = ?", (original_id, run_id))

    def get_run(self, ref: str) -> RunRecord:
        """By id, unique id prefix, or run directory (the newest run registered there).

        Raises:
            TuneryError: nothing matches, or a prefix matches several runs.
        """
        candidate = Path(ref).expanduser()
        if candidate.is_dir():
            rows = self._rows(
                "SELECT * FROM runs WHERE path = ? ORDER BY seq DESC LIMIT 1", (str(candidate.resolve()),)
            )
            if not rows:
                raise TuneryError(
                    f"{ref} is not registered",
                    hint=f"register it with `tunery runs register {ref}` (finished runs register themselves)",
                )
            return self._run(rows[0])
        run_id = self._resolve_id("runs", ref, "run", "list them with `tunery runs list`")
        return self._run(self._rows("SELECT * FROM runs WHERE id = ?", (run_id,))[0])

    def find_run_at(self, path: str | Path) -> RunRecord | None:
        rows = self._rows("SELECT * FROM runs WHERE path = ? ORDER BY seq DESC LIMIT 1", (str(Path(path).resolve()),))
        return self._run(rows[0]) if rows else None

    def list_runs(self) -> list[RunRecord]:
        return [self._run(row) for row in self._rows("SELECT * FROM runs ORDER BY seq")]

    def _run(self, row: sqlite3.Row) -> RunRecord:
        values = {k: row[k] for k in row.keys() if k != "seq"}
        for name in ("config", "versions", "metrics"):
            values[name] = _loads(values[name])
        datasets = tuple(
            RunDataset(role=r["role"], dataset_id=r["dataset_id"], path=r["path"], file_sha256=r["file_sha256"])
            for r in self._rows(
                "SELECT * FROM run_datasets WHERE run_id = ? ORDER BY role = 'train' DESC, role", (row["id"],)
            )
        )
        checkpoints = tuple(
            CheckpointRow(step=r["step"], path=r["path"], metrics=_loads(r["metrics"]))
            for r in self._rows("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", (row["id"],))
        )
        return RunRecord(**values, datasets=datasets, checkpoints=checkpoints)

    # -- reports --------------------------------------------------------------------------------

    def add_report(self, run_id: str, kind: str, path: str, summary: dict) -> int:
        with self._write() as conn:
            return conn.execute(
                "INSERT INTO reports (run_id, kind, path, created_at, summary) VALUES (?, ?, ?, ?, ?)",
                (run_id, kind, path, time.time(), _dumps(summary)),
            ).lastrowid

    def reports(self, run_id: str, kind: str | None = None) -> list[ReportRecord]:
        sql, params = "SELECT * FROM reports WHERE run_id = ?", [run_id]
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        rows = self._rows(sql + " ORDER BY seq", params)
        return [ReportRecord(**{**dict(row), "summary": _loads(row["summary"])}) for row in rows]

    # -- monitoring -----------------------------------------------------------------------------

    def add_suite(self, record: SuiteRecord) -> None:
        values = asdict(record)
        values["graders"], values["baseline"] = _dumps(record.graders), _dumps(record.baseline)
        names = list(values)
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO monitor_suites ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [values[n] for n in names],
            )

    def suites(self, run_id: str | None = None) -> list[SuiteRecord]:
        sql, params = "SELECT * FROM monitor_suites", []
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", [run_id]
        return [self._suite(row) for row in self._rows(sql + " ORDER BY seq", params)]

    def get_suite(self, ref: str) -> SuiteRecord:
        suite_id = self._resolve_id("monitor_suites", ref, "monitor suite", "list them with `tunery monitor list`")
        return self._suite(self._rows("SELECT * FROM monitor_suites WHERE id = ?", (suite_id,))[0])

    def claim_due(self, now: float, *, force: bool = False, suite_ids: list[str] | None = None) -> list[SuiteRecord]:
        """Take the suites due at `now` and move their next due time on, atomically.

        Two `monitor run` processes started together (two cron entries, a cron and the server)
        never run the same suite twice: the second finds nothing due.
        """
        with self._write() as conn:
            rows = conn.execute("SELECT * FROM monitor_suites ORDER BY seq").fetchall()
            chosen = [
                row
                for row in rows
                if (force or row["next_due"] <= now) and (suite_ids is None or row["id"] in suite_ids)
            ]
            for row in chosen:
                conn.execute("UPDATE monitor_suites SET next_due = ? WHERE id = ?", (now + row["every_s"], row["id"]))
        return [self._suite(row) for row in chosen]

    def add_result(
        self,
        suite_id: str,
        *,
        started_at: float,
        dataset_id: str | None,
        metrics: dict,
        level: str,
        message: str,
        report_path: str | None,
        events: list[tuple[str, str, dict | None]] = (),
        baseline: dict | None = None,
    ) -> int:
        """Record one result, its alert events and (for a first result) the baseline, together."""
        now = time.time()
        with self._write() as conn:
            seq = conn.execute(
                "INSERT INTO monitor_results (suite_id, started_at, finished_at, dataset_id, metrics, level, message,"
                " report_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (suite_id, started_at, now, dataset_id, _dumps(metrics), level, message, report_path),
            ).lastrowid
            conn.executemany(
                "INSERT INTO monitor_events (suite_id, at, level, message, data) VALUES (?, ?, ?, ?, ?)",
                [(suite_id, now, lvl, msg, _dumps(data)) for lvl, msg, data in events],
            )
            if baseline is not None:
                conn.execute(
                    "UPDATE monitor_suites SET baseline = ? WHERE id = ? AND baseline IS NULL",
                    (_dumps(baseline), suite_id),
                )
        return seq

    def results(self, suite_id: str) -> list[ResultRecord]:
        rows = self._rows("SELECT * FROM monitor_results WHERE suite_id = ? ORDER BY seq", (suite_id,))
        return [ResultRecord(**{**dict(row), "metrics": _loads(row["metrics"])}) for row in rows]

    def events(self, suite_id: str) -> list[MonitorEvent]:
        rows = self._rows("SELECT * FROM monitor_events WHERE suite_id = ? ORDER BY seq", (suite_id,))
        return [MonitorEvent(**{**dict(row), "data": _loads(row["data"])}) for row in rows]

    @staticmethod
    def _suite(row: sqlite3.Row) -> SuiteRecord:
        values = {k: row[k] for k in row.keys() if k != "seq"}
        values["graders"], values["baseline"] = _loads(values["graders"]), _loads(values["baseline"])
        return SuiteRecord(**values)


def open_registry(home: str | Path | None = None) -> Registry:
    """The registry under `home` (default `$TUNERY_HOME`)."""
    from tunery.home import tunery_home

    return Registry(Path(home or tunery_home()) / FILENAME)
