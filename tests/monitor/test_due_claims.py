"""Claiming due suites is one transaction: a server's background run and cron's `monitor run`
firing together never both take a suite, and a check that only looks never claims anything."""

from __future__ import annotations

import threading

from tunery.monitor.background import due_suites
from tunery.store.registry import SuiteRecord, open_registry


def add_suites(home, n: int, *, due_at: float) -> list[str]:
    ids = [f"suite-{i:02d}" for i in range(n)]
    with open_registry(home) as registry:
        for suite_id in ids:
            registry.add_suite(
                SuiteRecord(
                    id=suite_id,
                    run_id="run-1",
                    eval_path="/data/heldout.jsonl",
                    every_s=3600,
                    threshold=0.05,
                    graders=None,
                    webhook=None,
                    created_at=0.0,
                    next_due=due_at,
                    baseline=None,
                )
            )
    return ids


def test_concurrent_claimers_split_the_due_suites_without_overlap(tmp_path):
    ids = add_suites(tmp_path, 40, due_at=100.0)
    start = threading.Barrier(4)
    claimed: list[list[str]] = [[] for _ in range(4)]

    def claimer(slot: int) -> None:
        with open_registry(tmp_path) as registry:  # its own connection, as another process has
            start.wait()
            for _ in range(10):
                claimed[slot] += [s.id for s in registry.claim_due(200.0)]

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [suite_id for got in claimed for suite_id in got]
    assert sorted(everything) == ids  # each suite exactly once, none lost


def test_looking_for_due_suites_claims_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path))
    assert due_suites(now=0.0) == []
    assert not (tmp_path / "registry.sqlite").exists()  # a check creates no registry
    ids = add_suites(tmp_path, 2, due_at=100.0)
    assert due_suites(now=99.0) == []
    assert due_suites(now=100.0) == ids
    assert due_suites(now=100.0) == ids  # still due: only `monitor run` moves next_due on
    with open_registry(tmp_path) as registry:
        assert [s.id for s in registry.claim_due(100.0)] == ids
    assert due_suites(now=100.0) == []
