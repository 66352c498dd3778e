"""The verdict's metric: named, else the strictest that separates the systems; disagreement stated."""

from __future__ import annotations

import json

from tunery.eval.verdict import choose_metric, decide
from tunery.graders import resolve_graders

N = 100


def _answers(valid: int, equal: int) -> list[str]:
    """N answers to the references below: the first `equal` right, then wrong but valid JSON, then prose."""
    return [
        json.dumps({"name": f"item {i}", "n": i})
        if i < equal
        else json.dumps({"name": f"item {i}", "n": -1})
        if i < valid
        else f"The name is item {i}."
        for i in range(N)
    ]


def test_the_issue_table_gives_fine_tuning_on_json_equal():
    """zero-shot 0.02/0.01, few-shot 1.00/0.57, tuned 1.00/0.99: json_valid is saturated and cannot decide."""
    references = [json.dumps({"n": i, "name": f"item {i}"}) for i in range(N)]
    graders, _ = resolve_graders(None, references, [f"test.jsonl:{i + 1}" for i in range(N)])
    assert [g.name for g in graders] == ["json_valid", "json_equal"]  # the table's order: validity first
    outputs = {"zero_shot": _answers(2, 1), "few_shot": _answers(N, 57), "tuned": _answers(N, 99)}
    scores = {
        system: {g.name: g.score([[]] * N, answers, references) for g in graders} for system, answers in outputs.items()
    }
    assert {s: [sum(v) / N for v in by.values()] for s, by in scores.items()} == {
        "zero_shot": [0.02, 0.01],
        "few_shot": [1.0, 0.57],
        "tuned": [1.0, 0.99],
    }

    decision = decide(scores, ["json_valid", "json_equal"], None)

    assert decision.verdict.startswith("fine-tuning beats few-shot prompting by 0.42")
    assert decision.verdict.endswith("on json_equal")
    assert decision.reason.startswith("json_equal decided: the strictest metric of the task")
    assert "json_valid" in decision.reason
    assert decision.disagreement is not None
    assert "on json_equal fine-tuning is better than few-shot prompting (+0.42)" in decision.disagreement
    assert "on json_valid fine-tuning is level with few-shot prompting (+0.00)" in decision.disagreement


def test_a_named_metric_decides_even_when_saturated():
    scores = {
        "few_shot": {"json_valid": [1.0] * 20, "json_equal": [0.0] * 20},
        "tuned": {"json_valid": [1.0] * 20, "json_equal": [1.0] * 20},
    }
    decision = decide(scores, ["json_valid", "json_equal"], "json_valid")
    assert decision.metric == "json_valid"
    assert decision.reason == "json_valid decided: named with --metric"
    assert decision.verdict.startswith("prompting is enough here: the difference is within noise (+0.00 on json_valid")


def test_a_metric_every_system_ties_on_is_passed_over_and_said_so():
    means = {
        "zero_shot": {"exact": 0.0, "normalized": 0.2},
        "few_shot": {"exact": 0.0, "normalized": 0.5},
        "tuned": {"exact": 0.0, "normalized": 0.9},
    }
    choice = choose_metric(means, ["exact", "normalized"], None)
    assert choice.metric == "normalized"
    assert choice.reason == (
        "normalized decided: the strictest metric of the task that separates the systems "
        "(exact: every system scores the same)"
    )


def test_when_everything_ties_the_strictest_decides_and_metrics_agree():
    scores = {
        "zero_shot": {"token_f1": [0.5] * 10, "exact": [1.0] * 10},
        "tuned": {"token_f1": [0.5] * 10, "exact": [1.0] * 10},
    }
    decision = decide(scores, ["token_f1", "exact"], None)
    assert decision.metric == "exact"
    assert "every system scores the same on all" in decision.reason
    assert decision.disagreement is None
    assert decision.baseline == "zero_shot"


def test_the_users_own_grader_decides_before_the_built_in_ones():
    means = {"few_shot": {"exact": 0.2, "my_graders:polite": 0.5}, "tuned": {"exact": 0.9, "my_graders:polite": 0.6}}
    assert choose_metric(means, ["exact", "my_graders:polite"], None).metric == "my_graders:polite"
