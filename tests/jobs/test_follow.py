"""metrics.jsonl → one OpenAI metrics event per step, emitted once the step is complete."""

from __future__ import annotations

import json

from tunery.jobs.follow import finished_checkpoints, read_metrics


def append(path, *records, partial: str = ""):
    with path.open("a") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.write(partial)


def train(step, loss, total=3):
    return {
        "type": "train",
        "step": step,
        "total_steps": total,
        "train_loss": loss,
        "train_mean_token_accuracy": 0.5,
        "tokens": 30,
        "loss_tokens": 10,
        "eta_s": 2.0,
    }


def test_a_step_waits_for_the_next_one_then_carries_its_validation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, train(1, 2.0), {"type": "valid", "step": 1, "valid_loss": 2.5, "valid_mean_token_accuracy": 0.4})
    first = read_metrics(path, 0, final=False)
    assert first.steps == [] and first.offset == 0  # step 1 may still get more records
    append(path, train(2, 1.5), partial='{"type": "train", "st')  # a line being written
    second = read_metrics(path, first.offset, final=False)
    assert [s.step for s in second.steps] == [1]
    data = second.steps[0].data
    assert data["train_loss"] == 2.0 and data["valid_loss"] == 2.5 and data["full_valid_loss"] is None
    assert second.steps[0].message == "Step 1/3: training loss=2.0000, validation loss=2.5000"
    assert second.latest_train["step"] == 2
    # The offset points at step 2's line: re-reading from it yields step 2, nothing twice.
    third = read_metrics(path, second.offset, final=True)
    assert [s.step for s in third.steps] == [2]


def test_the_final_read_includes_the_full_validation_of_the_last_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(
        path,
        train(3, 1.0),
        {"type": "full_valid", "step": 3, "full_valid_loss": 1.2, "full_valid_mean_token_accuracy": 0.7},
    )
    update = read_metrics(path, 0, final=True)
    assert update.steps[0].data["full_valid_loss"] == 1.2
    assert update.offset == path.stat().st_size


def test_a_missing_file_is_no_progress(tmp_path):
    update = read_metrics(tmp_path / "none.jsonl", 0, final=True)
    assert update.steps == [] and update.offset == 0


def test_only_checkpoints_with_a_manifest_count(tmp_path):
    (tmp_path / "checkpoints" / "step-000004").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-000004" / "tunery.json").write_text("{}")
    (tmp_path / "checkpoints" / "step-000008").mkdir()  # being written
    (tmp_path / "checkpoints" / ".tmp-step-000012-1").mkdir()
    assert list(finished_checkpoints(tmp_path)) == [4]


def test_a_checkpointed_step_is_complete_without_waiting_for_the_next(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, train(1, 2.0), train(2, 1.5))
    update = read_metrics(path, 0, final=False, complete_through=2)
    assert [s.step for s in update.steps] == [1, 2] and update.offset == path.stat().st_size


def test_the_last_step_waits_for_the_end_even_when_checkpointed(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, train(2, 1.5), train(3, 1.0))
    update = read_metrics(path, 0, final=False, complete_through=3)
    assert [s.step for s in update.steps] == [2]  # step 3 of 3 still expects its full validation
