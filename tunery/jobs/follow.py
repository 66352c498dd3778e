"""Turn a trainer's RUN_DIR into OpenAI job events and checkpoints, incrementally.

The trainer appends `metrics.jsonl` (train / valid / full_valid records, see the train
contract). OpenAI reports one metrics event per step carrying train and validation numbers
together, so records are grouped by step, and a step's group is emitted only once a later
step appears or the trainer has exited. The byte offset handed back points at the first
record not yet emitted; the worker stores it with the events in one transaction, so a
restarted worker re-reads exactly what it had not yet turned into events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# The keys of OpenAI's metrics event `data` (and of a checkpoint's `metrics`).
METRIC_KEYS = (
    "step",
    "total_steps",
    "train_loss",
    "valid_loss",
    "full_valid_loss",
    "train_mean_token_accuracy",
    "valid_mean_token_accuracy",
    "full_valid_mean_token_accuracy",
)
# DPO runs report these too; they ride along in the event data.
DPO_KEYS = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy")
RFT_KEYS = (
    "reward_mean",
    "reward_std",
    "pass_rate",
    "zero_variance_fraction",
    "kl",
    "completion_length",
    "grader_errors",
    "valid_mean_reward",
    "valid_pass_rate",
)

_CHECKPOINT_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class StepMetrics:
    """Everything the trainer reported for one step, merged."""

    step: int
    values: dict = field(default_factory=dict)

    @property
    def data(self) -> dict:
        data = {key: self.values.get(key) for key in METRIC_KEYS}
        data["step"] = self.step
        data.update({k: self.values[k] for k in DPO_KEYS + RFT_KEYS if k in self.values})
        return data

    @property
    def message(self) -> str:
        total = self.values.get("total_steps")
        parts = []
        for key, label in (
            ("train_loss", "training loss"),
            ("valid_loss", "validation loss"),
            ("full_valid_loss", "full validation loss"),
            ("reward_mean", "mean reward"),
            ("valid_pass_rate", "held-out pass rate"),
        ):
            if self.values.get(key) is not None:
                parts.append(f"{label}={self.values[key]:.4f}")
        head = f"Step {self.step}/{total}" if total else f"Step {self.step}"
        return f"{head}: {', '.join(parts)}" if parts else head


@dataclass(frozen=True)
class MetricsUpdate:
    steps: list[StepMetrics]  # complete steps, oldest first
    offset: int  # where the next read starts
    latest_train: dict | None  # the newest train record read, emitted or not (for ETA and token counts)


def read_metrics(path: Path, offset: int, *, final: bool, complete_through: int = 0) -> MetricsUpdate:
    """Group the records appended to `path` since `offset` into complete steps.

    Args:
        final: the trainer has exited, so the last step is complete too.
        complete_through: steps up to this one are complete (the trainer logs a step's
            validation before saving its checkpoint, so a checkpoint's step is complete), except
            the run's last step, whose full validation comes after its checkpoint.
    """
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            blob = fh.read()
    except FileNotFoundError:
        return MetricsUpdate([], offset, None)
    steps: list[StepMetrics] = []
    current: StepMetrics | None = None
    current_start = offset
    position = offset
    latest_train = None
    for raw in blob.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a line still being written
        start, position = position, position + len(raw)
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a torn line after a crash; the trainer rewrites nothing, so skip it
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        if record.get("type") == "train":
            latest_train = record
        if current is None or record["step"] != current.step:
            if current is not None:
                steps.append(current)
            current, current_start = StepMetrics(record["step"]), start
        current.values.update({k: v for k, v in record.items() if k != "type"})
    if current is None:
        return MetricsUpdate(steps, position, latest_train)
    # The last step also gets the full validation pass after its checkpoint: it ends with the run.
    last_step = current.step == current.values.get("total_steps")
    if final or (current.step <= complete_through and not last_step):
        return MetricsUpdate([*steps, current], position, latest_train)
    return MetricsUpdate(steps, current_start, latest_train)


def finished_checkpoints(run_dir: Path) -> dict[int, Path]:
    """Step → directory for each checkpoint the trainer has finished writing.

    Checkpoints are renamed into place whole, and `tunery.json` is written inside before that,
    so its presence marks one that is complete.
    """
    found = {}
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return found
    for child in root.iterdir():
        match = _CHECKPOINT_DIR.match(child.name)
        if match and (child / "tunery.json").is_file():
            found[int(match.group(1))] = child
    return found


def checkpoint_metrics(checkpoint: Path, fallback: dict | None = None) -> dict:
    """OpenAI's checkpoint `metrics` from the checkpoint's own manifest."""
    try:
        manifest = json.loads((checkpoint / "tunery.json").read_text())
    except (OSError, json.JSONDecodeError):
        manifest = {}
    metrics = {**(fallback or {}), **(manifest.get("metrics") or {})}
    step = manifest.get("step", metrics.get("step"))
    return {**{k: metrics.get(k) for k in METRIC_KEYS if k != "total_steps"}, "step": step}


def read_status(run_dir: Path) -> dict | None:
    """The trainer's status.json, or None if it never wrote one."""
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
