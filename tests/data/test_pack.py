"""Packing (tunery/data/pack.py), worked by hand: bins, rows, position and segment ids, padding.

The loss invariant (packed loss == unpacked loss on a real tiny model) is in
tests/train/test_invariants.py; these tests pin the bookkeeping it relies on.
"""

from __future__ import annotations

import pytest

from tunery.data.pack import (
    MIN_SHARED_PREFIX,
    SHARED_PREFIX,
    Row,
    best_fit_decreasing,
    micro_batches,
    pack_after_prefix,
    pack_rows,
    padded,
    padding_fraction,
    shared_prefix_length,
    split_shared_prefix,
)
from tunery.data.render import Rendered


def example(i: int, length: int, trained_from: int | None = None) -> Rendered:
    """Token ids 100·i + 0, 1, …, so every token says which example and position it came from."""
    trained_from = length // 2 if trained_from is None else trained_from
    return Rendered(
        input_ids=[100 * i + t for t in range(length)],
        loss_mask=[0] * trained_from + [1] * (length - trained_from),
    )


def test_best_fit_decreasing_by_hand():
    # Longest first into the fullest bin it fits (ties: the older bin), capacity 8:
    #   7 (ex 2) → new bin A, 1 free     5 (ex 0) → new bin B, 3 free    4 (ex 4) → new bin C, 4 free
    #   3 (ex 1) → B (3 free, fullest fit), 0 free    2 (ex 3) → C, 2 free    1 (ex 5) → A, 0 free
    assert best_fit_decreasing([5, 3, 7, 2, 4, 1], 8) == [[2, 5], [0, 1], [4, 3]]
    # best fit, not first fit, capacity 10: 7 (ex 1) → A, 3 free; 5 (ex 3) → B, 5 free;
    # 4 (ex 2) fits only B → 1 free; 1 (ex 0) → B, the fullest bin it fits (first fit: A)
    assert best_fit_decreasing([1, 7, 4, 5], 10) == [[1], [3, 2, 0]]
    assert best_fit_decreasing([], 8) == []


def test_an_example_longer_than_the_capacity_gets_a_bin_of_its_own():
    # 12 fills a bin (it will be cut to 8); 6 opens another; 3 fits neither (0 and 2 free)
    assert best_fit_decreasing([12, 3, 6], 8) == [[0], [2], [1]]


@pytest.mark.parametrize("seed", range(5))
def test_bins_never_overflow_and_hold_every_example_once(seed):
    import random

    rng = random.Random(seed)
    lengths = [rng.randint(1, 40) for _ in range(200)]
    bins = best_fit_decreasing(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(200))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    # no bin is opened while an earlier one has room: any two bins hold more than one bin can,
    # since the later bin's first example did not fit into the earlier bin
    totals = sorted(sum(lengths[i] for i in b) for b in bins)
    assert totals[0] + totals[1] > 64


def test_pack_rows_concatenates_with_positions_restarting_per_example():
    rendered = [example(0, 5), example(1, 3), example(2, 7), example(3, 2), example(4, 4), example(5, 1)]
    rows = pack_rows(rendered, capacity=8)
    # the bins of test_best_fit_decreasing_by_hand
    assert [sorted(set(r.segments)) for r in rows] == [[2, 5], [0, 1], [3, 4]]
    first = rows[0]
    assert first.input_ids == [200, 201, 202, 203, 204, 205, 206, 500]
    assert first.position_ids == [0, 1, 2, 3, 4, 5, 6, 0]
    assert first.segments == [2] * 7 + [5]
    # each example's own mask, except that its first token is never a target: nothing before it
    # in its own example predicts it
    assert first.loss_mask == [0, 0, 0, 1, 1, 1, 1, 0]
    assert rows[1].position_ids == [0, 1, 2, 3, 4, 0, 1, 2]
    assert rows[2].position_ids == [0, 1, 2, 3, 0, 1]
    assert all(len(r) <= 8 for r in rows) and [r.examples for r in rows] == [2, 2, 2]


def test_first_token_of_each_example_is_never_a_target():
    fully_trained = [example(0, 3, trained_from=0), example(1, 3, trained_from=0)]
    (row,) = pack_rows(fully_trained, capacity=8)
    assert row.loss_mask == [0, 1, 1, 0, 1, 1]


def test_no_example_exceeds_the_capacity():
    (long_row, short_row) = pack_rows([example(0, 12), example(1, 3)], capacity=8)
    assert long_row.input_ids == list(range(8)) and long_row.position_ids == list(range(8))
    assert len(long_row.loss_mask) == len(long_row.segments) == 8
    assert short_row.input_ids == [100, 101, 102]


def test_without_packing_one_example_per_row_in_order():
    rows = pack_rows([example(0, 5), example(1, 3)], capacity=8, packing=False)
    assert [r.segments for r in rows] == [[0] * 5, [1] * 3]
    assert [r.position_ids for r in rows] == [list(range(5)), list(range(3))]


