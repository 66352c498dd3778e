"""The bundled general-skills probe and the forgetting report."""

from __future__ import annotations

from collections import Counter

import pytest

from tunery.eval.forgetting import forgetting_verdict, grade_probe, load_probe, run_probe
from tunery.eval.graders import BUILTIN
from tunery.eval.stats import Interval
from tunery.inference import Generator


def test_probe_has_thirty_items_in_three_skills_each_with_a_fitting_grader():
    items = load_probe()
    assert Counter(item.skill for item in items) == {"arithmetic": 10, "instructions": 10, "facts": 10}
    for item in items:
        assert item.grader in BUILTIN and BUILTIN[item.grader].applies(item.reference), item


def test_every_probe_item_accepts_its_example_answer():
    items = load_probe()
    assert grade_probe(items, [item.example_answer for item in items]) == [1.0] * len(items)


@pytest.mark.parametrize(
    ("question_start", "wrong"),
    [
        ("What is 7 + 5?", "112"),  # the right digits inside a longer number
        ("What is 7 + 5?", "1.2"),
        ("What is 9 times 6?", "54.5"),
        ("Reply with only the word BANANA", "Sure! BANANA"),
        ("Reply with only the word BANANA", "banana"),
        ("Write the numbers from 1 to 5", "1, 2, 3, 4"),
        ("Return a JSON object", '{"colour": "blue"}'),
        ("Repeat this sentence exactly", "The train leaves at noon. Have a nice trip!"),
        ("What is the capital of France?", "Lyon"),
    ],
)
def test_probe_graders_reject_wrong_answers(question_start, wrong):
    item = next(i for i in load_probe() if i.messages[-1]["content"].startswith(question_start))
    assert grade_probe([item], [wrong]) == [0.0]


def test_verdict_wording():
    assert forgetting_verdict(0.6, 0.3, Interval(0.3, 0.13, 0.47)).startswith(
        "general skills dropped by 0.30 (CI 0.13..0.47)"
    )
    assert forgetting_verdict(0.5, 0.5, Interval(0.0, -0.1, 0.1)).startswith(
        "no measurable forgetting: probe score 0.50 → 0.50"
    )


def test_an_adapter_that_changes_nothing_forgets_nothing(tiny_model_dir, untrained_run):
    """LoRA starts with B = 0, so the untrained adapter answers exactly as the base does."""
    generator = Generator(tiny_model_dir)
    generator.add_adapter("tuned", untrained_run / "final")
    report = run_probe((generator, None), (generator, "tuned"))
    assert report.n == 30
    assert (report.drop.mean, report.drop.low, report.drop.high) == (0.0, 0.0, 0.0)
    assert report.verdict.startswith("no measurable forgetting")
    assert [e["base_output"] for e in report.examples] == [e["tuned_output"] for e in report.examples]
