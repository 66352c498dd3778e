"""Object ids with OpenAI's prefixes: `file-`, `ftjob-`, `ftevent-`, `ftckpt_`."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """A random id such as `ftjob-Qx3...`; 24 base-62 characters make collisions negligible."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))
