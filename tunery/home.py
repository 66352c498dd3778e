"""Where tunery keeps its state: converted models, the registry, server files.

`$TUNERY_HOME` wins; the default is `~/.cache/tunery`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunery.errors import TuneryError


def tunery_home() -> Path:
    """Return the home directory, creating it on first use.

    Raises:
        TuneryError: it cannot be created (a file of that name, no permission, read-only disk).
    """
    home = Path(os.environ.get("TUNERY_HOME") or Path.home() / ".cache" / "tunery").expanduser()
    _make_dir(home)
    return home


def models_dir() -> Path:
    path = tunery_home() / "models"
    _make_dir(path)
    return path


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "it is a file, not a directory" if path.is_file() else (exc.strerror or str(exc))
        raise TuneryError(
            f"cannot use {path} as tunery's home: {reason}",
            hint="set TUNERY_HOME to a writable directory (default ~/.cache/tunery)",
        ) from None
