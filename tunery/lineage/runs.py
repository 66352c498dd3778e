"""A finished run directory read into its lineage record, and the ways a user names a run.

The record comes from the files the trainer leaves (see the train contract): `final/tunery.json`
(base model and its weights hash, data file hashes, resolved config, final metrics, versions),
`status.json`, and each `checkpoints/step-N/tunery.json`. The data files are registered as
content-addressed datasets on the way; a file that changed since training is recorded with no
dataset id (and a note), since its trained content can no longer be identified.

Two facts are not in those files and can only be taken in the training process itself, which is
where the end-of-training hook registers a run: the CPU threads it used (bitwise results depend
on them) and a digest of tunery's training code (two checkouts of one version can train differently).
A later registration of the same run keeps them; a run first registered by hand has neither.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tunery.errors import TuneryError
from tunery.fsio import file_sha256
from tunery.store.registry import CheckpointRow, Registry, RunDataset, RunRecord

MANIFEST = "tunery.json"
# `ft:{base}:{org}:{suffix}:{job id without ftjob-}[:ckpt-step-N]` (tunery.jobs.naming)
FINE_TUNED_NAME = re.compile(r"^ft:.*:(?P<short>[A-Za-z0-9]+)(:ckpt-step-\d+)?$")


@dataclass
class Registered:
    run: RunRecord
    created: bool
    notes: list[str] = field(default_factory=list)
    card: Path | None = None


def run_dir_of(path: str | Path) -> Path:
    """The run directory for a run directory, its `final/`, or one of its checkpoints."""
    path = Path(path).expanduser().resolve()
    if path.name == "final" or path.parent.name == "checkpoints":
        return path.parent if path.name == "final" else path.parent.parent
    return path


# What a run's numbers depend on: the rest of tunery (serving, eval, monitoring) cannot change them.
TRAINING_CODE = ("__init__.py", "models.py", "data", "train")


def training_code_digest() -> str:
    """12 hex digits of sha256 over the path and content of every .py file in TRAINING_CODE."""
    root = Path(__file__).resolve().parents[1]
    files = [
        p
        for name in TRAINING_CODE
        for p in ([root / name] if name.endswith(".py") else root.joinpath(name).rglob("*.py"))
    ]
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def run_id_of(run_dir: Path) -> str:
    """12 hex digits of the final manifest's sha256: stable for a run, new for a re-trained one."""
    return file_sha256(run_dir / "final" / MANIFEST)[:12]


def _checkpoints(run_dir: Path) -> tuple[CheckpointRow, ...]:
    rows = []
    for manifest in sorted((run_dir / "checkpoints").glob(f"step-*/{MANIFEST}")):
        data = json.loads(manifest.read_text())
        rows.append(CheckpointRow(step=int(data["step"]), path=str(manifest.parent), metrics=data.get("metrics", {})))
    return tuple(rows)


def _datasets(registry: Registry, manifest: dict, home: Path, notes: list[str]) -> tuple[RunDataset, ...]:
    from tunery.lineage.datasets import register_dataset

    found = []
    for role, key in (("train", "data"), ("validation", "validation")):
        recorded = (manifest.get("data") or {}).get(role)
        raw = (manifest.get("config") or {}).get(key)
        if not raw:
            continue
        path = Path(raw).expanduser()
        dataset = None
        if not path.is_file():
            notes.append(f"{role} data {path} is gone; its content cannot be registered")
        elif recorded and file_sha256(path) != recorded:
            notes.append(f"{role} data {path} changed after training; the trained content is unknown")
        else:
            dataset = register_dataset(registry, path, home)[0].id
        found.append(RunDataset(role=role, dataset_id=dataset, path=str(path.resolve()), file_sha256=recorded))
    return tuple(found)


def read_run(
    registry: Registry, run_dir: str | Path, home: Path, *, in_training_process: bool = False
) -> tuple[RunRecord, list[str]]:
    """The lineage record of a finished run directory (registering its datasets on the way).

    `in_training_process` adds the threads and the training-code digest (see the module docstring).

    Raises:
        TuneryError: the directory holds no finished run (no final/tunery.json).
    """
    run_dir = run_dir_of(run_dir)
    manifest_path = run_dir / "final" / MANIFEST
    if not manifest_path.is_file():
        raise TuneryError(
            f"{run_dir} holds no finished run (no final/{MANIFEST})",
            hint="runs are registered when training finishes; resume an unfinished one with `tunery train --resume`",
        )
    manifest = json.loads(manifest_path.read_text())
    config = manifest.get("config") or {}
    status_file = run_dir / "status.json"
    status = json.loads(status_file.read_text()).get("state", "unknown") if status_file.is_file() else "unknown"
    notes: list[str] = []
    versions = {"tunery": manifest.get("tunery_version"), **(manifest.get("libraries") or {})}
    threads = None
    if in_training_process:
        from tunery.hardware import physical_cores

        versions["tunery_training_code"], threads = training_code_digest(), physical_cores()
    record = RunRecord(
        id=run_id_of(run_dir),
        path=str(run_dir),
        registered_at=time.time(),
        created_at=manifest.get("created_at"),
        status=status,
        method=manifest.get("method", config.get("method", "sft")),
        adapter=manifest.get("adapter", config.get("adapter", "lora")),
        base_model=str(manifest.get("base_model", config.get("model", "?"))),
        base_model_path=manifest.get("base_model_path"),
        base_model_sha256=manifest.get("base_model_sha256"),
        seed=config.get("seed"),
        config=config,
        versions=versions,
        metrics=manifest.get("metrics") or {},
        threads=threads,
        datasets=_datasets(registry, manifest, home, notes),
        checkpoints=_checkpoints(run_dir),
    )
    return record, notes


def register_run(
    registry: Registry, run_dir: str | Path, home: Path, *, in_training_process: bool = False, card: bool = True
) -> Registered:
    """Read, record and (by default) write the model card of one finished run."""
    record, notes = read_run(registry, run_dir, home, in_training_process=in_training_process)
    known = registry.find_run_at(record.path)
    if not in_training_process and known is not None and known.id == record.id:
        code = {k: v for k, v in known.versions.items() if k == "tunery_training_code"}
        record = replace(record, threads=known.threads, versions={**record.versions, **code})
    created = registry.add_run(record)
    registered = Registered(run=registry.get_run(record.id), created=created, notes=notes)
    if card:
        from tunery.lineage.cards import write_card

        registered.card = write_card(registry, registered.run)
    return registered


def find_run(registry: Registry, ref: str, home: Path) -> RunRecord:
    """A run named by id (or unique prefix), run directory, or fine-tuned model name.

    A finished run directory that is not registered yet is registered on the way, so that every
    command works on runs trained before the registry existed.

    Raises:
        TuneryError: nothing matches.
    """
    match = FINE_TUNED_NAME.match(ref)
    if match:
        suffix = f"/jobs/ftjob-{match['short']}/run"
        runs = [run for run in registry.list_runs() if run.path.endswith(suffix)]
        if not runs:
            raise TuneryError(f"no registered run produced the model {ref}", hint="list runs with `tunery runs list`")
        return runs[-1]
    path = Path(ref).expanduser()
    if path.is_dir():
        run_dir = run_dir_of(path)
        known = registry.find_run_at(run_dir)
        if known is not None and (run_dir / "final" / MANIFEST).is_file() and known.id == run_id_of(run_dir):
            return known
        return register_run(registry, run_dir, home).run
    return registry.get_run(ref)