def test_padding_fraction_by_hand():
    lengths = [5, 3, 7, 2, 4, 1]  # 22 real tokens
    # Unpacked, rows sorted longest first, 2 per micro-batch padded to its longest:
    #   (7, 5) → 14, (4, 3) → 8, (2, 1) → 4: 26 computed, 4 of them padding
    assert padding_fraction(lengths, 8, 2, packing=False) == pytest.approx(4 / 26)
    # Packed: bins of 7+1, 5+3, 4+2 → rows 8, 8, 6 → (8, 8) → 16, (6) → 6: no padding at all
    assert padding_fraction(lengths, 8, 2, packing=True) == 0
    # [8, 3, 2]: unpacked (8, 3) → 16, (2) → 2: 5 pad of 18; packed rows 8, 3+2 → 16: 3 pad of 16
    assert padding_fraction([8, 3, 2], 8, 2, packing=False) == pytest.approx(5 / 18)
    assert padding_fraction([8, 3, 2], 8, 2, packing=True) == pytest.approx(3 / 16)
    # lengths are cut to the capacity first: [10, 2] counts as [8, 2] → (8, 2) → 16, 6 padding
    assert padding_fraction([10, 2], 8, 2, packing=False) == pytest.approx(6 / 16)
    assert padding_fraction([], 8, 2, packing=True) == 0.0


def test_micro_batches_by_hand():
    rows = [Row([0] * n, list(range(n)), [0] * n, [i] * n) for i, n in enumerate([3, 8, 6, 8])]
    # longest first; a batch grows while (its longest row) × (rows) stays within 16 tokens:
    #   8 → [8]; 8 → 8·2 = 16 ok; 6 → 8·3 = 24 > 16, new batch [6]; 3 → 6·2 = 12 ok
    batches = micro_batches(rows, max_tokens=16)
    assert [[len(r) for r in b] for b in batches] == [[8, 8], [6, 3]]


def test_padding_is_its_own_block_and_never_a_target():
    rows = pack_rows([example(0, 4), example(1, 2)], capacity=4, packing=False)
    batch = padded(rows, pad_id=9)
    assert batch["input_ids"] == [[0, 1, 2, 3], [100, 101, 9, 9]]
    # padding restarts at position 0, so the block-diagonal mask keeps it away from real tokens
    assert batch["position_ids"] == [[0, 1, 2, 3], [0, 1, 0, 1]]
    assert batch["loss_mask"] == [[0, 0, 1, 1], [0, 1, 0, 0]]
    assert batch["segments"] == [[0, 0, 0, 0], [1, 1, -1, -1]]


def test_shared_prefix_length_by_hand():
    prefix = list(range(MIN_SHARED_PREFIX + 4))
    rows = [prefix + [1000, 1001], prefix + [2000], prefix + [1000, 3000, 3001]]
    assert shared_prefix_length(rows) == len(prefix)  # keeps ≥ 1 token of the shortest row
    assert shared_prefix_length(rows, keep=2) == len(prefix) - 1  # the shortest row needs 2
    assert shared_prefix_length([prefix[:5] + [1], prefix[:5] + [2]]) == 0  # too short to bother
    assert shared_prefix_length([prefix + [1]]) == 0  # one row: nothing to share


def test_shared_prefix_rows_keep_each_examples_positions():
    n = MIN_SHARED_PREFIX + 4
    prompt = list(range(n))

    def chat(i: int, answer: int) -> Rendered:
        ids = prompt + [500 + i] + [600 + i] * answer
        return Rendered(ids, [0] * (n + 1) + [1] * answer)

    prefix, suffixes = split_shared_prefix([chat(0, 3), chat(1, 2), chat(2, 5)])
    assert prefix == prompt  # ends before the first trained token, at the first differing one
    rows = pack_after_prefix(prefix, suffixes, capacity=n + 8)
    # room 8 after the prefix: 6 (ex 2) → A, 4 (ex 0) → B, 3 (ex 1) → B
    assert [sorted(set(r.segments) - {SHARED_PREFIX}) for r in rows] == [[2], [0, 1]]
    row = rows[1]
    assert row.segments == [SHARED_PREFIX] * n + [0] * 4 + [1] * 3
    # suffixes continue the prefix's positions, as in their full example
    assert row.position_ids == list(range(n)) + [n, n + 1, n + 2, n + 3] + [n, n + 1, n + 2]
    assert row.loss_mask == [0] * n + [0, 1, 1, 1] + [0, 1, 1]
    assert all(len(r) <= n + 8 for r in rows)
    assert split_shared_prefix([chat(0, 3)]) is None  # one example shares nothing


@pytest.mark.parametrize("seed", range(20))
def test_prefix_tracker_streams_what_the_whole_list_gives(seed):
    """The streaming tracker (used by `tunery estimate`) against the definition on whole lists."""
    import random

    from tunery.data.pack import PrefixTracker

    rng = random.Random(seed)
    base = [rng.randrange(50) for _ in range(40)]
    examples = []
    for _ in range(rng.randint(1, 6)):
        ids = base[: rng.randint(14, 40)] + [rng.randrange(50, 100) for _ in range(rng.randint(0, 8))]
        first = rng.randint(min(18, len(ids)), len(ids))  # may be len(ids): nothing trained
        examples.append(Rendered(ids, [0] * first + [1] * (len(ids) - first)))
    tracker = PrefixTracker()
    for r in examples:
        tracker.add(r)
    common = shared_prefix_length([r.input_ids for r in examples], keep=2)
    first_trained = min((r.loss_mask.index(1) for r in examples if 1 in r.loss_mask), default=0)
    expected = min(common, first_trained - 1)
    assert tracker.length() == (expected if expected >= MIN_SHARED_PREFIX else 0)  # 12 of the 20 seeds share one
