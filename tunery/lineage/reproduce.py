"""Re-run a recorded run from its lineage and check that it comes out the same.

The new run gets the recorded resolved config, the same data (found by dataset id: the original
file if its content still matches, else the registry's stored copy) and the same base model
(its weights hash must match the recorded one; nothing is trained on a different base). Then
the final metrics, every logged loss, and the final weights are compared exactly: training is
seeded and deterministic on CPU with the same thread count, so anything short of bitwise
equality means the environment changed, and the report says what to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunery.errors import TuneryError
from tunery.fsio import file_sha256
from tunery.lineage.datasets import locate
from tunery.lineage.diff import TIMING_METRICS, comparable_metrics
from tunery.lineage.runs import register_run
from tunery.store.registry import Registry, RunRecord

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors")


class NotReproducible(TuneryError):
    """The run cannot be re-run as recorded: its base model or data changed or are gone."""

    exit_code = 1


@dataclass(frozen=True)
class MetricCheck:
    name: str
    original: object
    reproduced: object

    @property
    def same(self) -> bool:
        # Both values went through JSON, whose float repr round-trips exactly: == is bitwise.
        return self.original == self.reproduced


@dataclass
class Reproduction:
    original: RunRecord
    run: RunRecord
    data: dict[str, tuple[str, str]]  # role -> (path used, "original" | "stored copy")
    metrics: list[MetricCheck]
    logged_values: tuple[int, int]  # (values equal, values compared) over metrics.jsonl
    weights_same: bool
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.same for check in self.metrics) and self.logged_values[0] == self.logged_values[1]


def _check_base(original: RunRecord) -> str:
    """The base model reference to train on, after checking its weights hash."""
    from tunery.models import resolve_model, weights_hash

    reference = original.base_model
    try:
        found = weights_hash(resolve_model(reference))
    except TuneryError as exc:
        raise NotReproducible(f"the base model {reference} cannot be loaded: {exc}") from None
    if original.base_model_sha256 and found != original.base_model_sha256:
        raise NotReproducible(
            f"the base model {reference} has changed: weights sha256 {found[:12]}, "
            f"the run was trained on {original.base_model_sha256[:12]}",
            hint="restore the original weights (the run records their full sha256 in final/tunery.json)",
        )
    return reference


def _logged(run_dir: Path) -> list[dict]:
    from tunery.train.rundir import RunDir

    return [{k: v for k, v in record.items() if k not in TIMING_METRICS} for record in RunDir(run_dir).read_metrics()]


def _weights_hash(run_dir: Path) -> str | None:
    for name in WEIGHT_FILES:
        path = run_dir / "final" / name
        if path.is_file():
            return file_sha256(path)
    return None


def default_output(original: RunRecord) -> Path:
    return Path(original.path).with_name(Path(original.path).name + "-reproduced")


def reproduce(registry: Registry, original: RunRecord, output: Path, home: Path) -> Reproduction:
    """Train `original` again into `output` and compare the outcomes.

    Raises:
        NotReproducible: the base model or a dataset no longer matches the lineage.
        TuneryError: `output` already holds a run; training failed.
    """
    from tunery.hardware import physical_cores
    from tunery.train.config import RunConfig
    from tunery.train.methods import METHODS
    from tunery.train.prepare import TrainingFailed, fail_run

    notes = []
    model = _check_base(original)
    data = {}
    for link in original.datasets:
        if link.dataset_id is None:
            raise NotReproducible(f"the {link.role} data of run {original.id} changed before it was registered")
        path, how = locate(registry, link.dataset_id, link.path)
        data[link.role] = (str(path), how)
    if original.config.get("device") not in (None, "cpu"):
        notes.append(f"the run trained on {original.config.get('device')}; bitwise equality is expected on CPU only")
    if original.threads and original.threads != physical_cores():
        notes.append(
            f"the run used {original.threads} CPU threads, this machine {physical_cores()}: "
            "reductions may be ordered differently, so the last bits can differ"
        )
    values = {**original.config, "model": model, "output": str(output), "data": data["train"][0]}
    if "validation" in data:
        values["validation"] = data["validation"][0]
    config = RunConfig.model_validate(values)
    try:
        METHODS[config.method].load_loop()(config)
    except TrainingFailed as exc:
        if output.exists():
            fail_run(output, exc)
        raise
    run = registry.find_run_at(output) or register_run(registry, output, home).run
    registry.set_reproduces(run.id, original.id)
    run = registry.get_run(run.id)
    changed = [
        f"{name} {original.versions.get(name)} → {run.versions.get(name)}"
        for name in dict.fromkeys([*original.versions, *run.versions])
        if name in original.versions and original.versions.get(name) != run.versions.get(name)
    ]
    if changed:
        notes.append("the software changed since the run: " + ", ".join(changed))

    left, right = comparable_metrics(original.metrics), comparable_metrics(run.metrics)
    checks = [MetricCheck(name, left.get(name), right.get(name)) for name in dict.fromkeys([*left, *right])]
    before, after = _logged(Path(original.path)), _logged(output)
    compared = sum(len(record) for record in before)
    equal = 0
    if len(before) == len(after):
        equal = sum(sum(a.get(k) == v for k, v in b.items()) for a, b in zip(before, after, strict=True))
    if not before:
        notes.append(f"{original.path}/metrics.jsonl is gone: only the final metrics were compared")
    return Reproduction(
        original=original,
        run=run,
        data=data,
        metrics=checks,
        logged_values=(equal, compared),
        weights_same=_weights_hash(Path(original.path)) == _weights_hash(output),
        notes=notes,
    )


def first_difference(original: Path, reproduced: Path) -> str | None:
    """Where two runs' metric logs first part, for the report; None when they agree."""
    before, after = _logged(original), _logged(reproduced)
    for a, b in zip(before, after, strict=False):  # the lengths are compared below
        for key in a:
            if a.get(key) != b.get(key):
                return f"step {a.get('step')} {a.get('type')} {key}: {a.get(key)!r} vs {b.get(key)!r}"
    if len(before) != len(after):
        return f"{len(before)} logged records vs {len(after)}"
    return None


def describe(result: Reproduction) -> str:
    """One line for the verdict."""
    differing = [c.name for c in result.metrics if not c.same]
    if result.ok:
        return (
            f"reproduced: {len(result.metrics)} final metrics and {result.logged_values[1]} logged values are "
            f"bitwise identical; final weights {'identical' if result.weights_same else 'differ'}"
        )
    where = first_difference(Path(result.original.path), Path(result.run.path))
    return f"NOT reproduced: {len(differing)} final metrics differ ({', '.join(differing[:5])})" + (
        f"; first difference at {where}" if where else ""
    )
