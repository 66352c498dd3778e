"""DPO on the real SmolLM2-135M-Instruct: a short LoRA run on the bundled sign-off preferences learns them.

examples/signoff-prefs: the preferred answer ends with the line "— tunery", the rejected one does not
(see its README). After training through the CLI, as a user would:

* preference accuracy on the 40 held-out validation pairs is at least 90 %. Under chance (a policy
  that does not know the preference ranks each pair right with probability 1/2) 36 or more of 40
  has probability about 1e-7, so this cannot pass by luck; the margin below 100 % leaves room for a
  few pairs that a short run has not yet ranked;
* greedy answers to the 40 held-out test prompts, generated and graded by `tunery eval` (the regex
  grader, pattern "ends with — tunery"), end with the sign-off and stop there far more often than
  the base model's answers do.
"""

from __future__ import annotations

import json

import pytest
from builders import EXAMPLES

from tunery.train.rundir import RunDir

pytestmark = pytest.mark.real_model
TASK = EXAMPLES / "signoff-prefs"
SIGN_OFF_PATTERN = "/— tunery$/"  # the whole (stripped) answer must end with the sign-off
MAX_NEW_TOKENS = 32  # the longest preferred answer is about 20 tokens

# Two epochs of the 200 pairs. DPO alone at tunery's default DPO learning rate (1e-4) ranks the
# held-out pairs right within 25 steps but leaves greedy answers unchanged (0/40); 3e-4 for 50 steps
# is the shortest run that moved them, measured (see the README's DPO section).
TRAINING = [
    "n_epochs=2",
    "batch_size=8",
    "learning_rate=3e-4",
    "dpo.beta=0.1",
    "eval_every=50",
    "final_eval=false",
]


@pytest.fixture(scope="module")
def signoff_test(tmp_path_factory):
    """The test prompts as a chat file whose reference is the sign-off pattern, for `tunery eval`."""
    path = tmp_path_factory.mktemp("signoff") / "test.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for line in (TASK / "test.jsonl").read_text(encoding="utf-8").splitlines():
            prompt = json.loads(line)["input"]["messages"]
            reference = {"role": "assistant", "content": SIGN_OFF_PATTERN}
            fh.write(json.dumps({"messages": [*prompt, reference]}, ensure_ascii=False) + "\n")
    return path


def signed(answers: list[dict]) -> int:
    """Answers that end with the sign-off and then stop by themselves (not cut off mid-ramble)."""
    return sum(a["scores"]["regex"] == 1.0 and a["finish_reason"] == "stop" for a in answers)


def eval_answers(cli, data, output, *model) -> list[dict]:
    """Every answer `tunery eval` generated (greedy), each with its regex score and finish reason."""
    result = cli(
        "eval", *model, "--data", data, "--graders", "regex", "--no-loss",
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--output", output, "--json",
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in output.with_suffix(".examples.jsonl").read_text().splitlines()]


def test_lora_dpo_learns_the_signoff(signoff_test, tmp_path, cli):
    run = tmp_path / "dpo"
    result = cli(
        "train", "--method", "dpo", "--data", TASK / "train.jsonl", "--validation", TASK / "valid.jsonl",
        "--output", run, *TRAINING,
        timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = RunDir(run).read_metrics()
    train = [r for r in records if r["type"] == "train"]
    assert train[0]["train_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at step 1
    final = records[-1]
    assert final["type"] == "full_valid"
    assert final["full_valid_mean_token_accuracy"] >= 0.9, final

    base = eval_answers(cli, signoff_test, tmp_path / "base.json", "--model", "smollm2-135m-instruct")
    tuned = eval_answers(cli, signoff_test, tmp_path / "tuned.json", "--adapter", run)
    print(f"signed and stopped: base {signed(base)}/{len(base)}, tuned {signed(tuned)}/{len(tuned)}")
    # Measured: base 0/40, tuned 23/40. The bar leaves room for small numeric differences between
    # machines and thread counts, and still needs DPO to have moved over a third of the answers.
    assert signed(tuned) >= signed(base) + 15, (signed(base), signed(tuned), [a["output"] for a in tuned[:5]])
