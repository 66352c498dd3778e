"""What a run prints: the resolved settings at the start, then progress as it trains.

A terminal gets a live progress bar with loss and ETA; a pipe or log file gets plain lines
every few steps, so job logs stay readable.
"""

from __future__ import annotations

import sys
import time

from tunery.train.config import flatten
from tunery.train.plan import Plan


def print_plan(plan: Plan, facts: dict) -> None:
    """Every resolved value, "auto" ones marked with the reason they got their value."""
    from rich.console import Console
    from rich.table import Table

    # Settings that do not apply to this run: LoRA's under full fine-tuning, other methods' blocks.
    hidden = plan.config.other_sections()
    if plan.config.adapter != "lora":
        hidden.add("lora")
    table = Table("setting", "value", "why", title="resolved run config", title_justify="left")
    for key, value in flatten(plan.config.model_dump(mode="json")).items():
        if key.split(".")[0] in hidden:
            continue
        table.add_row(key, str(value), plan.reasons.get(key, ""))
    for key, value in facts.items():
        table.add_row(key, str(value), "derived")
    Console(stderr=True, width=120).print(table)


class Progress:
    """Live bar on a TTY, plain periodic lines elsewhere."""

    STATUS_EVERY_S = 1.0  # status.json is rewritten at most this often (an fsync each time)

    def __init__(self, total_steps: int, start_step: int, run=None):
        """`run` (a RunDir): keep its status.json at the current step, for anyone watching the run."""
        self.total = total_steps
        self.run = run
        self._status_at = 0.0
        self.tty = sys.stderr.isatty()
        self.every = max(1, total_steps // 20)
        self.started = time.monotonic()
        self._bar = None
        if self.tty:
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.fields[text]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("train", total=total_steps, completed=start_step, text="")
            self._bar.start()

    def update(self, step: int, text: str) -> None:
        if self.run is not None and (time.monotonic() - self._status_at >= self.STATUS_EVERY_S or step == self.total):
            self.run.write_status("running", step, self.total)
            self._status_at = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, completed=step, text=text)
        elif step % self.every == 0 or step == self.total:
            print(f"step {step}/{self.total}: {text}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
