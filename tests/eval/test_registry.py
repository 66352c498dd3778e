"""Choosing graders: automatic choice from references, named ones, custom ones, and the judge."""

from __future__ import annotations

import pytest

from tunery.errors import TuneryError
from tunery.graders import auto_grader_names, resolve_graders
from tunery.graders.judge import SKIPPED_MESSAGE, judge_config_from_env, judge_messages, parse_verdict


def names(graders):
    return [g.name for g in graders]


@pytest.mark.parametrize(
    ("references", "expected"),
    [
        (["billing.refund", "account.login", "other"], ["exact", "normalized"]),
        (['{"name": "Ada", "age": 36}', "[1, 2]"], ["json_valid", "json_equal"]),
        (["/^\\d+$/", "/yes/i"], ["regex"]),
        (["Paris is the capital of France and its largest city."], ["token_f1", "rouge_l", "embedding"]),
        # One long answer among labels makes it free text: the prose graders still work on labels.
        (["yes", "no", "it depends on the contract you signed"], ["token_f1", "rouge_l", "embedding"]),
        # A bare number is JSON, but not a document: it is a label.
        (["42", "7"], ["exact", "normalized"]),
    ],
)
def test_auto_choice_follows_the_references(references, expected):
    assert auto_grader_names(references) == expected


def test_named_graders_run_in_order_without_repeats():
    graders, skipped = resolve_graders(["normalized", "exact", "normalized"], ["a"], ["f:1"])
    assert names(graders) == ["normalized", "exact"] and skipped == {}
    assert graders[0].score([[]], ["A."], ["a"]) == [1.0]


def test_unknown_grader_lists_the_known_ones():
    with pytest.raises(TuneryError, match="unknown grader 'bleu'") as info:
        resolve_graders(["bleu"], ["a"], ["f:1"])
    assert "token_f1" in str(info.value)


def test_a_grader_that_cannot_judge_a_reference_names_its_line():
    with pytest.raises(TuneryError, match=r"json_equal.*held\.jsonl:2"):
        resolve_graders(["json_equal"], ['{"a": 1}', "not json"], ["held.jsonl:1", "held.jsonl:2"])
    with pytest.raises(TuneryError, match=r"regex.*/PATTERN/FLAGS.*held\.jsonl:1"):
        resolve_graders(["regex"], ["plain"], ["held.jsonl:1"])


def test_custom_grader_from_a_module_on_the_path(tmp_path, monkeypatch):
    (tmp_path / "my_graders.py").write_text(
        "def starts_right(output, reference):\n    return output.lower().startswith(reference.lower())\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    graders, _ = resolve_graders(["my_graders:starts_right"], ["billing", "other"], ["f:1", "f:2"])
    assert names(graders) == ["my_graders:starts_right"]
    assert graders[0].score([[], []], ["Billing, I think", "account"], ["billing", "other"]) == [1.0, 0.0]


def test_custom_grader_from_a_file_path(tmp_path):
    path = tmp_path / "graders.py"
    path.write_text("def length_ratio(output, reference):\n    return len(output) / max(len(reference), 1)\n")
    (grader,), _ = resolve_graders([f"{path}:length_ratio"], ["abcd"], ["f:1"])
    assert grader.score([[]], ["ab"], ["abcd"]) == [0.5]


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        ("def f(o, r):\n    return 'yes'\n", "{path}:f", "returned 'yes'"),
        ("def f(o, r):\n    return 1 / 0\n", "{path}:f", "raised ZeroDivisionError"),
        ("def f(o, r):\n    return 1.0\n", "{path}:g", "has no function 'g'"),
        ("def f(o, r):\n    return 1.0\n", "{path}.missing.py:f", "no file"),
        ("", "no_such_module_xyz:f", "cannot import no_such_module_xyz"),
    ],
)
def test_custom_grader_mistakes_are_clear_errors(tmp_path, source, spec, message):
    path = tmp_path / "g.py"
    path.write_text(source)
    with pytest.raises(TuneryError, match=message):
        (grader,), _ = resolve_graders([spec.format(path=path)], ["a"], ["f:1"])
        grader.score([[]], ["a"], ["a"])


def test_judge_is_skipped_with_a_message_when_not_configured(monkeypatch):
    monkeypatch.delenv("TUNERY_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("TUNERY_JUDGE_MODEL", raising=False)
    graders, skipped = resolve_graders(["exact", "judge"], ["a"], ["f:1"])
    assert names(graders) == ["exact"]
    assert skipped == {"judge": SKIPPED_MESSAGE}
    assert "TUNERY_JUDGE_BASE_URL" in SKIPPED_MESSAGE
    with pytest.raises(TuneryError, match="no grader is left to run: judge skipped"):
        resolve_graders(["judge"], ["a"], ["f:1"])


def test_judge_configuration_and_verdicts(monkeypatch):
    monkeypatch.setenv("TUNERY_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TUNERY_JUDGE_MODEL", "judge-model")
    monkeypatch.delenv("TUNERY_JUDGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = judge_config_from_env()
    assert (config.base_url, config.model, config.api_key) == ("http://127.0.0.1:9/v1", "judge-model", "not-needed")
    request = judge_messages([{"role": "user", "content": "2+2?"}], "5", "4")
    assert "user: 2+2?" in request[1]["content"] and "Reference answer:\n4" in request[1]["content"]
    assert [parse_verdict(r) for r in ["CORRECT", "incorrect.", "The answer is correct", "unsure"]] == [
        1.0,
        0.0,
        1.0,
        None,
    ]


def test_judge_endpoint_that_is_down_is_a_clear_error(monkeypatch):
    """Nothing listens on port 9 (discard): the openai client's connection error becomes a TuneryError."""
    monkeypatch.setenv("TUNERY_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TUNERY_JUDGE_MODEL", "judge-model")
    (judge,), skipped = resolve_graders(["judge"], ["4"], ["f:1"])
    assert skipped == {}
    with pytest.raises(TuneryError, match=r"the judge at http://127\.0\.0\.1:9/v1 .* failed"):
        judge.score([[{"role": "user", "content": "2+2?"}]], ["4"], ["4"])
