"""The pure parts of scheduling: intervals as users write them, and the baseline rule for alerts."""

from __future__ import annotations

from datetime import datetime

import pytest

from tunery.errors import TuneryError
from tunery.monitor.alerts import check_webhook_url
from tunery.monitor.periods import parse_duration, parse_since
from tunery.monitor.schedule import Alert, check_against_baseline


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("1.5h") == 5400
    assert parse_duration("1d") == 86400
    assert parse_duration(" 2w ") == 14 * 86400
    for bad in ("0d", "1y", "daily", "-1d", ""):
        with pytest.raises(TuneryError, match="is not a duration"):
            parse_duration(bad)


def test_since_is_a_duration_ago_or_a_date():
    assert parse_since("2h", now=10_000.0) == 2800.0
    assert parse_since("2025-06-01", now=0.0) == datetime(2025, 6, 1).timestamp()
    with pytest.raises(TuneryError, match="neither a duration nor a date"):
        parse_since("last week", now=0.0)


def test_a_drop_beyond_the_threshold_warns_and_beyond_twice_errors():
    baseline = {"exact": 0.90, "f1": 0.80, "rouge_l": 0.50, "gone": 1.0}
    current = {"exact": 0.85, "f1": 0.74, "rouge_l": 0.39}
    # exact drops 0.05: exactly the threshold, no alert; f1 0.06: warn; rouge_l 0.11 > 2 × 0.05: error.
    assert check_against_baseline(baseline, current, 0.05) == [
        Alert("f1", 0.80, 0.74, "warn"),
        Alert("rouge_l", 0.50, 0.39, "error"),
    ]
    assert check_against_baseline(baseline, {"exact": 0.99}, 0.05) == []  # improvements never alert
    assert Alert("f1", 0.80, 0.74, "warn").drop == pytest.approx(0.06)


def test_webhooks_are_http_only():
    assert check_webhook_url("https://hooks.example.com/x") == "https://hooks.example.com/x"
    for bad in ("file:///etc/passwd", "ftp://host/x", "http://"):
        with pytest.raises(TuneryError, match="not an http"):
            check_webhook_url(bad)
