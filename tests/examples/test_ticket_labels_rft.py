"""The bundled ticket-labels RFT task: valid prompts for its grader, held-out messages that training
never shows, files the generator reproduces, a grader that pays the right label alone and nothing
else, and the default recipe's held-out gain on the real model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunery.data.rft import validate_rft_file
from tunery.eval.stats import bootstrap_ci
from tunery.graders.grading import Grading, item_fields, pass_threshold
from tunery.graders.objects import load_grader
from tunery.train.rundir import RunDir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TASK = EXAMPLES / "ticket-labels-rft"
LABELS = ["billing.refund", "billing.invoice", "account.login", "account.delete", "shipping.delay",
          "shipping.address", "product.defect", "other"]  # fmt: skip


def test_files_are_valid_disjoint_and_reproducible(tmp_path):
    grader = load_grader(TASK / "grader.json")
    assert item_fields(grader) == {"label"}
    train, issues = validate_rft_file(TASK / "prompts.jsonl", {"label"})
    held_out, more = validate_rft_file(TASK / "heldout.jsonl", {"label"})
    assert not issues and not more and (len(train), len(held_out)) == (32, 100)
    messages = lambda rows: {r.messages[-1]["content"] for r in rows}  # noqa: E731
    shots = train[0].messages[1:-1]  # one solved example per label, the same in every conversation
    assert all(r.messages[1:-1] == shots for r in train + held_out)
    assert sorted(m["content"] for m in shots if m["role"] == "assistant") == sorted(LABELS)
    asked = {m["content"] for m in shots if m["role"] == "user"}
    assert not messages(train) & messages(held_out) and not asked & (messages(train) | messages(held_out))
    assert all(r.messages[-1]["role"] == "user" for r in train + held_out)
    labels = [r.item["label"] for r in train]
    assert {labels.count(label) for label in labels} == {4}  # 8 labels, 4 prompts each

    copy = tmp_path / "examples"
    (copy / "ticket-labels-rft").mkdir(parents=True)
    (copy / "support-tickets").symlink_to(EXAMPLES / "support-tickets")
    (copy / "ticket-labels-rft" / "generate.py").write_text((TASK / "generate.py").read_text())
    subprocess.run([sys.executable, str(copy / "ticket-labels-rft" / "generate.py")], check=True)
    for name in ("prompts.jsonl", "heldout.jsonl", "grader.json"):
        assert (copy / "ticket-labels-rft" / name).read_text() == (TASK / name).read_text(), name


def test_grader_pays_the_right_label_alone_and_nothing_else():
    grader = load_grader(TASK / "grader.json")
    answers = ["billing.refund", "Billing.Refund, I think.", "billing.invoice", "billing.refund.", "I'm sorry!"]
    with Grading(grader) as grading:
        rewards = [r.reward for r in grading.grade_many(answers, [{"label": "billing.refund"}] * len(answers))]
    assert rewards == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert pass_threshold(grader) == 1.0


@pytest.mark.real_model
def test_default_recipe_lifts_the_held_out_pass_rate(tmp_path, cli):
    """RL alone, the default recipe, through the CLI: the greedy held-out pass rate of the trained
    adapter is above the base's (step 0 of the same run), with a paired bootstrap interval over the
    100 held-out prompts that excludes 0. No SFT data; the grader is the only teacher."""
    run = tmp_path / "labels"
    trained = cli(
        "train", "--method", "rft", "--data", TASK / "prompts.jsonl", "--validation", TASK / "heldout.jsonl",
        "--grader", TASK / "grader.json", "--output", run,
        timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    evals = [r for r in RunDir(run).read_metrics() if r["type"] == "valid" and "valid_passed" in r]
    base, last = evals[0], evals[-1]
    assert base["step"] == 0 and len(base["valid_passed"]) == len(last["valid_passed"]) == 100
    margin = bootstrap_ci([b - a for a, b in zip(base["valid_passed"], last["valid_passed"], strict=True)])
    assert margin.low > 0, f"held-out pass rate {base['valid_pass_rate']} -> {last['valid_pass_rate']}: {margin}"
