"""Drift statistics: each one against values worked by hand, then the whole measure on real text.

The real-text cases use the bundled support-ticket data as training prompts and the offline
MiniLM encoder: held-out prompts from the same distribution must score `ok`, prompts on another
topic and prompts several times longer must score `alert`.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from builders import EXAMPLES

from tunery.monitor.drift import (
    centroid_distance,
    far_share,
    far_threshold,
    js_divergence,
    ks_statistic,
    measure_drift,
    prompt_text,
)


def test_ks_statistic_by_hand():
    # ECDFs of {1,2,3,4} and {3,4,5,6}: at x = 2 they are 0.5 and 0; no gap is larger.
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert ks_statistic([1, 2], [3, 4]) == pytest.approx(1.0)
    assert ks_statistic([1, 2, 3], [3, 2, 1]) == pytest.approx(0.0)


def test_js_divergence_by_hand():
    # P = (½, ½), Q = (1, 0), M = (¾, ¼):
    # KL(P‖M) = ½·log2(⅔) + ½·log2(2) = 0.2075187, KL(Q‖M) = log2(4/3) = 0.4150375, JS = mean = 0.3112781.
    assert js_divergence([1, 1], [1, 0]) == pytest.approx(0.3112781, abs=1e-6)
    assert js_divergence([3, 0], [0, 5]) == pytest.approx(1.0)  # disjoint vocabularies: the maximum, 1 bit
    assert js_divergence([2, 4], [1, 2]) == pytest.approx(0.0)  # counts are normalised first


def test_centroid_distance_and_far_share_by_hand():
    assert centroid_distance(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(1.0)
    assert centroid_distance(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])) == pytest.approx(1 - 2**-0.5)
    reference = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6]])
    # Nearest other row: 1.0, 1.0, 0.8; numpy's 5th percentile of (0.8, 1, 1) is 0.8 + 0.1 × 0.2 = 0.82.
    assert far_threshold(reference) == pytest.approx(0.82)
    # (0, 1) is at most 0.6 similar to a reference row (far); (1, 0) matches one exactly (near).
    assert far_share(np.array([[0.0, 1.0], [1.0, 0.0]]), reference) == pytest.approx(0.5)


def test_prompt_text_keeps_user_turns_only():
    messages = [
        {"role": "system", "content": "Route the ticket."},
        {"role": "user", "content": "my parcel is late"},
        {"role": "assistant", "content": "shipping.delay"},
        {"role": "user", "content": [{"type": "text", "text": "and"}, {"type": "image_url", "image_url": {}}]},
    ]
    assert prompt_text(messages) == "my parcel is late\nand"


def _prompts(path) -> list[str]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [prompt_text(obj.get("messages") or obj["input"]["messages"]) for obj in lines]


@pytest.fixture(scope="module")
def tickets():
    """60 training prompts, and 30 other prompts drawn from the same file (no drift)."""
    prompts = _prompts(EXAMPLES / "support-tickets" / "train.jsonl")
    random.Random(0).shuffle(prompts)
    return prompts[:60], prompts[60:90]


def test_prompts_from_the_training_distribution_do_not_drift(tickets):
    train, same = tickets
    report = measure_drift("tickets", train, same)
    assert report.level == "ok", report.signals
    assert report.score < 0.5


def test_prompts_on_another_topic_drift(tickets):
    train, _ = tickets
    other = _prompts(EXAMPLES / "signoff-prefs" / "train.jsonl")[:30]  # short general-knowledge questions
    report = measure_drift("tickets", train, other)
    assert report.level == "alert" and report.score >= 1
    assert report.signals["centroid_distance"].level == "alert" and report.signals["vocabulary_js"].level == "alert"
    assert all(example.text in other for example in report.most_distant)
    assert report.most_distant[0].similarity < report.far_threshold


def test_much_longer_prompts_drift_in_length(tickets):
    train, same = tickets
    rng = random.Random(1)
    longer = [" ".join(rng.sample(same, 4)) for _ in range(30)]  # four tickets in one message
    report = measure_drift("tickets", train, longer)
    assert report.level == "alert"
    assert report.signals["length_ks"].level == "alert"
    assert report.mean_words["recent"] > 3 * report.mean_words["train"]
