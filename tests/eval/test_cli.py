"""`tunery eval` and `tunery compare` end to end: the real CLI, the tiny model, a real LoRA adapter."""

from __future__ import annotations

import json
import re

import pytest

# The tiny model is 64 wide: one thread is faster than two fighting over the work.
ENV = {"OMP_NUM_THREADS": "1"}


def run_json(cli, *args, cwd=None):
    result = cli(*args, "--json", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_compare_says_fine_tuning_wins_when_it_does(cli, tiny_model_dir, ticket_files, tuned_run, tmp_path):
    out = tmp_path / "report" / "compare.json"
    report, result = run_json(
        cli,
        "compare",
        "--tuned",
        tuned_run,
        "--train",
        ticket_files["train"],
        "--data",
        ticket_files["heldout"],
        "--shots",
        "3",
        "--output",
        out,
    )
    systems = report["systems"]
    assert list(systems) == ["zero_shot", "few_shot", "tuned"]
    assert report["base"] == str(tiny_model_dir)  # taken from the run's tunery.json
    assert report["primary"] == "exact" and systems["tuned"]["graders"] == ["exact", "normalized"]
    assert report["primary_reason"] == "exact decided: the strictest metric of the task (stricter than normalized)"
    assert systems["tuned"]["metrics"]["exact"]["mean"] >= 0.75
    assert systems["zero_shot"]["metrics"]["exact"]["mean"] == 0.0  # a random model never says "billing"
    assert re.fullmatch(
        r"fine-tuning beats few-shot prompting by [01]\.\d\d \(CI [01]\.\d\d\.\.[01]\.\d\d\) on exact",
        report["verdict"],
    )
    assert systems["tuned"]["loss"]["loss"] < systems["few_shot"]["loss"]["loss"]
    # Three worked examples make every few-shot request longer than the tuned model's.
    assert (
        report["prompt_tokens"]["few_shot"] > report["prompt_tokens"]["tuned"] == report["prompt_tokens"]["zero_shot"]
    )
    assert "fewer for the tuned model" in report["token_note"]
    assert report["forgetting"]["n"] == 240 and "verdict" in report["forgetting"]
    assert report["distribution"]["n"] > 300 and report["distribution"]["kl"]["low"] >= 0
    assert "[eval] few_shot: generating 8 answers" in result.stderr
    assert "FutureWarning" not in result.stderr  # transformers deprecations are not the user's business
    # Progress of every system and of the probe: answers done of N with an ETA, as they come.
    for what, n in (("zero_shot", 8), ("few_shot", 8), ("tuned", 8), ("probe base", 240), ("probe tuned", 240)):
        assert re.search(rf"\[eval\] {what}: ░+ 0/{n} answers · ETA –", result.stderr), what
        assert re.search(rf"\[eval\] {what}: █+ {n}/{n} answers · ETA 0s", result.stderr), what

    rows = read_rows(out.with_name("compare.examples.jsonl"))
    assert [r["system"] for r in rows].count("tuned") == 8 and [r["system"] for r in rows].count(
        "forgetting_probe"
    ) == 240
    few = next(r for r in rows if r["system"] == "few_shot")
    assert {"where", "prompt", "reference", "output", "scores", "loss"} <= few.keys()
    assert len([m for m in few["prompt"] if m["role"] == "assistant"]) == 3
    assert json.loads(out.read_text())["verdict"] == report["verdict"]


def test_compare_says_prompting_is_enough_when_tuning_changed_nothing(cli, ticket_files, untrained_run, tmp_path):
    report, _ = run_json(
        cli,
        "compare",
        "--tuned",
        untrained_run,
        "--train",
        ticket_files["train"],
        "--data",
        ticket_files["heldout"],
        "--shots",
        "2",
        "--metric",
        "normalized",
        "--no-forgetting",
        "--no-loss",
        "--output",
        tmp_path / "c.json",
    )
    assert report["verdict"].startswith("prompting is enough here: the difference is within noise")
    assert report["verdict"].endswith("on normalized, CI 0.00..0.00)")
    assert report["primary_reason"] == "normalized decided: named with --metric"
    assert report["forgetting"] is None and report["systems"]["tuned"]["loss"] is None


def test_a_metric_outside_the_graders_asked_for_is_refused(cli, ticket_files, tuned_run):
    result = cli(
        "compare",
        "--tuned",
        tuned_run,
        "--train",
        ticket_files["train"],
        "--data",
        ticket_files["heldout"],
        "--graders",
        "exact",
        "--metric",
        "normalized",
        env=ENV,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--metric normalized is not among the graders asked for (exact)" in result.stderr


def test_compare_a_fully_fine_tuned_model_without_shots(cli, tiny_model_dir, ticket_files, tmp_path):
    """A model directory without adapter_config.json is a full fine-tune, loaded on its own. Here it
    is the base itself, so tuned and zero-shot answer alike; --shots 0 drops the few-shot system."""
    report, _ = run_json(
        cli,
        "compare",
        "--base",
        tiny_model_dir,
        "--tuned",
        tiny_model_dir,
        "--train",
        ticket_files["train"],
        "--data",
        ticket_files["heldout"],
        "--shots",
        "0",
        "--no-forgetting",
        "--no-loss",
        "--output",
        tmp_path / "c.json",
    )
    assert list(report["systems"]) == ["zero_shot", "tuned"] and report["baseline"] == "zero_shot"
    assert (
        report["verdict"] == "prompting is enough here: the difference is within noise (+0.00 on exact, CI 0.00..0.00)"
    )


def test_eval_of_a_run_directory_finds_its_base(cli, tiny_model_dir, ticket_files, tuned_run, tmp_path):
    out = tmp_path / "eval.json"
    report, _ = run_json(
        cli, "eval", "--adapter", tuned_run, "--data", ticket_files["heldout"], "--batch-size", "3", "--output", out
    )
    assert report["model"] == str(tiny_model_dir) and report["adapter"] == str(tuned_run / "final")
    assert report["n"] == 8
    assert report["max_new_tokens"] == 17  # longest reference "account": 6 tokens → ⌈1.5·6⌉ + 8
    assert report["loss"]["tokens"] > 0 and report["loss"]["perplexity"] == pytest.approx(
        2.718281828 ** report["loss"]["loss"]
    )
    rows = read_rows(tmp_path / "eval.examples.jsonl")
    assert len(rows) == 8 and all(set(r["scores"]) == {"exact", "normalized"} for r in rows)
    assert sum(r["scores"]["exact"] for r in rows) / 8 == report["metrics"]["exact"]["mean"]


def test_eval_with_a_custom_grader_and_an_unconfigured_judge(cli, tiny_model_dir, ticket_files, tmp_path):
    (tmp_path / "my_graders.py").write_text("def always_half(output, reference):\n    return 0.5\n")
    report, result = run_json(
        cli,
        "eval",
        "--model",
        tiny_model_dir,
        "--data",
        ticket_files["heldout"],
        "--graders",
        "my_graders:always_half,judge",
        "--max-new-tokens",
        "4",
        "--no-loss",
        "--output",
        tmp_path / "e.json",
        cwd=tmp_path,
    )
    assert report["metrics"] == {"my_graders:always_half": {"mean": 0.5, "low": 0.5, "high": 0.5}}
    assert report["skipped"]["judge"].startswith("judge skipped: no judge endpoint is configured")
    assert report["max_new_tokens"] == 4 and report["loss"] is None


def test_eval_prints_a_table_and_where_the_report_went(cli, tiny_model_dir, ticket_files, tuned_run, tmp_path):
    """Without --json: the title on one line, the metrics and the loss with intervals, the judge's
    skip message, then the two files, whose summary says the same as the table."""
    out = tmp_path / "table.json"
    env = {**ENV, "TUNERY_JUDGE_BASE_URL": "", "TUNERY_JUDGE_MODEL": ""}
    args = ["eval", "--adapter", tuned_run, "--data", ticket_files["heldout"], "--graders", "exact,judge"]
    result = cli(*args, "--output", out, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    title = result.stdout.split("┏")[0]  # rich wraps it at the terminal width (80 in a pipe)
    assert (
        " ".join(title.split()) == f"{tiny_model_dir} + {tuned_run / 'final'} on {ticket_files['heldout']} (8 examples)"
    )
    report = json.loads(out.read_text())
    exact = report["metrics"]["exact"]
    assert f"│ exact             │ {exact['mean']:.3f} ({exact['low']:.2f}..{exact['high']:.2f})" in result.stdout
    assert re.search(r"│ loss \(nats/token\) │ \d\.\d{3} \(\d\.\d{3}\.\.\d\.\d{3}\)", result.stdout)
    assert "judge: judge skipped: no judge endpoint is configured" in result.stdout
    assert lines[-2:] == [f"summary: {out}", f"answers: {tmp_path / 'table.examples.jsonl'}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--data", "{heldout}"], "error: nothing to evaluate"),
        (["eval", "--adapter", "{tmp}/nowhere", "--data", "{heldout}"], "is not a directory"),
        (["eval", "--adapter", "{tmp}", "--data", "{heldout}"], "holds neither adapter_config.json nor config.json"),
        (
            ["eval", "--model", "{model}", "--data", "{heldout}", "--graders", "json_equal"],
            "needs references JSON, but the reference at",
        ),
        (["eval", "--model", "{model}", "--data", "{tmp}/missing.jsonl"], "cannot read"),
        (
            ["compare", "--tuned", "{run}", "--train", "{heldout}", "--data", "{heldout}"],
            "0 examples that are not in the held-out set; 5 shots",
        ),
    ],
)
def test_mistakes_get_one_clear_error_line(cli, tiny_model_dir, ticket_files, untrained_run, tmp_path, args, message):
    values = {"heldout": ticket_files["heldout"], "tmp": tmp_path, "model": tiny_model_dir, "run": untrained_run}
    result = cli(*[a.format(**values) for a in args], env=ENV)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
