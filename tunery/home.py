"""Where tunery keeps its state: converted models, the registry, server files.

`$TUNERY_HOME` wins; the default is `~/.cache/tunery`.
"""

from __future__ import annotations

import os
from pathlib import Path


def tunery_home() -> Path:
    """Return the home directory, creating it on first use."""
    home = Path(os.environ.get("TUNERY_HOME") or Path.home() / ".cache" / "tunery").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def models_dir() -> Path:
    path = tunery_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
