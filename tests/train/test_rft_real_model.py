"""RFT through the CLI on the real SmolLM2-135M-Instruct, kept to two tiny steps.

The tiny-model tests prove the loop's arithmetic; this one proves the pieces fit on the real model
and tokenizer: the chat template renders the bundled task's prompts, the real end-of-turn token
stops rollouts, the python grader scores real answers, and the adapter it leaves is one that
`tunery grade --adapter` loads and samples. It says nothing about learning (two steps cannot);
the margin the bundled task reaches is measured in docs/rft.md.
"""

from __future__ import annotations

import json
import math

import pytest
from builders import EXAMPLES

from tunery.train.rundir import RunDir

pytestmark = pytest.mark.real_model
TASK = EXAMPLES / "arithmetic-rft"


def test_two_rft_steps_on_smollm2_leave_rewards_and_a_loadable_adapter(tmp_path, cli):
    run = tmp_path / "rft"
    trained = cli(
        "train", "--method", "rft", "--data", TASK / "prompts.jsonl", "--validation", TASK / "heldout.jsonl",
        "--grader", TASK / "grader.json", "--output", run,
        "max_steps=2", "batch_size=2", "rft.group_size=2", "rft.max_new_tokens=16", "rft.eval_samples=4", "eval_every=2",
        timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]

    records = RunDir(run).read_metrics()
    steps = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert 0.0 <= r["reward_mean"] <= 1.0 and 0.0 <= r["pass_rate"] <= 1.0
        assert r["zero_variance_fraction"] in (0.0, 0.5, 1.0)  # 2 groups per step
        assert 0 < r["completion_length"] <= 16 and r["grader_errors"] == 0
        assert math.isfinite(r["train_loss"]) and r["rollout_tokens_per_second"] > 0
    evals = [r for r in records if r["type"] == "valid" and "valid_passed" in r]
    assert [r["step"] for r in evals] == [0, 2]  # the base, then the final adapter, greedily
    assert all(len(r["valid_passed"]) == 4 for r in evals)

    graded = cli(
        "grade", "--grader", TASK / "grader.json", "--data", TASK / "heldout.jsonl", "--adapter", run,
        "--samples", "2", "--limit", "2", "--max-new-tokens", "8", "--json",
        timeout=300,
    )  # fmt: skip
    assert graded.returncode == 0, graded.stderr[-3000:]
    report = json.loads(graded.stdout)
    assert report["prompts"] == 2 and report["samples_per_prompt"] == 2
    assert len(report["samples"]) > 0 and all(0.0 <= s["reward"] <= 1.0 for s in report["samples"])
