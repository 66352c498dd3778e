"""The PostgreSQL database under the store, for many workers on many hosts sharing one queue.

Selected with `TUNERY_DATABASE_URL=postgresql://user:password@host:5432/dbname`; needs the
`postgres` extra (psycopg 3). Each thread keeps its own connection in autocommit mode, so a read
is one statement and a write is an explicit transaction (READ COMMITTED). Queued jobs are
claimed with `SELECT ... FOR UPDATE SKIP LOCKED`: two workers claiming at once lock different
rows instead of waiting for, then losing, the same one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tunery.errors import TuneryError
from tunery.store.sql import MIGRATIONS, SCHEMA_VERSION, SQLStore, schema_statements

# Serialises schema creation when several workers start against an empty database at once.
_SCHEMA_LOCK_KEY = 0x74756E657279  # "tunery"


class PostgresDatabase:
    seq_column = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    json_pairs = "jsonb_each_text({}::jsonb)"
    row_lock = " FOR UPDATE SKIP LOCKED"
    clock = "extract(epoch FROM clock_timestamp())::double precision"

    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise TuneryError(
                "TUNERY_DATABASE_URL names a PostgreSQL database, but psycopg is not installed",
                hint="pip install 'tunery[postgres]'",
            ) from None
        self._psycopg = psycopg
        self.url = url
        self._local = threading.local()
        with self.write():
            self.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))
            self.execute("CREATE TABLE IF NOT EXISTS tunery_schema (version INTEGER NOT NULL)")
            row = self.execute("SELECT version FROM tunery_schema").fetchone()
            # The first PostgreSQL schema is version 2; later versions migrate as SQLite's do.
            if row is not None and not 2 <= row["version"] <= SCHEMA_VERSION:
                raise TuneryError(f"the database has tunery schema version {row['version']}; expected {SCHEMA_VERSION}")
            for statement in schema_statements(self):
                self.execute(statement)
            if row is None:
                self.execute("INSERT INTO tunery_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                for step in range(row["version"] + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step]:
                        self.execute(statement)
                self.execute("UPDATE tunery_schema SET version = ?", (SCHEMA_VERSION,))

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:  # closed also after the server dropped it: reconnect
            from psycopg.rows import dict_row

            try:
                # A dead network must fail a query within seconds, not hang it: a worker that cannot
                # renew its leases has to notice, and stop its trainers, before they run out.
                conn = self._psycopg.connect(
                    self.url,
                    autocommit=True,
                    row_factory=dict_row,
                    connect_timeout=10,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                    tcp_user_timeout=20_000,
                )
            except self._psycopg.OperationalError as exc:
                raise TuneryError(f"cannot connect to the database in TUNERY_DATABASE_URL: {exc}".strip()) from None
            self._local.conn = conn
        return conn

    def execute(self, sql: str, params: Sequence = ()):
        return self._conn().execute(sql.replace("?", "%s"), params)

    @contextmanager
    def write(self) -> Iterator[None]:
        conn = self._conn()
        if conn.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
            raise RuntimeError("nested store transactions are not supported")
        with conn.transaction():
            yield

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def open_postgres(url: str) -> SQLStore:
    return SQLStore(PostgresDatabase(url))
