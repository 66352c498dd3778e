"""The server's persistent state: files, fine-tuning jobs, their events and checkpoints, and models.

`open_store(path)` returns the SQLite implementation of the `Store` protocol in `store.base`;
everything else in tunery talks to the protocol only, so another backend can be added later.
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


def open_store(path: str | Path) -> Store:
    """Open (creating if needed) the SQLite store at `path`."""
    from tunery.store.sqlite import SQLiteStore

    return SQLiteStore(Path(path))


__all__ = [
    "CheckpointRecord",
    "EventRecord",
    "FileRecord",
    "JobRecord",
    "ModelRecord",
    "Page",
    "Store",
    "Transaction",
    "open_store",
]
