"""`tunery compare` end to end on the bundled support-ticket task, on a small subset, with the real
SmolLM2: a short LoRA run through `tunery train`, then compare as `make demo` runs it (default
5 shots from the full training file, both forgetting measures, the printed table), with the
forgetting sets sampled to 4 items a skill to keep the test short."""

from __future__ import annotations

import json
import re

import pytest
from builders import EXAMPLES

pytestmark = pytest.mark.real_model
TASK = EXAMPLES / "support-tickets"
N_HELDOUT = 6
PER_SKILL = 4


def first_lines(source, target, n):
    with source.open() as lines:
        target.write_text("".join(next(lines) for _ in range(n)))
    return target


def test_compare_on_the_bundled_task(cli, smollm2_dir, tmp_path):
    train_subset = first_lines(TASK / "train.jsonl", tmp_path / "train.jsonl", 40)
    heldout = first_lines(TASK / "test.jsonl", tmp_path / "test.jsonl", N_HELDOUT)
    run = tmp_path / "run"
    trained = cli(
        "train", "--data", train_subset, "--output", run,
        "n_epochs=1", "batch_size=8", "final_eval=false", timeout=1200,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]

    out = run / "compare-report.json"
    result = cli(
        "compare", "--tuned", run, "--train", TASK / "train.jsonl", "--data", heldout, "--output", out,
        "--forgetting-sample", PER_SKILL, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout
    assert re.search(r"│ zero_shot .*\n│ few_shot .*\n│ tuned ", printed), printed
    report = json.loads(out.read_text())
    assert re.search(rf"^verdict: {re.escape(report['verdict'][:40])}", printed, re.M), printed
    assert f"forgetting: {report['forgetting']['verdict'][:30]}" in printed

    systems = report["systems"]
    assert report["shots"] == 5 and report["primary"] == "exact"
    assert report["base"].endswith("smollm2-135m-instruct")  # the base the run recorded
    assert all(s["n"] == N_HELDOUT and s["graders"] == ["exact", "normalized"] for s in systems.values())
    # The untuned model never answers with a bare label zero-shot (0/60 on the full set, README).
    assert systems["zero_shot"]["metrics"]["exact"]["mean"] == 0.0
    # Five training steps already make the labels far more likely (measured: 0.62 vs 5.29 nats/token).
    assert systems["tuned"]["loss"]["loss"] < 0.5 * systems["zero_shot"]["loss"]["loss"]
    assert report["verdict"].startswith(("fine-tuning beats ", "prompting is enough here"))
    tokens = report["prompt_tokens"]
    assert tokens["few_shot"] > tokens["tuned"] == tokens["zero_shot"]
    probe = report["forgetting"]
    assert probe["n"] == 8 * PER_SKILL and len(probe["by_skill"]) == 8
    # Five LoRA steps move the distribution measurably on the base's own answers to general prompts.
    shift = report["distribution"]
    assert shift["n"] >= 5 * PER_SKILL and shift["kl"]["low"] > 0 and len(shift["by_skill"]) == 6
    assert f"distribution: {shift['verdict'][:30]}" in printed

    answers = [json.loads(line) for line in out.with_name("compare-report.examples.jsonl").read_text().splitlines()]
    few_shot = [a for a in answers if a["system"] == "few_shot"]
    assert len(few_shot) == N_HELDOUT and len(answers) == 3 * N_HELDOUT + 8 * PER_SKILL
    questions = {json.loads(line)["messages"][1]["content"] for line in heldout.read_text().splitlines()}
    for answer in few_shot:
        shots = [m["content"] for m in answer["prompt"][1:-1] if m["role"] == "user"]
        assert len(shots) == 5 and not questions & set(shots)
        assert answer["prompt"][0]["role"] == "system" and answer["prompt"][-1]["content"] in questions
