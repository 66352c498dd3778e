"""The SQLite store: pagination, organisation scoping, compare-and-set, atomic transactions."""

from __future__ import annotations

import multiprocessing

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


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "t.db")
    yield s
    s.close()


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
    assert store.get_job("ftjob-1").metadata == {"team": "red", "run": "1"}
    assert store.get_job("ftjob-1").method == {"type": "supervised"}
    assert [j.id for j in store.list_jobs("a", metadata={"team": "red"}).items] == ["ftjob-1"]
    assert [j.id for j in store.list_jobs("a", metadata={"team": "red", "run": "2"}).items] == []
    assert [j.id for j in store.list_jobs("a").items] == ["ftjob-3", "ftjob-2", "ftjob-1"]


def test_a_checkpoint_step_is_recorded_once(store):
    ckpt = CheckpointRecord(
        id="ftckpt_1", job_id="ftjob-1", step=5, created_at=1, model="ft:x:ckpt-step-5", metrics={"step": 5}, path="/p"
    )
    with store.transaction() as tx:
        assert tx.add_checkpoint(ckpt)
        assert not tx.add_checkpoint(CheckpointRecord(**{**ckpt.__dict__, "id": "ftckpt_2"}))
    assert [c.id for c in store.list_checkpoints("ftjob-1").items] == ["ftckpt_1"]


def _claim(path: str, results) -> None:
    store = open_store(path)
    with store.transaction() as tx:
        job = tx.oldest_job("queued")
        won = job is not None and tx.update_job(job.id, expect=["queued"], status="running")
    results.put(job.id if won else None)


def test_two_processes_never_claim_the_same_job(tmp_path):
    store = open_store(tmp_path / "t.db")
    with store.transaction() as tx:
        tx.add_job(job_record("ftjob-1"))
        tx.add_job(job_record("ftjob-2"))
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(str(tmp_path / "t.db"), results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    claimed = sorted(filter(None, (results.get(timeout=5) for _ in procs)))
    # FIFO: the two jobs go to two different processes, oldest first; the third gets nothing.
    assert claimed == ["ftjob-1", "ftjob-2"]
    assert {j.status for j in store.jobs_in(["running"])} == {"running"}
