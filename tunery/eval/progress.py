"""Progress of eval and compare: answers generated of N, with an ETA, per system.

A terminal gets one line per system rewritten in place; a pipe or log gets a line at each
quarter, so job logs stay short. `on_update` hears every change (the final evaluation of a
training run keeps status.json current with it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

BAR = 20


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA –"
    seconds = int(round(seconds))
    return f"ETA {seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"ETA {seconds}s"


class AnswerProgress:
    def __init__(self, prefix: str = "[eval]", on_update: Callable[[str, int, int, float | None], None] | None = None):
        self.prefix = prefix
        self.on_update = on_update
        self.tty = sys.stderr.isatty()
        self._started: dict[str, float] = {}
        self._shown: dict[str, int] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        started = self._started.setdefault(what, now)
        eta = (now - started) / done * (total - done) if done else None
        if self.on_update is not None:
            self.on_update(what, done, total, eta)
        filled = BAR * done // max(total, 1)
        line = f"{self.prefix} {what}: {'█' * filled}{'░' * (BAR - filled)} {done}/{total} answers · {format_eta(eta)}"
        if self.tty:
            print(f"\r{line}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
        elif done * 4 // max(total, 1) > self._shown.get(what, -1) or done >= total:
            self._shown[what] = done * 4 // max(total, 1)
            print(line, file=sys.stderr, flush=True)

    def start(self, what: str, total: int) -> None:
        """Say that `what` has begun (0 of `total`), before its first batch is done."""
        self(what, 0, total)
