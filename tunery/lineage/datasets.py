"""Content-addressed datasets: a dataset's id is the sha256 of its canonical JSONL.

Canonical form: every non-empty line parsed and re-serialised with sorted keys and compact
separators (`json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`), the
lines joined by "\\n" with no trailing newline, encoded as UTF-8. Two files that differ only in
key order, spacing or blank lines are the same dataset; a changed example is a new one.

Registering a file stores that canonical form at `$TUNERY_HOME/datasets/<id>.jsonl`, so a run
can be reproduced even after its data file was edited or deleted (`sha256sum` of the stored copy
is the id). Registering the same content again changes nothing but the list of paths seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tunery.data.formats import iter_jsonl
from tunery.errors import TuneryError
from tunery.store.registry import DatasetRecord, Registry


def canonical_line(obj) -> str:
    """One example in canonical form.

    >>> canonical_line({"b": 1, "a": [1, 2]})
    '{"a":[1,2],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Canonical:
    id: str
    lines: int
    bytes: int


def _canonicalise(path: Path, sink=None) -> Canonical:
    """Hash the canonical form of `path` in one streaming pass, writing it to `sink` if given.

    Raises:
        TuneryError: the file is missing or a line is not JSON (naming the line).
    """
    if not path.is_file():
        raise TuneryError(f"{path} does not exist or is not a file")
    digest = hashlib.sha256()
    lines = size = 0
    for _, obj in iter_jsonl(path):
        data = (("\n" if lines else "") + canonical_line(obj)).encode("utf-8")
        digest.update(data)
        if sink is not None:
            sink.write(data)
        lines += 1
        size += len(data)
    return Canonical(id=digest.hexdigest(), lines=lines, bytes=size)


def dataset_id(path: str | Path) -> str:
    """The id `path` would be registered under."""
    return _canonicalise(Path(path)).id


def blob_path(home: Path, dataset: str) -> Path:
    return home / "datasets" / f"{dataset}.jsonl"


def _store_canonical(path: Path, home: Path) -> Canonical:
    """Write the canonical copy into the dataset store (atomically) and return its identity."""
    folder = home / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".incoming-{os.getpid()}-{path.name}"
    try:
        with tmp.open("wb") as fh:
            canonical = _canonicalise(path, fh)
            fh.flush()
            os.fsync(fh.fileno())
        target = blob_path(home, canonical.id)
        if target.is_file():
            tmp.unlink()
        else:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return canonical


def register_dataset(registry: Registry, path: str | Path, home: Path) -> tuple[DatasetRecord, bool]:
    """Register a JSONL file; returns (its record, whether it was new).

    A known dataset is not validated again: its content, hence its report, cannot have changed.

    Raises:
        TuneryError: unreadable file or a line that is not JSON.
    """
    from tunery.data.validate import validate_file
    from tunery.train.plan import auto_epochs

    path = Path(path).expanduser().resolve()
    canonical = _store_canonical(path, home)
    if registry.has_dataset(canonical.id):
        registry.add_dataset_path(canonical.id, str(path))
        return registry.get_dataset(canonical.id), False
    report = validate_file(path, epochs=auto_epochs)
    stats = report.stats.model_dump(mode="json")
    record = DatasetRecord(
        id=canonical.id,
        name=path.name,
        registered_at=time.time(),
        format=stats["format"],
        examples=stats["examples"],
        bytes=canonical.bytes,
        ok=report.ok,
        errors=report.error_count,
        warnings=report.warning_count,
        issue_counts=dict(report.issue_counts),
        stats=stats,
        blob=str(blob_path(home, canonical.id)),
    )
    created = registry.add_dataset(record, str(path))
    return (record if created else registry.get_dataset(record.id)), created


def locate(registry: Registry, dataset: str, preferred: str | Path | None) -> tuple[Path, str]:
    """A file holding exactly this dataset: `preferred` if its content still matches, else the
    stored copy. Returns (path, "original" | "stored copy").

    Raises:
        TuneryError: neither holds the dataset any more.
    """
    if preferred is not None and Path(preferred).is_file() and dataset_id(preferred) == dataset:
        return Path(preferred), "original"
    record = registry.get_dataset(dataset)
    blob = Path(record.blob)
    if blob.is_file() and dataset_id(blob) == dataset:
        return blob, "stored copy"
    raise TuneryError(
        f"dataset {dataset[:12]} is gone: {preferred or 'its file'} changed and the stored copy {blob} is missing",
        hint="restore the original data file; its canonical sha256 must be " + dataset,
    )
