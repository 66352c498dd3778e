"""Each grader against values worked out by hand (the working is in each test's docstring)."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tunery.graders.exact import exact_match
from tunery.graders.json_match import json_equal, json_valid
from tunery.graders.normalized import normalize, normalized_match
from tunery.graders.overlap import longest_common_subsequence, rouge_l, token_f1
from tunery.graders.regex import is_regex_reference, regex_match

MODULES_WITH_EXAMPLES = [
    "tunery.graders",
    "tunery.graders.exact",
    "tunery.graders.normalized",
    "tunery.graders.json_match",
    "tunery.graders.regex",
    "tunery.graders.overlap",
    "tunery.graders.embedding",
    "tunery.graders.judge",
    "tunery.eval.stats",
    "tunery.eval.heldout",
    "tunery.eval.compare",
    "tunery.eval.forgetting",
    "tunery.eval.select",
]


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples_hold(name):
    """The worked examples in the docstrings are part of the documentation; they must stay true."""
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_exact_ignores_only_outer_whitespace():
    assert exact_match("  billing.refund\n", "billing.refund") == 1.0
    assert exact_match("billing. refund", "billing.refund") == 0.0
    assert exact_match("Billing.refund", "billing.refund") == 0.0


def test_normalized_folds_case_punctuation_and_spaces():
    """ "Hello,   World!" → lower "hello,   world!" → drop , and ! → collapse spaces → "hello world"."""
    assert normalize("Hello,   World!") == "hello world"
    assert normalized_match("Hello,   World!", "hello world") == 1.0
    assert normalized_match("“Paris”", "paris") == 1.0  # typographic quotes are punctuation too
    assert normalized_match("hello worlds", "hello world") == 0.0


def test_json_valid_and_equal_ignore_key_order_but_not_types():
    assert json_valid('{"a": [1, 2]}', "") == 1.0
    assert json_valid("{a: 1}", "") == 0.0
    assert json_valid("", "") == 0.0
    assert json_equal('{"b": {"y": 2, "x": 1}, "a": 0}', '{"a": 0, "b": {"x": 1, "y": 2}}') == 1.0
    assert json_equal('```json\n{"a": 1}\n```', '{"a": 1}') == 1.0
    assert json_equal('{"a": 1}', '{"a": "1"}') == 0.0
    assert json_equal('{"a": 1}', '{"a": 1, "b": null}') == 0.0
    assert json_equal('{"a": 1', '{"a": 1}') == 0.0
    assert json_equal("[1, 2]", "[2, 1]") == 0.0  # list order is meaning


def test_regex_reference_format_and_search_semantics():
    assert is_regex_reference("/^\\d{4}-\\d{2}-\\d{2}$/")
    assert is_regex_reference("/paris/i")
    assert not is_regex_reference("paris")
    assert not is_regex_reference("/unclosed(/")
    assert regex_match("2024-06-11", "/^\\d{4}-\\d{2}-\\d{2}$/") == 1.0
    assert regex_match("on 2024-06-11", "/^\\d{4}-\\d{2}-\\d{2}$/") == 0.0
    assert regex_match("It is PARIS.", "/paris/i") == 1.0
    with pytest.raises(ValueError, match="PATTERN"):
        regex_match("x", "not a pattern")


def test_token_f1_by_hand():
    """out "a b c d", ref "a b e": overlap 2 (a, b); P = 2/4, R = 2/3; F1 = 2·(1/2)(2/3)/(1/2 + 2/3) = 4/7.
    Repeats count once per match: out "a a a", ref "a": overlap 1, P = 1/3, R = 1, F1 = 1/2."""
    assert token_f1("a b c d", "a b e") == pytest.approx(4 / 7)
    assert token_f1("a a a", "a") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0
    assert token_f1("", "a") == 0.0
    assert token_f1("x y", "a b") == 0.0


def test_rouge_l_by_hand():
    """out "a c b d", ref "a b c d": LCS is "a b d" or "a c d", 3 long; P = 3/4, R = 3/4, F = 3/4.
    out "d c b a", ref "a b c d": LCS 1; P = R = 1/4, F = 1/4 (order matters, unlike F1 which gives 1)."""
    assert longest_common_subsequence("a c b d".split(), "a b c d".split()) == 3
    assert rouge_l("a c b d", "a b c d") == pytest.approx(0.75)
    assert rouge_l("d c b a", "a b c d") == pytest.approx(0.25)
    assert token_f1("d c b a", "a b c d") == pytest.approx(1.0)
    assert rouge_l("", "") == 1.0


def test_embedding_similarity_ranks_paraphrase_over_unrelated_text():
    """The real offline MiniLM encoder: identical text scores 1, a paraphrase far above unrelated text."""
    from tunery.graders.embedding import embedding_similarities

    same, paraphrase, unrelated = embedding_similarities(
        ["The cat sat on the mat.", "A cat was sitting on a mat.", "Stock prices fell sharply today."],
        ["The cat sat on the mat.", "The cat sat on the mat.", "The cat sat on the mat."],
    )
    assert same == pytest.approx(1.0, abs=1e-5)
    assert paraphrase > 0.7 and unrelated < 0.3
