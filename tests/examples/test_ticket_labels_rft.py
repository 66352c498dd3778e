"""The bundled ticket-labels RFT task: valid prompts for its grader, held-out messages that training
never shows, files the generator reproduces, and a grader that pays the exact label in full and a
reply naming it among other words in part."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tunery.data.rft import validate_rft_file
from tunery.graders.grading import Grading, item_fields, pass_threshold
from tunery.graders.objects import load_grader

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


def test_grader_pays_the_exact_label_and_part_for_naming_it():
    grader = load_grader(TASK / "grader.json")
    answers = ["billing.refund", "Billing.Refund, I think.", "billing.invoice", "I'm sorry to hear that!"]
    with Grading(grader) as grading:
        rewards = [r.reward for r in grading.grade_many(answers, [{"label": "billing.refund"}] * 4)]
    assert rewards == [1.0, 0.2, 0.0, 0.0]
    assert pass_threshold(grader) == 1.0  # only the exact label passes
