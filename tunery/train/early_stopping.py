"""Early stopping: end a run once its validation loss stops falling, and keep its best step.

After each validation pass the loop calls `watch.observe(step, loss)`. A loss lower than the best
so far by more than `min_delta` is a new best: the loop saves a checkpoint at that step (so that
final/ can be it) and keeps it from being pruned. After `patience` passes in a row without a new
best, `watch.should_stop` and the loop ends; final/ gets the best checkpoint's weights. A run
that reaches its last step first ends as it would without early stopping.

The state is a function of the run's validation records alone, so a resumed run rebuilds it
from metrics.jsonl (cut back to the checkpoint it resumes from) and stops where the
uninterrupted run would have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from tunery.train.plan import Plan


@dataclass
class EarlyStopping:
    patience: int  # validation passes without a new best before the run stops
    min_delta: float = 0.0
    best_loss: float = math.inf
    best_step: int | None = None
    passes_without_improvement: int = 0

    @classmethod
    def for_plan(cls, plan: Plan, records: Iterable[dict] = (), *, upto: int = 0) -> EarlyStopping | None:
        """The run's watch (None when early stopping is off), replaying the validation passes of
        `records` (metrics.jsonl) up to step `upto`, the step a resumed run starts from."""
        patience = plan.config.early_stopping
        if not isinstance(patience, int):  # "off" (the plan resolved "auto")
            return None
        watch = cls(patience=patience, min_delta=plan.config.early_stopping_min_delta)
        for record in records:
            if record.get("type") == "valid" and record.get("valid_loss") is not None and record["step"] <= upto:
                watch.observe(record["step"], record["valid_loss"])
        return watch

    def observe(self, step: int, loss: float) -> bool:
        """Count one validation pass; True when `loss` is a new best. A NaN loss (nothing to
        measure) is no pass: the loop logs no record for it, so a replay would not see it either."""
        if math.isnan(loss):
            return False
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step, self.passes_without_improvement = loss, step, 0
            return True
        self.passes_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.best_step is not None and self.passes_without_improvement >= self.patience

    def summary(self, step: int, total_steps: int) -> dict:
        """What final/tunery.json, status.json and metrics.jsonl record when the run stopped at `step`."""
        return {
            "stopped_at_step": step,
            "planned_steps": total_steps,
            "best_step": self.best_step,
            "best_valid_loss": self.best_loss,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "message": (
                f"Early stopping at step {step} of {total_steps}: validation loss did not improve for "
                f"{self.passes_without_improvement} passes; final model is step {self.best_step} "
                f"(validation loss {self.best_loss:.4f})"
            ),
        }
