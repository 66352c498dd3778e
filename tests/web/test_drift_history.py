"""The Monitoring page's drift history: day windows, and scores equal to measure_drift's per day."""

from __future__ import annotations

import json

import pytest
from builders import write_chat_dataset

from tunery.monitor.drift import measure_drift, prompt_text
from tunery.web.drift_history import DAY, daily_drift, day_windows


def test_day_windows_are_24_hours_ending_now_oldest_first_and_skip_empty_days():
    now = 10 * DAY
    logged = [(9.5 * DAY, "a"), (8.2 * DAY, "b"), (10 * DAY, "c"), (7 * DAY, "d"), (11 * DAY, "future")]
    # days=3 covers (7, 8], (8, 9], (9, 10] days: "d" sits on the open start, "future" after now.
    assert day_windows(logged, now, 3) == [(8 * DAY, 9 * DAY, ["b"]), (9 * DAY, 10 * DAY, ["a", "c"])]
    assert day_windows(logged, now, 4) == [(6 * DAY, 7 * DAY, ["d"]), *day_windows(logged, now, 3)]
    assert day_windows([], now, 3) == []


def test_each_days_score_is_what_measure_drift_gives_that_day_alone(tmp_path):
    def prompts(path):
        return [prompt_text(json.loads(line)["messages"]) for line in path.read_text().splitlines()]

    train = prompts(write_chat_dataset(tmp_path / "train.jsonl", 40, seed=1))
    alike = prompts(write_chat_dataset(tmp_path / "alike.jsonl", 8, seed=2))
    off_topic = [
        "What is the capital of France and why did it become the seat of government?",
        "Explain photosynthesis step by step with the chemical equation.",
        "Write a sonnet about the sea at night in an old English style.",
        "Summarise the causes of the First World War for a school essay.",
        "Translate good morning into Spanish, German and Japanese, with pronunciation.",
    ]
    now = 100 * DAY
    logged = [(now - 1.5 * DAY, text) for text in alike] + [(now - 0.5 * DAY, text) for text in off_topic]
    history = daily_drift(train, logged, now=now, days=7)
    assert [(d.start, d.end, d.prompts) for d in history] == [(now - 2 * DAY, now - DAY, 8), (now - DAY, now, 5)]
    for day, texts in zip(history, (alike, off_topic), strict=True):
        alone = measure_drift("m", train, texts)
        assert day.score == pytest.approx(alone.score, abs=1e-4) and day.level == alone.level
    assert history[0].level != "alert" and history[1].level == "alert"
    assert daily_drift([], logged, now=now, days=7) == [] and daily_drift(train, [], now=now, days=7) == []
