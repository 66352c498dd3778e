"""argparse value types the verbs share: one wording for one mistake."""

from __future__ import annotations

import argparse


def whole_number(text: str, *, at_least: int = 0) -> int:
    """A whole number no smaller than `at_least`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < at_least:
        raise argparse.ArgumentTypeError(f"must be at least {at_least}, not {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, at_least=1)
