"""`--workers 2`: two jobs train at once on a share of the cores each, the rest wait first in, first
out, and a trainer killed from outside (as the kernel's out-of-memory killer does) fails its job
with `out_of_memory`."""

from __future__ import annotations

import os
import signal

import pytest
from serving import wait_for_event, wait_for_status

from tunery.hardware import cpu_threads
from tunery.store import open_store

LONG = {
    "type": "supervised",
    "supervised": {"hyperparameters": {"n_epochs": 1000, "batch_size": 4}, "tunery": {"save_every": 100000}},
}


@pytest.fixture(scope="module")
def server(make_server):
    return make_server(workers=2)


def test_two_slots_run_two_jobs_and_the_queue_is_fifo(server, chat_data):
    alpha = server.client()
    train = alpha.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    jobs = [alpha.fine_tuning.jobs.create(model="tiny", training_file=train.id, method=LONG) for _ in range(4)]
    first, second, third, fourth = (j.id for j in jobs)
    for job_id in (first, second):
        wait_for_event(alpha, job_id, "Step 2/")  # both train at the same time
    assert [alpha.fine_tuning.jobs.retrieve(j).status for j in (first, second, third, fourth)] == [
        "running",
        "running",
        "queued",
        "queued",
    ]
    # The two trainers share the cores instead of each taking all of them.
    store = open_store(server.home / "tunery.db")
    for job_id in (first, second):
        environ = open(f"/proc/{store.get_job(job_id).trainer_pid}/environ", "rb").read().split(b"\0")
        assert f"OMP_NUM_THREADS={cpu_threads(processes=2)}".encode() in environ

    # Cancel frees a slot: the oldest queued job takes it, the newer one keeps waiting.
    assert alpha.fine_tuning.jobs.cancel(first).status == "cancelled"
    wait_for_event(alpha, first, "Training stopped at step")
    wait_for_event(alpha, third, "Fine-tuning job started")
    assert alpha.fine_tuning.jobs.retrieve(fourth).status == "queued"

    # The kernel's OOM killer sends SIGKILL: the job fails with out_of_memory, and the slot frees.
    pid = store.get_job(second).trainer_pid
    assert pid and str(second).encode() in open(f"/proc/{pid}/cmdline", "rb").read()
    os.kill(pid, signal.SIGKILL)
    failed = wait_for_status(alpha, second, {"failed", "succeeded", "cancelled"}, timeout=60)
    assert failed.status == "failed" and failed.error.code == "out_of_memory"
    assert "SIGKILL" in failed.error.message and failed.fine_tuned_model is None
    wait_for_event(alpha, fourth, "Fine-tuning job started")

    for job_id in (third, fourth):
        alpha.fine_tuning.jobs.cancel(job_id)
        wait_for_event(alpha, job_id, "Training stopped")
