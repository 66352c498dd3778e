"""Input drift of a deployed model day by day, from its prompt log, for the Monitoring page.

`tunery monitor drift` measures one window on demand and keeps nothing, but the prompt log keeps
each request's time, so the history can be measured from it: each day's prompts against the
training prompts, with the signals, noise floor and score of `tunery.monitor.drift.measure_drift`.
Measuring the days one `measure_drift` call at a time would embed the training prompts once per
day; here they are embedded once for all days. The vocabulary is shared by all days, which leaves
every signal as `measure_drift` computes it (words a day does not use count zero on both sides).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

DAY = 86400.0


class DayDrift(BaseModel):
    start: float  # Unix seconds: the day is (start, end]
    end: float
    prompts: int  # logged prompts in the day (the newest MAX_TEXTS of them are measured)
    score: float  # as measure_drift: 1 = a signal beyond chance by its full alert threshold
    level: str  # ok | warn | alert


def day_windows(logged: Sequence[tuple[float, str]], now: float, days: int) -> list[tuple[float, float, list[str]]]:
    """(start, end, texts) of each of the last `days` 24-hour windows ending at `now` that has prompts, oldest first."""
    windows = []
    for back in reversed(range(days)):
        start, end = now - (back + 1) * DAY, now - back * DAY
        texts = [text for ts, text in logged if start < ts <= end]
        if texts:
            windows.append((start, end, texts))
    return windows


def daily_drift(train: Sequence[str], logged: Sequence[tuple[float, str]], *, now: float, days: int) -> list[DayDrift]:
    """The drift score of each day's logged prompts (time, text) against the training prompts.

    Returns [] when there is no training prompt or no logged prompt in the last `days` days.
    """
    import numpy as np

    from tunery.monitor.drift import (
        MAX_TEXTS,
        drift_score,
        encode,
        featurize,
        level_of,
        noise_floor,
        sample_texts,
        signals,
    )

    windows = [(start, end, texts[-MAX_TEXTS:], len(texts)) for start, end, texts in day_windows(logged, now, days)]
    train = sample_texts(list(train))
    if not train or not windows:
        return []
    groups = [train, *(texts for _, _, texts, _ in windows)]
    vectors = encode([text for group in groups for text in group])
    bounds = np.cumsum([0, *(len(group) for group in groups)])
    reference, *samples = featurize(groups, [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    found = []
    for (start, end, _, count), sample in zip(windows, samples, strict=True):
        observed, noise = signals(reference, sample), noise_floor(reference, len(sample))
        score = drift_score(observed, noise)
        found.append(DayDrift(start=start, end=end, prompts=count, score=round(score, 4), level=level_of(score)))
    return found
