"""Killing the server mid-job loses nothing: the job resumes from its checkpoint after a restart.

Twice on one job: first SIGKILL of the server process alone (the kernel then sends SIGTERM to
its worker, which lets the trainer checkpoint), then SIGKILL of everything at once (server,
worker and trainer: only the periodic checkpoints survive). And a worker that crashes on its
own is replaced while the server keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from serving import wait_for_event, wait_for_status


def resumed_from(alpha, job_id: str, after_step: int) -> int:
    """Wait for a restart message newer than `after_step` and return the step it resumes from."""
    event = wait_for_event(alpha, job_id, "will resume from its checkpoint at step")
    step = int(event.message.rsplit(" ", 1)[1])
    assert step >= after_step
    return step


def wait_for_checkpoint_after(alpha, job_id: str, step: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [c.step_number for c in alpha.fine_tuning.jobs.checkpoints.list(job_id)]
        if steps and max(steps) > step:
            return max(steps)
        time.sleep(0.3)
    raise AssertionError(f"no checkpoint after step {step} within {timeout}s")


def wait_for_restarts(alpha, job_id: str, count: int, timeout: float = 180) -> list:
    """The job's restart messages, newest first, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = alpha.fine_tuning.jobs.list_events(job_id, limit=200)
        restarts = [e for e in events if "will resume from its checkpoint" in e.message]
        if len(restarts) >= count:
            return restarts
        time.sleep(0.3)
    raise AssertionError(f"fewer than {count} restarts recorded within {timeout}s")


def test_a_killed_server_loses_nothing(make_server, chat_data, tmp_path_factory):
    home = tmp_path_factory.mktemp("recovery-home")
    server = make_server(workers=1, home=home)
    alpha = server.client()
    train = alpha.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    # Thousands of steps: the tiny model trains ~10 steps a second, and the job must still be
    # running at both kills. It is cancelled once both recoveries are proven.
    job = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 100, "batch_size": 2}, "tunery": {"save_every": 3}},
        },
    )
    waiting = alpha.fine_tuning.jobs.create(model="tiny", training_file=train.id)

    wait_for_event(alpha, job.id, "Checkpoint created at step 3")
    os.kill(server.proc.pid, signal.SIGKILL)  # the server process only
    server.proc.wait(30)
    server = make_server(workers=1, home=home)
    alpha = server.client()
    first = resumed_from(alpha, job.id, 3)
    assert alpha.fine_tuning.jobs.retrieve(waiting.id).status == "queued"  # queued jobs stay queued
    assert alpha.files.retrieve(train.id).status == "processed"  # and files stay

    second = wait_for_checkpoint_after(alpha, job.id, first)
    server.kill_everything()  # server, worker and trainer in one go
    server = make_server(workers=1, home=home)
    alpha = server.client()
    restarts = wait_for_restarts(alpha, job.id, 2)  # the new worker recovers right after it starts
    assert restarts[0].level == "warn"
    resumed = int(restarts[0].message.rsplit(" ", 1)[1])
    assert resumed >= second
    wait_for_checkpoint_after(alpha, job.id, resumed)  # training goes on past the second recovery

    alpha.fine_tuning.jobs.cancel(job.id)
    assert wait_for_status(alpha, job.id, {"cancelled"}).status == "cancelled"
    events = list(alpha.fine_tuning.jobs.list_events(job.id, limit=1000))
    steps = [e.data["step"] for e in reversed(events) if e.type == "metrics"]
    assert steps == list(range(1, len(steps) + 1))  # every step reported once, in order, across both kills
    assert steps[-1] > resumed
    metrics = home / "jobs" / job.id / "run" / "metrics.jsonl"
    trained = [r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if r["type"] == "train"]
    assert trained == list(range(1, len(trained) + 1)) and len(trained) >= len(steps)
    assert wait_for_status(alpha, waiting.id, {"running", "succeeded"}).status in ("running", "succeeded")
    alpha.fine_tuning.jobs.cancel(waiting.id)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_a_crashed_worker_is_replaced(make_server, tmp_path):
    server = make_server(workers=1)
    [worker] = [c for c in children(server.proc.pid) if b"jobs\0worker" in Path(f"/proc/{c}/cmdline").read_bytes()]
    os.kill(worker, signal.SIGKILL)
    alpha = server.client()
    prefs = tmp_path / "prefs.jsonl"
    pair = {
        "input": {"messages": [{"role": "user", "content": "Which is right?"}]},
        "preferred_output": [{"role": "assistant", "content": "this"}],
        "non_preferred_output": [{"role": "assistant", "content": "that"}],
    }
    prefs.write_text(
        "".join(
            json.dumps({**pair, "input": {"messages": [{"role": "user", "content": f"Q{i}"}]}}) + "\n"
            for i in range(10)
        )
    )
    uploaded = alpha.files.create(file=prefs.open("rb"), purpose="fine-tune")
    # Validating a job is the worker's work: the replacement worker does it.
    job = alpha.fine_tuning.jobs.create(model="tiny", training_file=uploaded.id)
    assert wait_for_status(alpha, job.id, {"failed"}, timeout=120).error.code == "invalid_training_file"
    assert "exited with code -9; starting a new one" in server.log.read_text()
