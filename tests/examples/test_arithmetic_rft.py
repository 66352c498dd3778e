"""The bundled RFT task: valid prompts for its grader, no held-out prompt in training, the
generator reproduces the files, and the grader rewards exactly a correct final `Answer: N`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tunery.data.rft import validate_rft_file
from tunery.graders.grading import Grading, item_fields
from tunery.graders.objects import load_grader

TASK = Path(__file__).resolve().parents[2] / "examples" / "arithmetic-rft"


def test_files_are_valid_disjoint_and_reproducible(tmp_path):
    grader = load_grader(TASK / "grader.json")
    assert item_fields(grader) == set()  # a python grader reads item["answer"] itself
    train, issues = validate_rft_file(TASK / "prompts.jsonl", {"answer"})
    held_out, more = validate_rft_file(TASK / "heldout.jsonl", {"answer"})
    assert not issues and not more and (len(train), len(held_out)) == (48, 40)
    questions = lambda rows: {r.messages[-1]["content"] for r in rows}  # noqa: E731
    assert not questions(train) & questions(held_out)
    for row in train + held_out:
        a, op, b = row.messages[-1]["content"].removeprefix("What is ").rstrip("?").split()
        assert row.item["answer"] == (int(a) + int(b) if op == "+" else int(a) - int(b))

    copy = tmp_path / "arithmetic-rft"
    copy.mkdir()
    (copy / "generate.py").write_text((TASK / "generate.py").read_text())
    subprocess.run([sys.executable, str(copy / "generate.py")], check=True)
    for name in ("prompts.jsonl", "heldout.jsonl", "grader.json"):
        assert (copy / name).read_text() == (TASK / name).read_text(), name


def test_grader_rewards_only_a_correct_final_answer():
    with Grading(load_grader(TASK / "grader.json")) as grading:
        rewards = [
            r.reward
            for r in grading.grade_many(
                [
                    "14 + 8 = 22.\nAnswer: 22",
                    "Answer: 21",
                    "It is 22.",
                    "Answer: 20\nAnswer: 22",
                    "Answer: 22\nAnswer: 2",
                ],
                [{"answer": 22}] * 5,
            )
        ]
    assert rewards == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert json.loads((TASK / "grader.json").read_text())["type"] == "python"
