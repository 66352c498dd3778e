"""The one exception type the CLI turns into a clean message and exit code (never a traceback)."""

from __future__ import annotations


class TuneryError(Exception):
    """A problem the user can fix. `exit_code` follows the CLI's convention: 2 = usage or I/O."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  fix: {self.hint}" if self.hint else text
