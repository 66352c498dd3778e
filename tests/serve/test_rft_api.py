"""Reinforcement fine-tuning through the real openai client against `tunery serve` (tiny model):
the alpha graders endpoints with OpenAI's shapes, and an RFT job from creation to chatting with
its result, with reward metrics in its events and its result CSV."""

from __future__ import annotations

import csv
import io
import json

import openai
import pytest
from serving import wait_for_status

WORDS = ["hello world", "thanks please", "answer briefly", "world hello", "please answer"]
GRADER = {
    "type": "multi",
    "name": "close_and_short",
    "graders": {
        "close": {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
                  "reference": "{{item.target}}", "evaluation_metric": "fuzzy_match"},
        "says_hello": {"type": "string_check", "name": "says_hello", "input": "{{sample.output_text}}",
                       "reference": "hello", "operation": "ilike"},
    },
    "calculate_output": "0.5 * close + 0.5 * says_hello",
}  # fmt: skip


@pytest.fixture(scope="module")
def server(make_server):
    return make_server(workers=1)


@pytest.fixture(scope="module")
def client(server):
    return server.client("sk-alpha")


def prompts(path, indices) -> object:
    rows = [
        {"messages": [{"role": "developer", "content": "Answer briefly."},
                      {"role": "user", "content": f"{WORDS[i % 5]} {i}"}], "target": WORDS[(i + 1) % 5]}
        for i in indices
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.open("rb")


def test_graders_run_and_validate_with_openai_shapes(client):
    graders = client.fine_tuning.alpha.graders
    assert graders.validate(grader=GRADER).grader.type == "multi"
    result = graders.run(grader=GRADER, model_sample="hello there", item={"target": "hello there"})
    assert result.reward == pytest.approx(1.0) and result.sub_rewards == {"close": 1.0, "says_hello": 1.0}
    assert result.metadata.name == "close_and_short" and result.metadata.type == "multi"
    assert not result.metadata.errors.invalid_variable_error

    missing = graders.run(grader=GRADER, model_sample="hello", item={"other": 1})
    assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error

    python = {
        "type": "python",
        "name": "py",
        "source": "def grade(sample, item):\n    return len(sample['output_text'])\n",
    }
    assert graders.run(grader=python, model_sample="abcd").reward == 4.0
    crash = graders.run(grader={**python, "source": "def grade(s, i):\n    raise KeyError('x')\n"}, model_sample="a")
    assert crash.reward == 0.0 and crash.metadata.errors.python_grader_runtime_error
    assert "KeyError" in crash.metadata.errors.python_grader_runtime_error_details

    with pytest.raises(openai.BadRequestError, match="unknown name 'nope'"):
        graders.validate(grader={**GRADER, "calculate_output": "close + nope"})
    with pytest.raises(openai.BadRequestError, match="defines no grade"):
        graders.validate(grader={**python, "source": "x = 1"})


def test_reinforcement_job_end_to_end(client, tmp_path):
    train = client.files.create(file=prompts(tmp_path / "train.jsonl", range(8)), purpose="fine-tune")
    valid = client.files.create(file=prompts(tmp_path / "valid.jsonl", range(100, 104)), purpose="fine-tune")
    # Prompts that end on the user turn are RFT's format: processed, not a chat file missing replies.
    assert (train.status, valid.status, train.status_details) == ("processed", "processed", None)

    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        client.fine_tuning.jobs.create(
            model="tiny", training_file=train.id,
            method={"type": "reinforcement",
                    "reinforcement": {"grader": GRADER, "hyperparameters": {"reasoning_effort": "high"}}},
        )  # fmt: skip
    bad = client.files.create(file=prompts(tmp_path / "bad.jsonl", range(3)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="rft_missing_item_field"):
        client.fine_tuning.jobs.create(
            model="tiny", training_file=bad.id,
            method={"type": "reinforcement", "reinforcement": {"grader": {**GRADER, "graders": {
                "g": {**GRADER["graders"]["close"], "reference": "{{item.nothere}}"}}, "calculate_output": "g"}}},
        )  # fmt: skip

    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        validation_file=valid.id,
        seed=7,
        method={
            "type": "reinforcement",
            "reinforcement": {
                "grader": GRADER,
                "hyperparameters": {"n_epochs": 1, "batch_size": 2, "eval_interval": 2, "compute_multiplier": 0.5},
                "tunery": {"rft": {"max_new_tokens": 6}, "lora": {"r": 4}, "save_every": 2},
            },
        },
    )
    assert job.method.type == "reinforcement"
    job = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert job.status == "succeeded", job.error

    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    steps = {e.data["step"]: e.data for e in metrics}
    assert set(steps) >= {1, 2, 3, 4}  # 8 prompts / 2 per step
    assert all(0.0 <= steps[s]["reward_mean"] <= 1.0 for s in (1, 2, 3, 4))
    assert "valid_pass_rate" in steps[2] and "mean reward" in metrics[0].message

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert {c.step_number for c in checkpoints} >= {2, 4}

    result_csv = client.files.content(job.result_files[0]).text
    rows = list(csv.DictReader(io.StringIO(result_csv)))
    assert [int(r["step"]) for r in rows][-4:] == [1, 2, 3, 4] and rows[-1]["reward_mean"] != ""

    answer = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "hello world"}], max_tokens=5
    )
    assert answer.choices[0].message.role == "assistant"
