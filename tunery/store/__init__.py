"""The server's persistent state: files, fine-tuning jobs, their events and checkpoints, and models.

`open_store(location)` returns the `Store` protocol of `store.base` on SQLite (a file path, the
embedded default) or PostgreSQL (a `postgresql://` URL, for many workers on many hosts). Both
run the same SQL (`store.sql`); everything else in tunery talks to the protocol only.
"""

from __future__ import annotations

from pathlib import Path

from tunery.store.base import Store, Transaction
from tunery.store.records import (
    CheckpointRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    ModelRecord,
    Page,
)

# Where every process (API, workers, the supervisor's child) finds a shared database.
DATABASE_URL_ENV = "TUNERY_DATABASE_URL"


def is_database_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(location: str | Path) -> Store:
    """Open (creating the tables if needed) the store at a SQLite file path or a PostgreSQL URL."""
    if is_database_url(location):
        from tunery.store.postgres import open_postgres

        return open_postgres(str(location))
    from tunery.store.sqlite import open_sqlite

    return open_sqlite(Path(location))


__all__ = [
    "DATABASE_URL_ENV",
    "CheckpointRecord",
    "EventRecord",
    "FileRecord",
    "JobRecord",
    "ModelRecord",
    "Page",
    "Store",
    "Transaction",
    "is_database_url",
    "open_store",
]
