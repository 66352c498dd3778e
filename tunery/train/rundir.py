"""The run directory: status, metrics and result files that outlive the process.

The job system, the dashboard and `--resume` read these files, so every write is atomic
(status) or append-only with fsync (metrics): a crash never leaves a half-written line behind
that a reader would trip on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

from tunery.fsio import atomic_write

RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
REWARD_COLUMNS = [
    "reward_mean",
    "reward_std",
    "pass_rate",
    "zero_variance_fraction",
    "valid_mean_reward",
    "valid_pass_rate",
]


class RunDir:
    """Paths and writers for one run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.final = self.path / "final"
        self.metrics_file = self.path / "metrics.jsonl"
        self.status_file = self.path / "status.json"
        self.config_file = self.path / "config.yaml"
        self.results_file = self.path / "results.csv"

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_status(
        self,
        state: str,
        step: int,
        total_steps: int,
        error: dict | None = None,
        phase: dict | None = None,
        early_stopping: dict | None = None,
    ) -> None:
        """`phase`, when set, is a long step after or between training steps, e.g. the final
        evaluation: {"name": "evaluating", "done": 40, "total": 100, "eta_s": 12.0}.
        `early_stopping`, when set: why the run ended before `total_steps` (`EarlyStopping.summary`)."""
        status = {"state": state, "step": step, "total_steps": total_steps, "error": error, "updated_at": time.time()}
        if phase is not None:
            status["phase"] = phase
        if early_stopping is not None:
            status["early_stopping"] = early_stopping
        atomic_write(self.status_file, json.dumps(status, indent=2))

    def write_phase(self, phase: dict | None) -> None:
        """Record (or clear) the current phase in status.json, keeping the rest of it."""
        status = self.read_status() or {"state": "running", "step": 0, "total_steps": 0}
        self.write_status(
            status["state"],
            status["step"],
            status["total_steps"],
            status.get("error"),
            phase,
            status.get("early_stopping"),
        )

    def read_status(self) -> dict | None:
        return json.loads(self.status_file.read_text()) if self.status_file.is_file() else None

    def log(self, record: dict) -> None:
        with self.metrics_file.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict]:
        if not self.metrics_file.is_file():
            return []
        records = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the one line a SIGKILL can cut short
                continue
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop records past the checkpoint so the log has no duplicate steps."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        atomic_write(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))

    def write_results_csv(self) -> None:
        """OpenAI's result file: one row per training step, validation columns where measured."""
        rows: dict[int, dict] = {}
        seen: set[str] = set()
        for r in self.read_metrics():
            row = rows.setdefault(r["step"], {"step": r["step"]})
            if r["type"] == "train":
                row["train_loss"] = r["train_loss"]
                row["train_accuracy"] = r.get("train_mean_token_accuracy")
            elif r["type"] == "valid":
                row["valid_loss"] = r.get("valid_loss")
                row["valid_mean_token_accuracy"] = r.get("valid_mean_token_accuracy")
            for key in REWARD_COLUMNS:  # reinforcement fine-tuning's reward curves
                if key in r:
                    row[key] = r[key]
                    seen.add(key)
        columns = RESULT_COLUMNS + [c for c in REWARD_COLUMNS if c in seen]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for step in sorted(rows):
            writer.writerow(rows[step])
        atomic_write(self.results_file, out.getvalue())
