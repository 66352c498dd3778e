"""`tunery grade` through the CLI on the tiny model: the reward distribution, pass rate, graded
samples, and the warning when the model never succeeds."""

from __future__ import annotations

import json


def write(tmp_path, grader: dict):
    rows = [{"messages": [{"role": "user", "content": f"hello world {i}"}], "target": "hello"} for i in range(3)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "g.json").write_text(json.dumps(grader))
    return tmp_path / "g.json", tmp_path / "p.jsonl"


def test_grade_reports_the_distribution_and_pass_rate(cli, tiny_model_dir, tmp_path):
    grader, data = write(
        tmp_path,
        {
            "type": "python",
            "name": "len",
            "source": "def grade(s, i):\n    return 1.0 if len(s['output_text']) % 2 == 0 else 0.0\n",
        },
    )
    result = cli("grade", "--grader", grader, "--data", data, "--model", tiny_model_dir, "--samples", "4",
                 "--max-new-tokens", "5", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["prompts"] == 3 and report["samples_per_prompt"] == 4
    assert sum(report["histogram"].values()) == 12 and set(report["histogram"]) <= {"0.00", "1.00"}
    assert report["pass_rate"] == report["histogram"].get("1.00", 0) / 12
    assert report["grader_errors"] == 0 and 1 <= len(report["samples"]) <= 4


def test_grade_warns_when_the_model_never_succeeds(cli, tiny_model_dir, tmp_path):
    grader, data = write(tmp_path, {"type": "string_check", "name": "never", "input": "{{sample.output_text}}",
                                    "reference": "no tiny model says this", "operation": "eq"})  # fmt: skip
    result = cli("grade", "--grader", grader, "--data", data, "--model", tiny_model_dir, "--samples", "2",
                 "--max-new-tokens", "4")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pass rate (reward >= 1): 0.000" in result.stdout and "line 1" in result.stdout
    assert "never succeeded" in result.stderr and "cannot learn this task alone" in result.stderr


def test_eval_takes_a_grader_object(cli, tiny_model_dir, tuned_run, ticket_files, tmp_path):
    """The grader JSON reads each answer and its whole line: here, whether the answer equals the
    line's own assistant reply, which must agree with the built-in exact grader."""
    grader = tmp_path / "same.json"
    grader.write_text(json.dumps({"type": "string_check", "name": "same_as_line", "operation": "eq",
                                  "input": "{{sample.output_text}}", "reference": "{{item.messages.2.content}}"}))  # fmt: skip
    out = tmp_path / "report.json"
    result = cli("eval", "--adapter", tuned_run, "--data", ticket_files["heldout"], "--graders", "exact",
                 "--grader", grader, "--no-loss", "--json", "--output", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["graders"] == ["exact", "same_as_line"]
    answers = [json.loads(line) for line in out.with_name("report.examples.jsonl").read_text().splitlines()]
    assert [a["scores"]["same_as_line"] for a in answers] == [a["scores"]["exact"] for a in answers]

    # RFT prompts (no assistant turn) are fine when a grader object grades them
    prompts = tmp_path / "prompts.jsonl"
    rows = [json.loads(line) for line in ticket_files["heldout"].read_text().splitlines()]
    prompts.write_text("".join(json.dumps({"messages": r["messages"][:2], "label": r["messages"][2]["content"]}) + "\n" for r in rows))  # fmt: skip
    grader.write_text(json.dumps({"type": "string_check", "name": "label", "operation": "eq",
                                  "input": "{{sample.output_text}}", "reference": "{{item.label}}"}))  # fmt: skip
    result = cli("eval", "--adapter", tuned_run, "--data", prompts, "--grader", grader, "--json", "--output", out)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["label"]["mean"] == report["metrics"]["exact"]["mean"]


def test_compare_takes_a_grader_object(cli, tuned_run, ticket_files, tmp_path):
    grader = tmp_path / "same.json"
    grader.write_text(json.dumps({"type": "string_check", "name": "same_as_line", "operation": "eq",
                                  "input": "{{sample.output_text}}", "reference": "{{item.messages.2.content}}"}))  # fmt: skip
    out = tmp_path / "compare.json"
    result = cli("compare", "--tuned", tuned_run, "--train", ticket_files["train"], "--data", ticket_files["heldout"],
                 "--shots", "2", "--grader", grader, "--json", "--output", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["primary"] == "same_as_line" and "on same_as_line" in report["verdict"]
    assert report["systems"]["tuned"]["metrics"]["same_as_line"]["mean"] >= 0.75
