"""Many `tunery worker` processes on one PostgreSQL queue and one shared home.

Real parts throughout: the API app (in this process, over its ASGI transport), `tunery worker`
subprocesses, their `tunery train` trainers on the tiny model, and the test PostgreSQL server.
Each worker is a "host" of its own: a pid namespace (`unshare`, so the tests need root). Its
process ids mean nothing to the other workers, which must wait for its lease to run out, as
they would across machines; and one host runs one worker, so each needs a namespace anyway.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import REPO

from tunery.store import open_store

LEASE_S = 4  # short, so a takeover comes quickly; each worker renews its leases every 0.2 s
QUICK = {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 4}, "tunery": {"max_steps": 2}}}
# Long enough to be mid-run when its host is killed (after its checkpoint at step 3), short to finish.
LONG = {"max_steps": 60, "save_every": 3}


# --kill-child: when `unshare` dies, so does its namespace: the worker and its trainers.
HOST = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")


class Workers:
    """`tunery worker` processes, each on a host of its own, sharing one home and one database."""

    def __init__(self, home: Path, url: str):
        self.home, self.url = home, url
        self.hosts: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        """A new host running one worker; killing the returned process kills the whole host."""
        env = {**os.environ, "TUNERY_DATABASE_URL": self.url, "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "tunery", "worker", "--home", str(self.home)]
        argv += ["--lease", str(LEASE_S), "--poll", "0.2"]
        with (self.home.parent / f"{name}.log").open("ab") as log:
            host = subprocess.Popen([*HOST, *argv], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.hosts.append(host)
        return host

    def stop(self) -> None:
        for host in self.hosts:  # `unshare` ignores SIGTERM; the jobs are over by now anyway
            host.kill()
            host.wait(30)


@pytest.fixture
def cluster(tmp_path, make_database, tiny_model_dir):
    """(OpenAI client on the API, Workers, store): all on one fresh database and one home."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("each worker runs on a 'host' of its own, a pid namespace: needs root and unshare")
    from fastapi.testclient import TestClient
    from openai import OpenAI

    from tunery.serve.app import create_app
    from tunery.serve.settings import load_settings

    url = make_database()
    home = tmp_path / "shared-home"
    settings = load_settings(None, home=home, models={"tiny": str(tiny_model_dir)}, database_url=url)
    client = OpenAI(base_url="http://testserver/v1", api_key="local", http_client=TestClient(create_app(settings)))
    workers = Workers(home, url)
    store = open_store(url)
    yield client, workers, store
    workers.stop()
    store.close()


def wait_for(client, job_id: str, done, what: str, timeout: float):
    """Poll the job's events until `done(job, events)` returns something; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        found = done(job, list(client.fine_tuning.jobs.list_events(job_id, limit=1000)))
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{job_id}: no {what} within {timeout}s (status {job.status})")


def wait_for_status(client, job_id: str, statuses: set[str], timeout: float = 240):
    return wait_for(
        client, job_id, lambda job, _: job if job.status in statuses else None, f"status {statuses}", timeout
    )


def wait_for_event(client, job_id: str, text: str, timeout: float = 180):
    def found(_, events):
        return next((e for e in events if text in e.message), None)

    return wait_for(client, job_id, found, f"event {text!r}", timeout)


def reported_steps(client, job_id: str) -> list[int]:
    events = client.fine_tuning.jobs.list_events(job_id, limit=1000)
    return [e.data["step"] for e in reversed(list(events)) if e.type == "metrics"]


def test_several_workers_drain_one_queue_running_each_job_once(cluster, chat_data):
    client, workers, store = cluster
    training = client.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    jobs = [client.fine_tuning.jobs.create(model="tiny", training_file=training.id, method=QUICK) for _ in range(6)]
    for i in range(3):
        workers.start(f"worker-{i}")

    for job in jobs:
        assert wait_for_status(client, job.id, {"succeeded", "failed"}, timeout=300).status == "succeeded"
    records = [store.get_job(job.id) for job in jobs]
    assert [r.attempts for r in records] == [1] * len(jobs)  # no job's trainer was launched twice
    for job in jobs:
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert messages.count("Fine-tuning job started") == 1
        assert reported_steps(client, job.id) == [1, 2]
    assert len({r.worker for r in records}) > 1  # the work was shared


def test_a_killed_workers_job_is_taken_over_after_its_lease(cluster, chat_data):
    client, workers, store = cluster
    training = client.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    hyperparameters = {"n_epochs": 5, "batch_size": 2}
    method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters, "tunery": LONG}}
    job = client.fine_tuning.jobs.create(model="tiny", training_file=training.id, method=method)

    first_host = workers.start("first-host")
    wait_for_event(client, job.id, "Checkpoint created at step 3")
    workers.start("second-host")
    held = store.get_job(job.id)
    assert held.status == "running"
    first_host.kill()  # the whole host dies: the worker, and the trainer without a last checkpoint
    first_host.wait(30)

    event = wait_for_event(client, job.id, "will resume from its checkpoint at step", timeout=120)
    assert held.worker in event.message
    assert event.created_at >= int(held.lease_until)  # never before the dead worker's lease ran out
    resumed = int(event.message.rsplit(" ", 1)[1])
    assert resumed >= 3
    assert wait_for_status(client, job.id, {"succeeded", "failed"}, timeout=300).status == "succeeded"
    done = store.get_job(job.id)
    assert done.worker != held.worker and done.attempts == 2
    assert reported_steps(client, job.id) == list(range(1, 61))  # every step reported once, in order
