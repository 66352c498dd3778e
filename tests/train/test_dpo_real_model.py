"""DPO at its defaults on the real SmolLM2-135M-Instruct changes what the model says.

examples/signoff-prefs: the preferred answer ends with the line "— tunery", the rejected one does
not (see its README). The untuned model never signs (0/40 greedy answers to the test prompts,
`python examples/measure_base.py signoff-prefs`). Trained through the CLI with no settings at all,
as a user would, at least 36 of the 40 held-out greedy answers (generated and graded by `tunery
eval`) must end with the sign-off, stop there by themselves, and be intact: one short answer line
before the sign-off, no loop of "—" lines. 36 of 40 is the 90 % the defaults are held to.
"""

from __future__ import annotations

import json
import math

import pytest
from builders import EXAMPLES

from tunery.train.rundir import RunDir

pytestmark = pytest.mark.real_model
TASK = EXAMPLES / "signoff-prefs"
SIGN_OFF_PATTERN = "/— tunery$/"  # the whole (stripped) answer must end with the sign-off
MAX_NEW_TOKENS = 32  # the longest preferred answer is about 20 tokens


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


def signed_and_intact(answer: dict) -> bool:
    """Ends with the sign-off, stopped by itself, and the answer before it is one clean line."""
    body = answer["output"].removesuffix("— tunery").strip()
    return (
        answer["scores"]["regex"] == 1.0
        and answer["finish_reason"] == "stop"
        and bool(body)
        and "\n" not in body
        and "—" not in body
    )


def test_dpo_defaults_teach_the_signoff_and_keep_the_answers(signoff_test, tmp_path, cli):
    run = tmp_path / "dpo"
    result = cli("train", "--method", "dpo", "--data", TASK / "train.jsonl", "--output", run, timeout=2400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RPO (Pang et al. 2024)" in result.stderr  # every DPO default printed with its reason
    first = next(r for r in RunDir(run).read_metrics() if r["type"] == "train")
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-4)  # policy = reference at step 1
    assert first["train_loss"] > math.log(2)  # log 2 plus the chosen answers' NLL (nll_weight=1)

    output = tmp_path / "tuned.json"
    evaluated = cli(
        "eval", "--adapter", run, "--data", signoff_test, "--graders", "regex", "--no-loss",
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--output", output, "--json",
        timeout=900,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    answers = [json.loads(line) for line in output.with_suffix(".examples.jsonl").read_text().splitlines()]
    good = sum(signed_and_intact(a) for a in answers)
    print(f"signed, stopped and intact: {good}/{len(answers)}")
    assert good >= 36, [a["output"] for a in answers if not signed_and_intact(a)]
