"""The store contract, on SQLite and on PostgreSQL alike: pagination, organisation scoping,
compare-and-set, atomic transactions, leases, and concurrent claimers that never share a job."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import pytest

from tunery.store import EventRecord, FileRecord, JobRecord, ModelRecord, open_store
from tunery.store.records import CheckpointRecord, UnknownCursor


def file_record(i: int, org: str = "a", purpose: str = "fine-tune") -> FileRecord:
    return FileRecord(
        id=f"file-{i}",
        org=org,
        filename=f"f{i}.jsonl",
        purpose=purpose,
        bytes=i,
        created_at=1000 + i,
        status="processed",
        path=f"/x/{i}",
    )


def job_record(job_id: str, org: str = "a", status: str = "queued", metadata=None) -> JobRecord:
    return JobRecord(
        id=job_id,
        org=org,
        model="tiny",
        training_file="file-1",
        status=status,
        created_at=1,
        seed=0,
        method={"type": "supervised"},
        hyperparameters={"n_epochs": "auto"},
        metadata=metadata,
    )


def test_files_paginate_newest_first_and_by_cursor(store):
    with store.transaction() as tx:
        for i in range(5):
            tx.add_file(file_record(i))
        tx.add_file(file_record(9, org="b"))
    first = store.list_files("a", limit=2)
    assert [f.id for f in first.items] == ["file-4", "file-3"] and first.has_more
    second = store.list_files("a", limit=2, after="file-3")
    assert [f.id for f in second.items] == ["file-2", "file-1"] and second.has_more
    last = store.list_files("a", limit=2, after="file-1")
    assert [f.id for f in last.items] == ["file-0"] and not last.has_more
    ascending = store.list_files("a", limit=3, order="asc", after="file-0")
    assert [f.id for f in ascending.items] == ["file-1", "file-2", "file-3"]


def test_other_organisations_objects_are_invisible(store):
    with store.transaction() as tx:
        tx.add_file(file_record(1, org="a"))
        tx.add_job(job_record("ftjob-1", org="a"))
        tx.add_model(ModelRecord(id="ft:x", org="a", base="tiny", kind="lora", path="/p", created_at=1))
    assert store.get_file("file-1", "b") is None and store.get_file("file-1", "a") is not None
    assert store.get_job("ftjob-1", "b") is None
    assert store.get_model("ft:x", "b") is None
    assert store.list_files("b").items == [] and store.list_models("b") == []
    with pytest.raises(UnknownCursor):  # another org's id is no cursor either
        store.list_files("b", after="file-1")


def test_update_job_is_compare_and_set_on_status(store):
    with store.transaction() as tx:
        tx.add_job(job_record("ftjob-1", status="queued"))
    with store.transaction() as tx:
        assert not tx.update_job("ftjob-1", expect=["running"], status="succeeded")
        assert tx.update_job("ftjob-1", expect=["queued"], status="running", attempts=1)
    job = store.get_job("ftjob-1")
    assert (job.status, job.attempts) == ("running", 1)
    with pytest.raises(ValueError):
        with store.transaction() as tx:
            tx.update_job("ftjob-1", no_such_field=1)


def test_a_failed_transaction_writes_nothing(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.add_job(job_record("ftjob-1"))
            tx.add_event(EventRecord(id="ftevent-1", job_id="ftjob-1", created_at=1, level="info", message="x"))
            raise RuntimeError("crash between writes")
    assert store.get_job("ftjob-1") is None
    assert store.list_events("ftjob-1").items == []


def test_json_columns_round_trip_and_metadata_filter(store):
    with store.transaction() as tx:
        tx.add_job(job_record("ftjob-1", metadata={"team": "red", "run": "1"}))
        tx.add_job(job_record("ftjob-2", metadata={"team": "blue"}))
        tx.add_job(job_record("ftjob-3"))
        tx.add_job(job_record("ftjob-4", metadata={}))
    assert store.get_job("ftjob-1").metadata == {"team": "red", "run": "1"}
    assert store.get_job("ftjob-1").method == {"type": "supervised"}
    assert [j.id for j in store.list_jobs("a", metadata={"team": "red"}).items] == ["ftjob-1"]
    assert [j.id for j in store.list_jobs("a", metadata={"team": "red", "run": "2"}).items] == []
    assert [j.id for j in store.list_jobs("a").items] == ["ftjob-4", "ftjob-3", "ftjob-2", "ftjob-1"]
    assert [j.id for j in store.list_jobs("a", without_metadata=True).items] == ["ftjob-4", "ftjob-3"]


def test_a_checkpoint_step_is_recorded_once(store):
    ckpt = CheckpointRecord(
        id="ftckpt_1", job_id="ftjob-1", step=5, created_at=1, model="ft:x:ckpt-step-5", metrics={"step": 5}, path="/p"
    )
    with store.transaction() as tx:
        assert tx.add_checkpoint(ckpt)
        assert not tx.add_checkpoint(CheckpointRecord(**{**ckpt.__dict__, "id": "ftckpt_2"}))
    assert [c.id for c in store.list_checkpoints("ftjob-1").items] == ["ftckpt_1"]


def test_leases_change_hands_only_from_their_holder(store):
    with store.transaction() as tx:
        tx.add_job(job_record("ftjob-1", status="running"))
        tx.add_job(job_record("ftjob-2", status="running"))
    with store.transaction() as tx:
        assert tx.transfer_lease("ftjob-1", holder=None, worker="w1", until=100.0)
        assert not tx.transfer_lease("ftjob-1", holder=None, worker="w2", until=200.0)  # w1 has it now
        assert tx.transfer_lease("ftjob-2", holder=None, worker="w2", until=100.0)
    with store.transaction() as tx:
        # w1 renews what it holds; it does not hold ftjob-2, so that one is neither renewed nor reported.
        assert tx.renew_leases("w1", ["ftjob-1", "ftjob-2"], 150.5) == {"ftjob-1"}
        assert tx.transfer_lease("ftjob-1", holder="w1", worker="w2", until=300.0)
        assert tx.renew_leases("w1", ["ftjob-1"], 400.0) == set()
    one, two = store.get_job("ftjob-1"), store.get_job("ftjob-2")
    assert (one.worker, one.lease_until, two.worker, two.lease_until) == ("w2", 300.0, "w2", 100.0)


def test_the_clock_is_the_databases_and_keeps_fractions(store):
    first = store.clock()
    time.sleep(0.05)
    second = store.clock()
    assert abs(first - time.time()) < 60  # Unix seconds (this machine is the database's host)
    assert second > first and (first != int(first) or second != int(second))  # fractions: short leases work


def test_unsettled_jobs_are_those_a_worker_looks_after(store):
    with store.transaction() as tx:
        for i, status in enumerate(["queued", "running", "pausing", "paused", "cancelled", "cancelled", "failed"]):
            tx.add_job(job_record(f"ftjob-{i}", status=status))
        tx.update_job("ftjob-4", trainer_pid=1234)  # cancelled while its trainer still runs
    assert [j.id for j in store.unsettled_jobs()] == ["ftjob-1", "ftjob-2", "ftjob-4"]


def test_a_version_1_sqlite_store_gains_the_lease_and_integrations_columns(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the jobs table as tunery wrote it before leases
        conn.execute(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, org TEXT NOT NULL,"
            " model TEXT NOT NULL, training_file TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,"
            " seed INTEGER NOT NULL, method TEXT NOT NULL, hyperparameters TEXT NOT NULL, validation_file TEXT,"
            " suffix TEXT, metadata TEXT, error TEXT, fine_tuned_model TEXT, result_files TEXT NOT NULL,"
            " trained_tokens INTEGER, finished_at INTEGER, estimated_finish INTEGER, resume INTEGER NOT NULL,"
            " trainer_pid INTEGER, metrics_offset INTEGER NOT NULL, metrics_step INTEGER NOT NULL,"
            " attempts INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO jobs (id, org, model, training_file, status, created_at, seed, method, hyperparameters,"
            " result_files, resume, metrics_offset, metrics_step, attempts)"
            " VALUES ('ftjob-old', 'a', 'tiny', 'file-1', 'running', 1, 0, '{}', '{}', '[]', 0, 0, 0, 1)"
        )
        conn.execute("PRAGMA user_version = 1")
    store = open_store(path)
    job = store.get_job("ftjob-old")
    assert (job.status, job.worker, job.lease_until) == ("running", None, None)
    with store.transaction() as tx:
        assert tx.transfer_lease("ftjob-old", holder=None, worker="w1", until=1.5)
    assert store.get_job("ftjob-old").lease_until == 1.5
    assert store.get_job("ftjob-old").integrations is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3


def _claim_until_empty(location: str, start, results) -> None:
    """One claimer process: take queued jobs the way the worker does, until none is left."""
    store = open_store(location)
    start.wait()
    claimed = []
    while True:
        with store.transaction() as tx:
            job = tx.oldest_job("queued")
            if job is None:
                break
            if tx.update_job(job.id, expect=["queued"], status="running"):
                claimed.append(job.id)
        time.sleep(0.001)  # let the other claimers in between, as a worker's other work would
    results.put(claimed)


def test_concurrent_claimers_take_every_job_exactly_once_in_order(store, store_location):
    jobs = [f"ftjob-{i:03d}" for i in range(60)]
    with store.transaction() as tx:
        for job_id in jobs:
            tx.add_job(job_record(job_id))
    ctx = multiprocessing.get_context("spawn")
    results, start = ctx.Queue(), ctx.Barrier(4)
    procs = [ctx.Process(target=_claim_until_empty, args=(store_location, start, results)) for _ in range(4)]
    for p in procs:
        p.start()
    claims = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    every = sorted(j for claimed in claims for j in claimed)
    assert every == jobs  # each job claimed once: none twice, none left
    assert all(claimed == sorted(claimed) for claimed in claims)  # each claimer went oldest first
    assert sum(1 for claimed in claims if claimed) > 1  # they really claimed side by side
    assert {j.status for j in store.jobs_in(["queued", "running"])} == {"running"}
