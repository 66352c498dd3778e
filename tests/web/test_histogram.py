"""Token-length histograms: round bin widths and counts, checked against values worked by hand."""

from __future__ import annotations

import pytest

from tunery.web.histogram import histogram, nice_width


@pytest.mark.parametrize(
    ("span", "max_bins", "width"),
    [
        (0, 20, 1),  # one value: one bin of width 1
        (19, 20, 1),  # 19/20 = 0.95 → 1
        (95, 20, 5),  # 4.75 → 5
        (101, 20, 10),  # 5.05 → 10 (5 is too small)
        (300, 20, 20),  # 15 → 20
        (4000, 20, 200),  # 200 → 200
        (4001, 20, 500),  # 200.05 → 500
    ],
)
def test_nice_width_is_the_smallest_round_width_that_fits(span, max_bins, width):
    assert nice_width(span, max_bins) == width


def test_bins_start_on_a_round_edge_and_count_every_value():
    # 12..57: span 45, 45/5 = 9 → width 10; start at 10; bins 10,20,30,40,50.
    values = [12, 19, 20, 33, 35, 38, 57]
    bins = histogram(values, max_bins=5)
    assert [(b.low, b.high, b.count) for b in bins] == [(10, 20, 2), (20, 30, 1), (30, 40, 3), (40, 50, 0), (50, 60, 1)]
    assert sum(b.count for b in bins) == len(values)


def test_the_maximum_lands_in_the_last_bin():
    # 0..10 with width 5: edges 0,5,10 — 10 opens a third bin rather than falling off the end.
    bins = histogram([0, 4, 5, 10], max_bins=2)
    assert [(b.low, b.high, b.count) for b in bins] == [(0, 5, 2), (5, 10, 1), (10, 15, 1)]


def test_one_distinct_value_and_no_values():
    assert [(b.low, b.high, b.count) for b in histogram([7, 7, 7])] == [(7, 8, 3)]
    assert histogram([]) == []
