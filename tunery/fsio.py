"""Files that survive crashes, and their content hashes: the plumbing every stage shares.

* `atomic_write`: a file appears whole or not at all (temporary file, fsync, rename);
* `publish`: the same for a finished directory (a checkpoint, `final/`, an export, a converted model);
* `file_sha256` / `files_sha256`: content hashes, read in chunks so big weights never sit in memory.

It imports nothing from tunery, so every package may use it (it sits below them all).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 22  # 4 MiB reads: fast on weights, small in memory
OLD_PREFIX = ".old-"  # `publish` moves the directory it replaces aside under this name first


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write via a temporary file, fsync, rename: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_dir_tree(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """fsync a finished directory `tmp` and move it to `final`, replacing what was there.

    A directory cannot replace a non-empty one in one rename, so an existing `final` is first
    renamed aside (`.old-NAME-PID`) and deleted only once the new one is in place: a kill in
    between leaves both on disk, never neither (a trainer's start puts the old one back:
    tunery/train/checkpoint.py `sweep`).
    """
    _fsync_dir_tree(tmp)
    aside = final.with_name(f"{OLD_PREFIX}{final.name}-{os.getpid()}")
    if final.exists():
        os.rename(final, aside)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(aside, ignore_errors=True)


def files_sha256(paths: Iterable[Path]) -> str:
    """sha256 of the files' contents, one after another (e.g. a model's weight shards in order)."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):  # noqa: B023 (fh is the loop's own)
                digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of one file's contents."""
    return files_sha256([path])
