"""OpenAI's grader objects, each against hand-worked cases; the python sandbox's fences; model
graders against a real HTTP endpoint through the real openai client."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tunery.errors import TuneryError
from tunery.graders.formula import FormulaError, check_formula, evaluate_formula
from tunery.graders.grading import Grading, item_fields
from tunery.graders.objects import parse_grader
from tunery.graders.similarity import similarity
from tunery.graders.templates import TemplateError, make_sample, render


def grade(grader: dict, output: str, item: dict | None = None):
    with Grading(parse_grader(grader)) as running:
        return running.grade(output, item or {})


def check(name="c", input="{{sample.output_text}}", reference="{{item.answer}}", operation="eq"):
    return {"type": "string_check", "name": name, "input": input, "reference": reference, "operation": operation}


# -- string_check and templates -----------------------------------------------------------------


@pytest.mark.parametrize(
    "operation, output, reference, expected",
    [
        ("eq", "42", "42", 1.0),
        ("eq", "42 ", "42", 0.0),  # no trimming: eq is exact
        ("ne", "41", "42", 1.0),
        ("ne", "42", "42", 0.0),
        ("like", "Answer: 42", "42", 1.0),
        ("like", "answer: 42", "Answer", 0.0),  # like is case-sensitive
        ("ilike", "answer: 42", "ANSWER", 1.0),
        ("ilike", "answer: 41", "42", 0.0),
    ],
)
def test_string_check_operations(operation, output, reference, expected):
    result = grade(check(operation=operation), output, {"answer": reference})
    assert result.ok and result.reward == expected and result.sub_rewards == {"c": expected}


def test_templates_reach_into_output_json_and_nested_items():
    sample = make_sample('{"city": "Paris", "tags": ["a", "b"]}')
    item = {"gold": {"city": "Paris"}, "n": 3}
    assert render("{{ sample.output_json.city }}|{{item.gold.city}}|{{item.n}}", sample, item) == "Paris|Paris|3"
    assert render("{{sample.output_json.tags.1}}", sample, item) == "b"
    assert render("{{item.gold}}", sample, item) == '{"city": "Paris"}'  # non-strings as JSON
    with pytest.raises(TemplateError, match="'missing'"):
        render("{{item.missing}}", sample, item)
    assert make_sample("not json")["output_json"] is None


def test_a_missing_item_field_is_a_counted_error_with_reward_zero():
    result = grade(check(reference="{{item.answer}}"), "42", {"other": 1})
    assert (result.reward, result.error) == (0.0, "invalid_variable_error")
    assert "'answer'" in result.details
    assert item_fields(parse_grader(check(input="{{item.q}} {{sample.output_text}}"))) == {"q", "answer"}


def test_bad_grader_objects_are_refused_by_path():
    with pytest.raises(TuneryError, match="unknown grader type 'regex'"):
        parse_grader({"type": "regex", "name": "x"})
    with pytest.raises(TuneryError, match=r"operation: Input should be"):
        parse_grader(check(operation="contains"))
    with pytest.raises(TuneryError, match="refrence: unknown field"):
        parse_grader({**check(), "refrence": "x"})
    with pytest.raises(TuneryError, match="passing_labels"):
        parse_grader(
            {"type": "label_model", "name": "l", "model": "m", "input": [{"role": "user", "content": "x"}],
             "labels": ["a"], "passing_labels": ["b"]}
        )  # fmt: skip


# -- text_similarity: every metric, hand-worked ---------------------------------------------------


@pytest.mark.parametrize(
    "metric, output, reference, expected",
    [
        ("fuzzy_match", "kitten", "sitting", 8 / 13),  # Indel: 2 × 4 common characters / 13
        ("fuzzy_match", "same", "same", 1.0),
        ("bleu", "a b c d e f", "a b c d e f", 1.0),
        # all n-gram precisions 1; brevity penalty exp(1 - 6/5)
        ("bleu", "a b c d e", "a b c d e f", math.exp(-0.2)),
        # GLEU = min(precision, recall) over 1..4-grams: 14 matched of 14 produced, of 18 in the reference
        ("gleu", "a b c d e", "a b c d e f", 14 / 18),
        # 3 matches in one chunk: F = 1, penalty 0.5 · (1/3)^3
        ("meteor", "a b c", "a b c", 1 - 0.5 * (1 / 3) ** 3),
        ("meteor", "cats", "cat", 0.5),  # a Porter-stem match; one chunk of one: penalty 0.5
        ("rouge_1", "the cat sat", "the cat sat down", 6 / 7),  # P 3/3, R 3/4
        ("rouge_2", "the cat sat", "the cat sat down", 0.8),  # P 2/2, R 2/3
        ("rouge_3", "the cat sat", "the cat sat down", 2 / 3),  # P 1/1, R 1/2
        ("rouge_4", "the cat sat", "the cat sat down", 0.0),  # no 4-gram in the answer
        ("rouge_5", "a b c d e", "a b c d e", 1.0),
        ("rouge_l", "the cat sat", "the cat sat down", 6 / 7),  # LCS 3
        ("rouge_l", "sat the cat", "the cat sat", 2 / 3),  # LCS 2 of 3 each way
    ],
)
def test_text_similarity_metrics(metric, output, reference, expected):
    assert similarity(metric, output, reference) == pytest.approx(expected, abs=1e-6)
    grader = {"type": "text_similarity", "name": "s", "input": "{{sample.output_text}}",
              "reference": reference, "evaluation_metric": metric}  # fmt: skip
    assert grade(grader, output).reward == pytest.approx(expected, abs=1e-6)


def test_cosine_uses_the_offline_sentence_encoder():
    assert similarity("cosine", "The cat sat on the mat.", "The cat sat on the mat.") == pytest.approx(1.0, abs=1e-5)
    near = similarity("cosine", "The cat sat on the mat.", "A cat was sitting on a mat.")
    far = similarity("cosine", "The cat sat on the mat.", "Quarterly revenue grew by four percent.")
    assert 0.5 < near < 1.0 and far < near


# -- multi and its formula ------------------------------------------------------------------------


def test_multi_combines_named_sub_graders_by_a_hand_worked_formula():
    grader = {
        "type": "multi",
        "name": "format_and_answer",
        "graders": {
            "fmt": check(name="fmt", input="{{sample.output_text}}", reference="Answer:", operation="like"),
            "right": check(name="right", input="{{sample.output_text}}", reference="{{item.answer}}", operation="like"),
            "sim": {
                "type": "text_similarity",
                "name": "sim",
                "input": "{{sample.output_text}}",
                "reference": "Answer: {{item.answer}}",
                "evaluation_metric": "fuzzy_match",
            },
        },  # fmt: skip
        "calculate_output": "0.25 * fmt + 0.5 * right + 0.25 * (sim ^ 2)",
    }
    result = grade(grader, "Answer: 12", {"answer": "12"})
    assert result.sub_rewards == {"fmt": 1.0, "right": 1.0, "sim": 1.0} and result.reward == 1.0
    # "answer 12" vs "Answer: 12": fmt 0, right 1, fuzzy 2·8/19 (8 common: "nswer 12"; a≠A, no colon)
    result = grade(grader, "answer 12", {"answer": "12"})
    sim = 16 / 19
    assert result.reward == pytest.approx(0.5 + 0.25 * sim**2)
    # One sub-grader, as the client's types have it: named by its `name`
    single = {"type": "multi", "name": "m", "graders": check(name="ok"), "calculate_output": "1 - ok"}
    assert grade(single, "7", {"answer": "7"}).reward == 0.0


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("a + b * 2", 7.0),
        ("(a + b) / 2", 2.0),
        ("2 ^ 3 - 2 ** 3", 0.0),
        ("min(a, b) + max(a, b, 10) + abs(-a)", 12.0),
        ("floor(2.7) + ceil(0.2) + sqrt(16) + log(exp(2))", 9.0),
        ("-a + +b", 2.0),
    ],
)
def test_formula_arithmetic(formula, expected):
    assert evaluate_formula(formula, {"a": 1.0, "b": 3.0}) == pytest.approx(expected)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("__import__('os').system('true')", "is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("a.__class__", "is not allowed"),
        ("c + 1", "unknown name 'c'"),
        ("'a' + 'b'", "is not allowed"),
        ("a if b else 1", "is not allowed"),
        ("[a][0]", "is not allowed"),
        ("lambda: 1", "is not allowed"),
        ("a +", "not an arithmetic expression"),
    ],
)
def test_formula_refuses_anything_but_arithmetic(formula, message):
    with pytest.raises(FormulaError, match=message):
        check_formula(formula, {"a", "b"})


def test_multi_with_a_bad_formula_is_refused_when_loaded_and_division_by_zero_is_a_sample_error():
    with pytest.raises(TuneryError, match="unknown name 'nope'"):
        parse_grader({"type": "multi", "name": "m", "graders": {"a": check()}, "calculate_output": "a + nope"})
    result = grade(
        {"type": "multi", "name": "m", "graders": {"a": check()}, "calculate_output": "1 / a"}, "x", {"answer": "y"}
    )
    assert (result.reward, result.error) == (0.0, "formula_parse_error")


# -- python: the user's grade(sample, item) in a fenced process ----------------------------------

SOURCE = """
import os, socket
def grade(sample, item):
    kind = item["kind"]
    if kind == "answer":
        return 1.0 if sample["output_text"].strip().endswith(str(item["answer"])) else 0.0
    if kind == "json":
        return float(sample["output_json"]["x"])
    if kind == "network":
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    if kind == "read":
        return len(open(item["path"]).read())
    if kind == "list_home":
        return len(os.listdir(item["path"]))
    if kind == "write":
        open(item["path"], "w").write("pwned")
    if kind == "scratch":
        open("notes.txt", "w").write("ok")
        return len(open("notes.txt").read())
    if kind == "loop":
        while True:
            pass
    if kind == "text":
        return "yes"
    if kind == "nan":
        return float("nan")
    if kind == "raise":
        raise ValueError("bad sample")
    if kind == "exit":
        os._exit(3)
    if kind == "memory":
        return len(bytearray(4 << 30))
    if kind == "environment":
        return float(len([k for k in os.environ if "TUNERY" in k]))
