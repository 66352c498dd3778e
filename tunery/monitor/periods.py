"""Durations and points in time as users write them: `90s`, `30m`, `12h`, `1d`, `2w`, ISO dates."""

from __future__ import annotations

import re
from datetime import datetime

from tunery.errors import TuneryError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `1d` or `1.5h`.

    >>> parse_duration("1d"), parse_duration("90s"), parse_duration("1.5h"), parse_duration("2w")
    (86400.0, 90.0, 5400.0, 1209600.0)

    Raises:
        TuneryError: anything else, zero included.
    """
    match = _DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise TuneryError(
            f"{text!r} is not a duration", hint="write a positive number and a unit: 90s, 30m, 12h, 1d or 2w"
        )
    return float(match[1]) * UNITS[match[2]]


def parse_since(text: str, now: float) -> float:
    """A Unix time from `7d` (that long before `now`) or an ISO date or date-time (local time).

    >>> parse_since("1h", 10_000.0)
    6400.0

    Raises:
        TuneryError: neither a duration nor an ISO date.
    """
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise TuneryError(
            f"--since {text!r} is neither a duration nor a date",
            hint="e.g. --since 7d, --since 12h or --since 2025-06-01",
        ) from None
