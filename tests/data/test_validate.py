"""`tunery validate`: every rule fed a real malformed file through the real CLI, plus the stats,
the --show view, the bounded summary of a huge bad file, and the promise never to import torch.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunery.data.jsonl import MAX_LINE_BYTES
from tunery.data.rules import CODES
from tunery.data.validate import summarize, validate_file
from tunery.train.plan import auto_epochs

REPO = Path(__file__).resolve().parents[2]


def user(text: str = "What is the capital of France?") -> dict:
    return {"role": "user", "content": text}


def assistant(text: str = "Paris.", **extra) -> dict:
    return {"role": "assistant", "content": text, **extra}


def chat(i: int, *messages: dict) -> dict:
    """A valid example, unique by `i`, unless `messages` says otherwise."""
    return {"messages": list(messages) or [user(f"Question {i}?"), assistant(f"Answer {i}.")]}


def preference(i: int, preferred: str = "Short.", rejected: str = "A long rambling answer.") -> dict:
    return {
        "input": {"messages": [user(f"Question {i}?")]},
        "preferred_output": [assistant(preferred)],
        "non_preferred_output": [assistant(rejected)],
    }


def write(path: Path, rows: list) -> Path:
    """rows: dicts/lists (dumped as JSON), str (written as is) or bytes."""
    data = b"".join(
        r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in rows
    )
    path.write_bytes(data)
    return path


def with_good(bad: list, *, good: int = 11, make=chat) -> list:
    """`good` valid examples, then `bad`: bad row k lands on line good + k + 1."""
    return [make(i) for i in range(good)] + bad


def run_json(cli, *args) -> tuple[int, dict]:
    result = cli("validate", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def found(report: dict) -> set[tuple[str, int | None]]:
    return {(i["code"], i["line"]) for i in report["issues"]}


# --- one rule, one malformed file, through the CLI -----------------------------------------------
# (case id, rows of the file, expected (code, line) issues, exit code)

L = 12  # the first line after with_good's 11 valid examples
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}

CASES = [
    ("data_type_line", with_good([["a", "list"]]), [("data_type", L)], 1),
    ("data_type_message", with_good([chat(0, "hello", assistant())]), [("data_type", L)], 1),
    ("missing_messages_list", with_good([{"prompt": "x", "completion": "y"}]), [("missing_messages_list", L)], 1),
    ("empty_messages_list", with_good([{"messages": []}]), [("missing_messages_list", L)], 1),
    ("message_missing_role", with_good([chat(0, {"content": "hi"}, assistant())]), [("message_missing_key", L)], 1),
    ("message_missing_content", with_good([chat(0, {"role": "user"}, assistant())]), [("message_missing_key", L)], 1),
    (
        "message_unrecognized_key",
        with_good([chat(0, user(), assistant(tone="dry"))]),
        [("message_unrecognized_key", L)],
        1,
    ),
    (
        "unrecognized_role",
        with_good([chat(0, {"role": "human", "content": "hi"}, assistant())]),
        [("unrecognized_role", L)],
        1,
    ),
    ("missing_content_empty", with_good([chat(0, user(""), assistant())]), [("missing_content", L)], 1),
    ("missing_content_number", with_good([chat(0, user(), assistant(42))]), [("missing_content", L)], 1),
    ("missing_content_null_without_tools", with_good([chat(0, user(), assistant(None))]), [("missing_content", L)], 1),
    ("example_missing_assistant_message", with_good([chat(0, user())]), [("example_missing_assistant_message", L)], 1),
    ("invalid_utf8", with_good([b'{"messages": "caf\xe9"}\n']), [("invalid_utf8", L)], 1),
    # a JSON escape of half a surrogate pair parses, but is no character: the tokenizer refuses it
    ("lone_surrogate", with_good([chat(0, user("bad \ud800 here"), assistant())]), [("invalid_utf8", L)], 1),
    ("roles_user_user", with_good([chat(0, user(), user("again"), assistant())]), [("roles_not_alternating", L)], 1),
    (
        "roles_assistant_assistant",
        with_good([chat(0, user(), assistant(), assistant("More."))]),
        [("roles_not_alternating", L)],
        1,
    ),
    (
        "roles_tool_without_call",
        with_good([chat(0, user(), {"role": "tool", "content": "22C"}, assistant())]),
        [("roles_not_alternating", L)],
        1,
    ),
    ("weight_half", with_good([chat(0, user(), assistant(weight=0.5))]), [("invalid_weight", L)], 1),
    (
        "tool_calls_arguments_not_json",
        with_good(
            [
                chat(
                    0,
                    user(),
                    assistant(None, tool_calls=[{**TOOL_CALL, "function": {"name": "w", "arguments": "{city"}}]),
                )
            ]
        ),
        [("invalid_tool_calls", L)],
        1,
    ),
    (
        "tool_calls_arguments_an_object",
        with_good(
            [chat(0, user(), assistant(None, tool_calls=[{**TOOL_CALL, "function": {"name": "w", "arguments": {}}}]))]
        ),
        [("invalid_tool_calls", L)],
        1,
    ),
    (
        "tool_calls_without_name",
        with_good([chat(0, user(), assistant(None, tool_calls=[{"id": "c", "type": "function", "function": {}}]))]),
        [("invalid_tool_calls", L)],
        1,
    ),
    (
        "tool_calls_on_a_user_message",
        with_good([chat(0, {**user(), "tool_calls": [TOOL_CALL]}, assistant())]),
        [("invalid_tool_calls", L)],
        1,
    ),
    ("tools_not_a_list", with_good([{**chat(0), "tools": {"name": "weather"}}]), [("invalid_tools", L)], 1),
    (
        "tools_without_function_name",
        with_good([{**chat(0), "tools": [{"type": "function", "function": {"description": "x"}}]}]),
        [("invalid_tools", L)],
        1,
    ),
    (
        "preference_tools_parameters_not_object",
        with_good(
            [
                {
                    **preference(0),
                    "input": {
                        **preference(0)["input"],
                        "tools": [{"type": "function", "function": {"name": "w", "parameters": "x"}}],
                    },
                }
            ],
            make=preference,
        ),
        [("invalid_tools", L)],
        1,
    ),
    ("weight_true", with_good([chat(0, user(), assistant(weight=True))]), [("invalid_weight", L)], 1),
    (
        "no_trainable_messages",
        with_good([chat(0, user(), assistant(weight=0), user("And?"), assistant("More.", weight=0))]),
        [("no_trainable_messages", L)],
        1,
    ),
    (
        "preference_two_outputs",
        with_good([{**preference(0), "preferred_output": [assistant("A"), assistant("B")]}], make=preference),
        [("invalid_preference_output", L)],
        1,
    ),
    (
        "preference_output_not_assistant",
        with_good([{**preference(0), "non_preferred_output": [user("B")]}], make=preference),
        [("invalid_preference_output", L)],
        1,
    ),
    (
        "preference_output_missing",
        with_good([{"input": preference(0)["input"], "preferred_output": [assistant()]}], make=preference),
        [("invalid_preference_output", L)],
        1,
    ),
    (
        "identical_preference_outputs",
        with_good([preference(0, "Same.", "Same.")], make=preference),
        [("identical_preference_outputs", L)],
        1,
    ),
    ("mixed_formats", with_good([preference(0)]), [("mixed_formats", L)], 1),
    ("too_few_examples", [chat(i) for i in range(3)], [("too_few_examples", None)], 1),
    ("empty_file", [], [("empty_file", None)], 1),
    ("blank_lines_only", ["", "  ", ""], [("empty_file", None)], 1),
    # warnings only: still valid
    ("empty_line_in_middle", [chat(0), "", "   ", *[chat(i) for i in range(1, 11)], ""], [("empty_line", 2)], 0),
    (
        "duplicate_example",
        with_good([chat(3)]),
        [("duplicate_example", L)],
        0,
    ),
    ("no_system_or_user_message", with_good([chat(0, assistant("Hello!"))]), [("no_system_or_user_message", L)], 0),
    (
        "weight_not_on_assistant",
        with_good([chat(0, {**user(), "weight": 0}, assistant())]),
        [("weight_not_on_assistant", L)],
        0,
    ),
]


@pytest.mark.parametrize("rows, expected, exit_code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_through_cli(cli, tmp_path, rows, expected, exit_code):
    path = write(tmp_path / "train.jsonl", rows)
    code, report = run_json(cli, path)
    assert code == exit_code
    assert set(expected) <= found(report)
    for issue in report["issues"]:
        assert issue["severity"] == CODES[issue["code"]]
        assert issue["message"]
    if exit_code == 0:  # nothing but the expected warnings
        assert found(report) == set(expected)


def test_every_code_is_covered_by_a_test():
    covered = {code for case in CASES for code, _ in case[2]}
    covered |= {"invalid_json", "line_too_long", "binary_file", "train_validation_overlap"}
    covered |= {"example_too_long", "template_no_eos", "template_error", "no_trained_token"}  # below, with a model
    covered |= {"special_tokens_in_content"}  # test_validate_hostile.py, with and without a model
    assert covered == set(CODES)


def test_invalid_json_has_line_and_column(cli, tmp_path):
    path = write(tmp_path / "train.jsonl", with_good(['{"messages": [{"role": "user" "content": "hi"}]}']))
    code, report = run_json(cli, path)
    assert code == 1
    (issue,) = [i for i in report["issues"] if i["code"] == "invalid_json"]
    assert (issue["line"], issue["column"]) == (L, 31)  # the quote that opens "content"
    assert "column 31" in issue["message"]


def test_data_type_names_the_json_type_found(cli, tmp_path):
    code, report = run_json(cli, write(tmp_path / "train.jsonl", with_good(["42", "1.5", '"text"', "true", "null"])))
    assert code == 1
    messages = [i["message"].split(";")[0] for i in report["issues"]]
    assert messages == [f"the line is {kind}" for kind in ("a number", "a number", "a string", "a boolean", "null")]


def test_lone_surrogate_has_its_column_and_pairs_are_fine(cli, tmp_path):
    line = '{"messages": [{"role": "user", "content": "\\ud83d\\ude00 then \\udc00"}]}'
    code, report = run_json(cli, write(tmp_path / "train.jsonl", with_good([line])))
    assert code == 1
    (issue,) = report["issues"]
    assert (issue["code"], issue["line"], issue["column"]) == ("invalid_utf8", L, line.index("\\udc00") + 1)
    # json.dumps writes an emoji as the escaped pair \ud83d\ude00: one character, valid
    emoji = with_good([chat(0, user("\U0001f600?"), assistant("\U0001f600!"))])
    code, report = run_json(cli, write(tmp_path / "emoji.jsonl", emoji))
    assert (code, report["issues"]) == (0, [])


def test_tool_calls_and_null_content_are_valid(cli, tmp_path):
    call = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 22}'}
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    rows = [
        {**chat(i, user(f"Weather {i}?"), call, result, assistant("22C and sunny.")), "tools": tools} for i in range(10)
    ]
    code, report = run_json(cli, write(tmp_path / "train.jsonl", rows))
    assert (code, report["issues"]) == (0, [])
    assert report["stats"]["messages_per_example"]["max"] == 4


def test_duplicates_ignore_key_order_and_spacing(cli, tmp_path):
    reordered = '{"messages":[{"content":"Question 2?","role":"user"},{"content":"Answer 2.","role":"assistant"}]}'
    code, report = run_json(cli, write(tmp_path / "train.jsonl", with_good([reordered])))
    assert code == 0
    (issue,) = report["issues"]
    assert (issue["code"], issue["line"]) == ("duplicate_example", L)
    assert "line 3" in issue["message"]


def test_leakage_between_training_and_validation(cli, tmp_path):
    train = write(tmp_path / "train.jsonl", [chat(i) for i in range(12)])
    valid = write(tmp_path / "valid.jsonl", [chat(100), chat(5), chat(101)])
    code, report = run_json(cli, train, "--validation", valid)
    assert code == 1
    (issue,) = report["issues"]
    assert (issue["code"], issue["line"], issue["file"]) == ("train_validation_overlap", 6, str(train))
    assert "line 2" in issue["message"]
    assert report["stats"]["validation_examples"] == 3
    # without --validation there is nothing to leak into
    assert run_json(cli, train)[0] == 0


def test_validation_file_in_another_format(cli, tmp_path):
    train = write(tmp_path / "train.jsonl", [chat(i) for i in range(12)])
    valid = write(tmp_path / "valid.jsonl", [preference(0)])
    code, report = run_json(cli, train, "--validation", valid)
    assert code == 1
    assert ("mixed_formats", None) in found(report)


# --- bad input never makes a traceback ---------------------------------------------------------


def test_giant_single_line_is_one_clear_error(cli, tmp_path):
    path = tmp_path / "train.jsonl"
    with path.open("wb") as fh:  # a 100 MB line, then a line the reader must still find
        fh.write(b'{"messages": [{"role": "user", "content": "')
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            fh.write(chunk)
        fh.write(b'"}]}\n{"broken\n')
    code, report = run_json(cli, path)
    assert code == 1
    assert {("line_too_long", 1), ("invalid_json", 2)} <= found(report)
    assert str(MAX_LINE_BYTES // 2**20) in report["issues"][0]["message"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (bytes(range(256)) * 40, "binary"),
        (gzip.compress(b'{"messages": []}\n' * 50), "gzip"),
        ('{"messages": []}\n'.encode("utf-16"), "UTF-16"),
    ],
    ids=["binary", "gzip", "utf16"],
)
def test_binary_files(cli, tmp_path, content, reason):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    code, report = run_json(cli, path)
    assert code == 1
    assert found(report) == {("binary_file", None)}
    assert reason in report["issues"][0]["message"]


def test_io_errors_exit_2(cli, tmp_path):
    for target, words in [(tmp_path, "is a directory"), (tmp_path / "nope.jsonl", "does not exist")]:
        result = cli("validate", target)
        assert result.returncode == 2
        assert result.stderr.startswith("error:") and words in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_exits_2(cli, tmp_path):
    path = write(tmp_path / "train.jsonl", [chat(0)])
    path.chmod(0)
    result = cli("validate", path)
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_reader_closing_the_pipe_is_not_a_traceback(tmp_path):
    path = write(tmp_path / "train.jsonl", ["{oops"] * 3000)  # ~750 kB of JSON, more than a pipe holds
    command = [sys.executable, "-m", "tunery", "validate", str(path), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.read(100)  # like `| head -c 100`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in stderr


def test_usage_errors_exit_2(cli, tmp_path):
    path = write(tmp_path / "train.jsonl", [chat(i) for i in range(10)])
    assert cli("validate", path, "--show", "2").returncode == 2  # --show needs --model
    assert cli("validate", path, "--max-seq-len", "0").returncode == 2


# --- a huge bad file: a bounded, readable summary --------------------------------------------------


def test_40k_bad_lines_summary_is_bounded(cli, tmp_path):
    rows = []
    for i in range(40_000):
        bot = {"messages": [{"role": "bot", "content": "hi"}, assistant()]}
        rows.append(["x"] if i % 4 == 0 else "{oops" if i % 4 == 1 else bot)
    path = write(tmp_path / "train.jsonl", rows)

    result = cli("validate", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    out = result.stdout
    assert len(out.splitlines()) < 60
    for code, count in [("data_type", "10,000"), ("invalid_json", "10,000"), ("unrecognized_role", "20,000")]:
        assert f"{code} ({count})" in out
    # one repeated message is printed once, with its first lines
    assert "lines 2, 6, 10, 14, 18, 22 …: not valid JSON at column 2" in out
    assert out.count("not valid JSON") == 1 and "39997" not in out

    # --json holds every issue
    code, report = run_json(cli, path)
    assert code == 1
    assert report["issue_counts"] == {"data_type": 10_000, "invalid_json": 10_000, "unrecognized_role": 20_000}
    assert len(report["issues"]) == 40_000 and report["issues_omitted"] == 0


def test_issue_cap_keeps_counts_exact(tmp_path):
    path = write(tmp_path / "train.jsonl", ["{oops"] * 500)
    report = validate_file(path, max_issues_per_code=20)
    assert report.issue_counts == {"invalid_json": 500}
    assert len(report.issues) == 20 and report.issues_omitted == 480
    assert not report.ok and report.error_count == 500 and report.warnings == []


# --- the Python API, as the server uses it ------------------------------------------------------


def test_api_report_and_file_untouched(tmp_path):
    path = write(tmp_path / "train.jsonl", with_good([chat(0, user())]))
    before = path.read_bytes()
    report = validate_file(path)
    assert path.read_bytes() == before
    assert not report.ok
    assert [(i.code, i.line) for i in report.errors] == [("example_missing_assistant_message", L)]
    data = report.to_dict()
    assert data["ok"] is False and data["error_count"] == 1 and data["stats"]["examples"] == 11
    assert json.loads(json.dumps(data)) == data


# --- pure functions, worked by hand -------------------------------------------------------------


@pytest.mark.parametrize(
    "n, epochs",
    [(1, 25), (4, 25), (5, 20), (10, 10), (30, 3), (33, 3), (34, 3), (8_333, 3), (8_334, 2), (12_500, 2), (25_001, 1)],
)
def test_auto_epochs(n, epochs):
    # 3 epochs unless examples × 3 leaves [100, 25000]; then 100 // n (at most 25) or 25000 // n (at least 1)
    assert auto_epochs(n) == epochs


def test_auto_epochs_needs_examples():
    with pytest.raises(ValueError):
        auto_epochs(0)


def test_summarize():
    s = summarize(list(range(1, 21)))
    # mean of 1..20 = 10.5; p95: rank 0.95 × 19 = 18.05 between 19 and 20 → 19.05
    assert (s.min, s.mean, s.p95, s.max) == (1, 10.5, 19.05, 20)
    assert summarize([]) is None
    assert summarize([7]).p95 == 7


# --- with a tokenizer ----------------------------------------------------------------------------


def test_token_stats_with_model(cli, tmp_path, tiny_model_dir):
    from tokenizers import Tokenizer

    system = {"role": "system", "content": "Be brief."}
    rows = [chat(i, system, user(f"Capital {i}?"), assistant("Paris.")) for i in range(12)]
    code, report = run_json(cli, write(tmp_path / "train.jsonl", rows), "--model", tiny_model_dir)
    assert code == 0
    stats = report["stats"]
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    answer = len(tok.encode("Paris.", add_special_tokens=False).ids)
    assert stats["tokens_per_example"]["assistant"]["mean"] == answer
    assert stats["tokens_per_example"]["system"]["max"] == len(tok.encode("Be brief.", add_special_tokens=False).ids)
    assert set(stats["tokens_per_example"]) == {"system", "user", "assistant", "total"}
    # the answer and its <|im_end|> are trained, nothing else, in each of the 12 examples
    assert stats["trained_tokens"] == 12 * (answer + 1)
    assert stats["estimated_epochs"] == 8  # auto: 12 × 3 < 100 → 100 // 12
    assert stats["estimated_trained_tokens"] == 8 * stats["trained_tokens"]
    assert stats["max_seq_len"] == 512  # the model's context length
    assert stats["messages_per_example"] == {"min": 3, "mean": 3.0, "p95": 3.0, "max": 3}


def test_example_too_long_warns_with_truncated_count(cli, tmp_path, tiny_model_dir):
    rows = with_good([chat(0, user("word " * 200), assistant())])
    path = write(tmp_path / "train.jsonl", rows)
    code, report = run_json(cli, path, "--model", tiny_model_dir, "--max-seq-len", "64")
    assert code == 0
    (issue,) = [i for i in report["issues"] if i["code"] == "example_too_long"]
    assert issue["line"] == L and issue["severity"] == "warning"
    total = int(issue["message"].split()[0])
    assert f"{total - 64} more than max_seq_len 64" in issue["message"]
    assert report["stats"]["truncated_examples"] == 1


@pytest.mark.parametrize("make", [chat, preference])
def test_an_answer_cut_away_by_max_seq_len_is_named(make, cli, tmp_path, tiny_model_dir):
    """Nothing left to train: the example (or pair) is named, with the code training drops it under."""
    long_prompt = user("word " * 200)
    row = make(0)
    if "messages" in row:
        row["messages"][0] = long_prompt
    else:
        row["input"]["messages"][0] = long_prompt
    path = write(tmp_path / "train.jsonl", with_good([row], make=make))
    code, report = run_json(cli, path, "--model", tiny_model_dir, "--max-seq-len", "64")
    assert code == 0
    (issue,) = [i for i in report["issues"] if i["code"] == "no_trained_token"]
    assert issue["line"] == L and issue["severity"] == "warning"
    assert "max_seq_len 64" in issue["message"] and "training drops it" in issue["message"]


def _model_with_template(root: Path, template: str) -> Path:
    from builders import build_tiny_tokenizer

    root.mkdir()
    build_tiny_tokenizer(root, template=template)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 256}))
    return root


def test_template_without_eos_is_an_error(cli, tmp_path):
    # ends assistant turns with a newline only: a model tuned on it would never learn to stop
    template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    model = _model_with_template(tmp_path / "model", template)
    code, report = run_json(cli, write(tmp_path / "train.jsonl", [chat(i) for i in range(12)]), "--model", model)
    assert code == 1
    assert found(report) == {("template_no_eos", 1)}
    assert "12 example(s)" in report["issues"][0]["message"]


def test_template_that_refuses_is_a_line_error(cli, tmp_path):
    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    model = _model_with_template(tmp_path / "model", template)
    rows = with_good([chat(0, {"role": "system", "content": "Be brief."}, user(), assistant())])
    code, report = run_json(cli, write(tmp_path / "train.jsonl", rows), "--model", model)
    assert code == 1
    assert found(report) == {("template_error", L)}
    assert "no system role" in report["issues"][0]["message"]


def test_show_marks_trained_tokens(cli, tmp_path, tiny_model_dir):
    def turns():
        return [user("Capital of France?"), assistant("Paris."), user("And Italy?"), assistant("Rome.", weight=0)]

    rows = [chat(i, *turns()) for i in range(12)]
    rows[1]["messages"][-1]["weight"] = 1
    rows.insert(0, ["not an example"])  # --show skips invalid lines
    result = cli("validate", write(tmp_path / "train.jsonl", rows), "--model", tiny_model_dir, "--show", "2")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "line 2 · " in out and "line 3 · " in out
    first = out[out.index("line 2 · ") : out.index("line 3 · ")]
    # both turns render; only the weight-1 reply and its end-of-turn token are marked
    assert "⟦Paris.<|im_end|>⟧" in first
    assert "Rome.<|im_end|>" in first and "⟦Rome." not in first
    assert first.count("⟦") == 1
    second = out[out.index("line 3 · ") :]
    assert "⟦Paris.<|im_end|>⟧" in second and "⟦Rome.<|im_end|>⟧" in second
    assert second.count("⟦") == 2


def test_show_in_json(cli, tmp_path, tiny_model_dir):
    path = write(tmp_path / "train.jsonl", [preference(i) for i in range(10)])
    code, report = run_json(cli, path, "--model", tiny_model_dir, "--show", "1")
    assert code == 0
    preferred, rejected = report["shown"]
    assert (preferred["which"], rejected["which"]) == ("preferred", "non-preferred")
    assert "⟦Short.<|im_end|>⟧" in preferred["text"] and preferred["text"].count("⟦") == 1
    assert "⟦A long rambling answer.<|im_end|>⟧" in rejected["text"]


# --- never torch ---------------------------------------------------------------------------------


def test_validate_never_imports_torch(tmp_path, tiny_model_dir):
    path = write(tmp_path / "train.jsonl", [chat(i) for i in range(12)])
    probe = (
        "import sys, json\n"
        "from tunery.cli import main\n"
        f"rc = main(['validate', {str(path)!r}, '--model', {str(tiny_model_dir)!r}, '--show', '1', '--json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    outcome = json.loads(result.stderr.strip().splitlines()[-1])
    assert outcome == {"rc": 0, "heavy": []}