"""


@pytest.fixture(scope="module")
def python_grading():
    grader = parse_grader({"type": "python", "name": "py", "source": SOURCE})
    with Grading(grader, workers=2, python_time_limit_s=1.5) as running:
        yield running


def test_python_grader_scores_answers(python_grading):
    assert python_grading.grade("so 12", {"kind": "answer", "answer": 12}).reward == 1.0
    assert python_grading.grade("so 13", {"kind": "answer", "answer": 12}).reward == 0.0
    assert python_grading.grade('{"x": 0.25}', {"kind": "json"}).reward == 0.25
    assert python_grading.grade("", {"kind": "scratch"}).reward == 2.0  # its own scratch dir is writable
    assert python_grading.grade("", {"kind": "environment"}).reward == 0.0  # none of tunery's settings


def test_python_sandbox_refuses_network_and_files(python_grading, tmp_path):
    from tunery.home import tunery_home

    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    cases = {
        "network": {"kind": "network"},
        "read": {"kind": "read", "path": str(secret)},
        "home": {"kind": "list_home", "path": str(tunery_home())},
        "write": {"kind": "write", "path": str(tmp_path / "out.txt")},
    }
    for name, item in cases.items():
        result = python_grading.grade("", item)
        assert (result.reward, result.error) == (0.0, "python_grader_runtime_error"), name
        assert "PermissionError" in result.details and "not allowed" in result.details, name
    assert not (tmp_path / "out.txt").exists()


def test_python_sandbox_survives_loops_crashes_and_bad_returns(python_grading):
    loop = python_grading.grade("", {"kind": "loop"})
    assert loop.error == "python_grader_runtime_error" and "timed out after 1.5 s" in loop.details
    for kind, words in [("text", "'yes', not a finite number"), ("nan", "nan, not a finite number"),
                        ("raise", "ValueError: bad sample"), ("memory", "MemoryError")]:  # fmt: skip
        result = python_grading.grade("", {"kind": kind})
        assert result.reward == 0.0 and words in result.details, kind
    crash = python_grading.grade("", {"kind": "exit"})
    assert crash.error == "python_grader_server_error" and "exited with code 3" in crash.details
    # ... and the next sample is graded by a fresh worker
    assert python_grading.grade("so 12", {"kind": "answer", "answer": 12}).reward == 1.0
    many = python_grading.grade_many(["1", "2", "3", "4"], [{"kind": "answer", "answer": n} for n in (1, 0, 3, 0)])
    assert [r.reward for r in many] == [1.0, 0.0, 1.0, 0.0]


def test_python_source_without_grade_is_refused_at_check():
    with Grading(parse_grader({"type": "python", "name": "p", "source": "def score(s, i): return 1"})) as running:
        with pytest.raises(TuneryError, match="defines no grade"):
            running.check()
        assert running.grade("x", {}).error == "python_grader_runtime_error"


# -- score_model and label_model through a real OpenAI-compatible endpoint -------------------------


class ScoringModel(BaseHTTPRequestHandler):
    """Replies to chat completions by rule: model 'scorer' says the length of the last message's
    text after 'Answer:' as a score; model 'labeler' says 'positive' when that text holds 'good'."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        text = body["messages"][-1]["content"].split("Answer:")[-1].strip()
        if body["model"] == "scorer":
            reply = json.dumps({"steps": [], "result": len(text)})
        elif body["model"] == "labeler":
            reply = "Positive." if "good" in text else "negative"
        else:
            reply = "I cannot say."
        data = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def model_endpoint(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScoringModel)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TUNERY_JUDGE_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    yield server
    server.shutdown()
    server.server_close()


