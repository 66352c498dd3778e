"""Histograms of per-example token counts, for the dataset page."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel


class Bin(BaseModel):
    """Counts of values in [low, high); the last bin also holds `high`."""

    low: int
    high: int
    count: int


def nice_width(span: int, max_bins: int) -> int:
    """The smallest width of the form 1, 2 or 5 × 10^k that covers `span` in at most `max_bins` bins.

    Round widths give bin edges a person can read (0, 50, 100, ...) instead of 0, 47.3, 94.6.
    """
    if span <= 0:
        return 1
    raw = span / max_bins
    magnitude = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude  # unreachable: 10 × magnitude >= raw by the choice of magnitude


def histogram(values: Sequence[int], max_bins: int = 20) -> list[Bin]:
    """Equal-width bins with round edges, from the first multiple of the width at or below min(values).

    At most `max_bins` + 1 bins: starting at a round edge below the minimum can add one.
    Returns [] for no values.
    """
    if not values:
        return []
    low, high = min(values), max(values)
    width = nice_width(high - low, max_bins)
    start = low - low % width
    n_bins = max(1, math.ceil((high - start + 1) / width))
    counts = [0] * n_bins
    for value in values:
        counts[min((value - start) // width, n_bins - 1)] += 1
    return [Bin(low=start + i * width, high=start + (i + 1) * width, count=c) for i, c in enumerate(counts)]
