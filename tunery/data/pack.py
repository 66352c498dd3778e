"""Packing: many rendered examples per row, with no example attending to another.

Examples are placed into rows of `capacity` tokens by best-fit decreasing. Each example keeps its
own position ids (0, 1, 2, … restarting at every example). The model builds its attention mask
from those position ids: a position that does not follow its predecessor by one starts a new
block, so attention is block-diagonal causal rather than one long causal sequence (transformers'
`find_packed_sequence_indices`, used when no 2-D attention mask is passed). The packing
invariant test holds this to the unpacked per-token loss.

Pure Python, no torch: `tunery estimate` uses it for padding statistics too.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from tunery.data.render import Rendered

# Below this many shared tokens, running a prefix separately costs more than it saves.
MIN_SHARED_PREFIX = 16
# The segment id of a row's shared prompt prefix, which every other example of the row attends to.
SHARED_PREFIX = -2


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group example indices into bins whose total length is at most `capacity`.

    Longest first, each into the fullest bin it still fits (O(n log n) with a sorted list of free
    space). An example longer than `capacity` gets a bin of its own; the caller truncates it.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, bin index)
    for i in order:
        size = min(lengths[i], capacity)
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            space, b = free.pop(at)
            bins[b].append(i)
            bisect.insort(free, (space - size, b))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - size, len(bins) - 1))
    return bins


@dataclass(frozen=True)
class Row:
    """One packed row: concatenated examples, their position ids and training targets."""

    input_ids: list[int]
    position_ids: list[int]
    loss_mask: list[int]
    segments: list[int]  # per token, the index of its example in the packed list

    @property
    def examples(self) -> int:
        return len(set(self.segments))

    def __len__(self) -> int:
        return len(self.input_ids)


def pack_rows(rendered: Sequence[Rendered], capacity: int, *, packing: bool = True) -> list[Row]:
    """Turn examples into rows: packed by best-fit decreasing, or one example per row."""
    groups = (
        best_fit_decreasing([len(r.input_ids) for r in rendered], capacity)
        if packing
        else [[i] for i in range(len(rendered))]
    )
    rows = []
    for group in groups:
        ids, pos, mask, segments = [], [], [], []
        for i in group:
            example = rendered[i]
            n = min(len(example.input_ids), capacity)
            ids += example.input_ids[:n]
            pos += range(n)
            # A target never crosses an example boundary: the first token of each is untrained.
            mask += [0, *example.loss_mask[1:n]]
            segments += [i] * n
        rows.append(Row(ids, pos, mask, segments))
    return rows


def micro_batches(rows: Sequence[Row], max_tokens: int) -> list[list[Row]]:
    """Split rows into micro-batches of at most `max_tokens` padded tokens each.

    Rows are sorted by length first so that rows padded together have similar lengths.
    """
    batches: list[list[Row]] = []
    current: list[Row] = []
    for row in sorted(rows, key=len, reverse=True):
        width = max([len(r) for r in current] + [len(row)])
        if current and width * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(row)
    if current:
        batches.append(current)
    return batches


def padded(batch: Sequence[Row], pad_id: int) -> dict[str, list[list[int]]]:
    """Pad a micro-batch to its longest row.

    Padding gets positions 0, 1, … of its own, so it forms a separate block that no real token
    attends to, and it is never a target.
    """
    width = max(len(r) for r in batch)
    out: dict[str, list[list[int]]] = {"input_ids": [], "position_ids": [], "loss_mask": [], "segments": []}
    for r in batch:
        extra = width - len(r)
        out["input_ids"].append(r.input_ids + [pad_id] * extra)
        out["position_ids"].append(r.position_ids + list(range(extra)))
        out["loss_mask"].append(r.loss_mask + [0] * extra)
        out["segments"].append(r.segments + [-1] * extra)
    return out


def padding_fraction(lengths: Sequence[int], capacity: int, rows_per_batch: int, *, packing: bool) -> float:
    """Share of computed tokens that are padding, with or without packing."""
    lengths = [min(n, capacity) for n in lengths]
    if not lengths:
        return 0.0
    if packing:
        row_lengths = [sum(lengths[i] for i in b) for b in best_fit_decreasing(lengths, capacity)]
    else:
        row_lengths = list(lengths)
    row_lengths.sort(reverse=True)
    computed = sum(
        max(row_lengths[i : i + rows_per_batch]) * len(row_lengths[i : i + rows_per_batch])
        for i in range(0, len(row_lengths), rows_per_batch)
    )
    return 1.0 - sum(lengths) / computed


def shared_prefix_length(rows: list[list[int]], keep: int = 1) -> int:
    """How many leading tokens all rows share, leaving at least `keep` tokens of each row after
    it; 0 when that is under MIN_SHARED_PREFIX or there is only one row."""
    if len(rows) < 2:
        return 0
    limit = min(len(r) for r in rows) - keep
    first = rows[0]
    length = 0
    while length < limit and all(r[length] == first[length] for r in rows):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


class PrefixTracker:
    """The prompt prefix a stream of examples shares, found as `split_shared_prefix` finds it.

    Keeps only the common prefix and three counters, so `tunery estimate` can find it while
    streaming a file too big to hold.
    """

    def __init__(self) -> None:
        self.common: list[int] | None = None
        self.count = 0
        self.shortest = 0
        self.first_trained: int | None = None  # earliest trained position over all examples

    def add(self, rendered: Rendered) -> None:
        ids = rendered.input_ids
        if self.common is None:
            self.common, self.shortest = list(ids), len(ids)
        elif ids[: len(self.common)] != self.common:  # the usual case, one system prompt, is the C compare
            n = 0
            while n < len(self.common) and n < len(ids) and self.common[n] == ids[n]:
                n += 1
            del self.common[n:]
        self.count += 1
        self.shortest = min(self.shortest, len(ids))
        if 1 in rendered.loss_mask:
            first = rendered.loss_mask.index(1)
            self.first_trained = first if self.first_trained is None else min(self.first_trained, first)

    def length(self) -> int:
        """Tokens worth sharing: all examples' common start, ending before the first trained
        token of any example and leaving each at least 2 tokens after it; 0 when that is under
        MIN_SHARED_PREFIX or there are fewer than two examples."""
        if self.count < 2 or self.first_trained is None or self.common is None:
            return 0
        n = min(len(self.common), self.shortest - 2, self.first_trained - 1)
        return n if n >= MIN_SHARED_PREFIX else 0


def split_shared_prefix(rendered: Sequence[Rendered]) -> tuple[list[int], list[Row]] | None:
    """The prompt prefix all examples share (typically the system prompt), and their suffixes.

    Chat datasets often repeat one long system prompt in every example. Computing it once per
    micro-batch and letting every suffix attend to its KV cache gives the same loss and the same
    gradients as computing it in every row, for a fraction of the work. The prefix stops before
    the first trained token of any example, so every target is predicted inside a suffix.
    Returns None when the shared part is too short to be worth it.
    """
    tracker = PrefixTracker()
    for r in rendered:
        tracker.add(r)
    prefix = tracker.length()
    if not prefix:
        return None
    rows = [
        Row(
            input_ids=r.input_ids[prefix:],
            position_ids=list(range(prefix, len(r.input_ids))),
            loss_mask=r.loss_mask[prefix:],
            segments=[i] * (len(r.input_ids) - prefix),
        )
        for i, r in enumerate(rendered)
    ]
    return rendered[0].input_ids[:prefix], rows


def pack_after_prefix(prefix: list[int], suffixes: Sequence[Row], capacity: int) -> list[Row]:
    """Rows that each hold the shared prefix once, then as many suffixes as fit in `capacity`.

    The prefix tokens get segment id SHARED_PREFIX: every suffix of the row attends to them and to
    itself, nothing else (tunery/train/attention.py). Each suffix keeps the position ids it has
    in its full example. Its first token is never a target (split_shared_prefix ends the prefix
    before the first trained token), so no target is predicted across a boundary.
    """
    room = max(1, capacity - len(prefix))
    rows = []
    for group in best_fit_decreasing([len(r) for r in suffixes], room):
        ids, pos, mask = list(prefix), list(range(len(prefix))), [0] * len(prefix)
        segments = [SHARED_PREFIX] * len(prefix)
        for i in group:
            suffix = suffixes[i]
            ids += suffix.input_ids
            pos += suffix.position_ids
            mask += suffix.loss_mask
            segments += suffix.segments
        rows.append(Row(ids, pos, mask, segments))
    return rows