def model_grader(kind: str, model: str, **extra) -> dict:
    return {
        "type": kind, "name": kind, "model": model,
        "input": [{"role": "system", "content": "Grade it."},
                  {"role": "user", "content": {"type": "input_text", "text": "Q: {{item.q}} Answer: {{sample.output_text}}"}}],
        **extra,
    }  # fmt: skip


def test_score_model_reads_the_score_within_its_range(model_endpoint):
    grader = model_grader("score_model", "scorer", range=[0, 5], sampling_params={"temperature": 0.5, "seed": 3})
    assert grade(grader, "abc", {"q": "x"}).reward == 3.0
    sent = model_endpoint.requests[-1]
    assert sent["messages"][1]["content"] == "Q: x Answer: abc" and sent["temperature"] == 0.5 and sent["seed"] == 3
    too_high = grade(grader, "abcdefg", {"q": "x"})
    assert (too_high.reward, too_high.error) == (0.0, "model_grader_parse_error")
    no_score = grade(model_grader("score_model", "rambler"), "a", {"q": "x"})
    assert no_score.error == "model_grader_parse_error"


def test_label_model_passes_on_passing_labels(model_endpoint):
    grader = model_grader("label_model", "labeler", labels=["positive", "negative"], passing_labels=["positive"])
    assert grade(grader, "a good answer", {"q": "x"}).reward == 1.0
    assert grade(grader, "a bad answer", {"q": "x"}).reward == 0.0


def test_model_graders_need_an_endpoint(monkeypatch):
    monkeypatch.delenv("TUNERY_JUDGE_BASE_URL", raising=False)
    with pytest.raises(TuneryError, match="needs a model endpoint"):
        Grading(parse_grader(model_grader("score_model", "scorer")))
