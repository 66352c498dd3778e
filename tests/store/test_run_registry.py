"""The registry database: content addressing, run records, claims, and concurrent writers.

The concurrency tests start real processes that write at the same moment into one fresh file
(the same situation as two `tunery` commands, or a server job and a user, finishing together)
and then count every row and run SQLite's own integrity check.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from builders import REPO

from tunery.errors import TuneryError
from tunery.lineage.datasets import dataset_id, register_dataset
from tunery.store.registry import CheckpointRow, Registry, RunDataset, RunRecord, SuiteRecord


def make_run(run_id: str, path: str = "/runs/x", **changes) -> RunRecord:
    values = dict(
        id=run_id,
        path=path,
        registered_at=1.0,
        created_at="2025-01-01T00:00:00",
        status="succeeded",
        method="sft",
        adapter="lora",
        base_model="tiny",
        base_model_path=None,
        base_model_sha256="ab" * 32,
        seed=0,
        config={"seed": 0},
        versions={"tunery": "0.1.0"},
        metrics={"train_loss": 1.5},
        threads=2,
        datasets=(RunDataset("train", "d" * 64, "/data/train.jsonl", "f" * 64),),
        checkpoints=(CheckpointRow(5, "/runs/x/checkpoints/step-000005", {"train_loss": 2.0}),),
    )
    values.update(changes)
    return RunRecord(**values)


def test_dataset_id_is_the_sha256_of_the_canonical_lines(tmp_path):
    messy = tmp_path / "messy.jsonl"
    messy.write_text('{"b": 1,  "a": "é"}\n\n   \n{"a":2}\n')
    tidy = tmp_path / "tidy.jsonl"
    tidy.write_text('{"a":"é","b":1}\n{"a": 2}')
    # Worked by hand: keys sorted, no spaces, UTF-8 kept, lines joined by \n, no trailing newline.
    expected = hashlib.sha256('{"a":"é","b":1}\n{"a":2}'.encode()).hexdigest()
    assert dataset_id(messy) == dataset_id(tidy) == expected
    changed = tmp_path / "changed.jsonl"
    changed.write_text('{"a":"é","b":2}\n{"a":2}\n')
    assert dataset_id(changed) != expected


def test_registering_the_same_content_twice_is_a_no_op(tmp_path, chat_data):
    home = tmp_path / "home"
    copy = tmp_path / "copy.jsonl"
    copy.write_text(chat_data[0].read_text())
    with Registry(tmp_path / "r.sqlite") as registry:
        first, created = register_dataset(registry, chat_data[0], home)
        again, created_again = register_dataset(registry, copy, home)
        assert (created, created_again) == (True, False)
        assert first == again and len(registry.list_datasets()) == 1
        assert registry.dataset_paths(first.id) == [str(chat_data[0].resolve()), str(copy.resolve())]
        assert first.examples == 48 and first.format == "chat" and first.ok
        blob = Path(first.blob)
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == first.id  # the stored copy verifies itself


def test_a_line_that_is_not_json_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{oops\n')
    with Registry(tmp_path / "r.sqlite") as registry, pytest.raises(TuneryError, match=r"bad.jsonl:2"):
        register_dataset(registry, bad, tmp_path / "home")


def test_runs_round_trip_and_are_found_by_prefix(tmp_path):
    with Registry(tmp_path / "r.sqlite") as registry:
        assert registry.add_run(make_run("abc123000000")) is True
        assert registry.add_run(make_run("abd999000000", path="/runs/y")) is True
        run = registry.get_run("abc")
        assert run == make_run("abc123000000")  # every column, the JSON ones included
        with pytest.raises(TuneryError, match="ambiguous"):
            registry.get_run("ab")
        with pytest.raises(TuneryError, match="no run 'zz'"):
            registry.get_run("zz")
        registry.set_reproduces("abd999000000", "abc123000000")
        # Registering again replaces the row and its checkpoints but keeps `reproduces`.
        assert registry.add_run(make_run("abd999000000", path="/runs/y", checkpoints=())) is False
        again = registry.get_run("abd")
        assert again.reproduces == "abc123000000" and again.checkpoints == ()
        assert registry.runs_using("d" * 64) == [("abc123000000", "train"), ("abd999000000", "train")]


def test_due_suites_are_claimed_once(tmp_path):
    with Registry(tmp_path / "r.sqlite") as registry:
        suite = SuiteRecord(
            id="suite-1",
            run_id="r",
            eval_path="/e.jsonl",
            every_s=60,
            threshold=0.05,
            graders=None,
            webhook=None,
            created_at=100.0,
            next_due=100.0,
            baseline=None,
        )
        registry.add_suite(suite)
        assert [s.id for s in registry.claim_due(100.0)] == ["suite-1"]
        assert registry.claim_due(100.0) == []  # a second `monitor run` right after finds nothing due
        assert registry.claim_due(159.0) == []
        assert [s.id for s in registry.claim_due(160.0)] == ["suite-1"]
        assert [s.id for s in registry.claim_due(161.0, force=True)] == ["suite-1"]


WRITER = textwrap.dedent(
    """
    import sys, time
    from tunery.store.registry import DatasetRecord, Registry, RunDataset, RunRecord
    path, name, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start:  # every writer begins at the same instant
        time.sleep(0.001)
    for i in range(n):
        registry = Registry(path)  # a fresh connection per row, as separate CLI commands would have
        data = dict(name="d.jsonl", registered_at=0.0, format="chat", examples=1, bytes=1, ok=True, errors=0,
                    warnings=0, issue_counts={}, stats={}, blob="")
        registry.add_dataset(DatasetRecord(id=f"{name}-{i:04d}", **data), f"/{name}/{i}")
        registry.add_dataset(DatasetRecord(id="shared", **data), f"/{name}/{i}")
        registry.add_run(RunRecord(id=f"run-{name}-{i:04d}", path=f"/{name}/{i}", registered_at=0.0, created_at=None,
                                   status="succeeded", method="sft", adapter="lora", base_model="m",
                                   base_model_path=None, base_model_sha256=None, seed=i, config={}, versions={},
                                   metrics={"i": i}, threads=1,
                                   datasets=(RunDataset("train", f"{name}-{i:04d}", "/x", None),)))
        registry.add_report(f"run-{name}-{i:04d}", "eval", "/r.json", {"i": i})
        registry.close()
    """
)


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    """Four processes, 40 iterations each, four write transactions per iteration, one fresh file."""
    path, n, writers = tmp_path / "registry.sqlite", 40, ["w0", "w1", "w2", "w3"]
    start = time.time() + 3  # time enough for every interpreter to start
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(n), str(start)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in writers
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    with Registry(path) as registry:
        assert registry.integrity_check() == "ok"
        datasets = {d.id for d in registry.list_datasets()}
        assert datasets == {f"{w}-{i:04d}" for w in writers for i in range(n)} | {"shared"}
        assert len(registry.dataset_paths("shared")) == len(writers) * n
        runs = registry.list_runs()
        assert len(runs) == len(writers) * n and all(len(r.datasets) == 1 for r in runs)
        assert sum(len(registry.reports(r.id)) for r in runs) == len(writers) * n
        assert registry._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_cli_commands_register_every_dataset(tmp_path, cli):
    """Three `tunery datasets add` processes at once, each with its own files and one shared file."""
    home = tmp_path / "home"
    shared = tmp_path / "shared.jsonl"
    shared.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    )
    groups = []
    for g in range(3):
        files = []
        for i in range(4):
            path = tmp_path / f"g{g}-{i}.jsonl"
            path.write_text(
                json.dumps(
                    {"messages": [{"role": "user", "content": f"q {g} {i}"}, {"role": "assistant", "content": "a"}]}
                )
                + "\n"
            )
            files.append(path)
        groups.append([*files, shared])
    env = {**__import__("os").environ, "TUNERY_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tunery", "datasets", "add", *map(str, files)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for files in groups
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    shared_lines = [line for out, _ in outputs for line in out.splitlines() if "shared.jsonl" in line]
    assert sorted(line.split(": ")[1].split(" (")[0] for line in shared_lines) == [
        "already registered",
        "already registered",
        "registered",
    ]
    listing = cli("datasets", "list", "--json", env={"TUNERY_HOME": str(home)})
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)) == 13
    with Registry(home / "registry.sqlite") as registry:
        assert registry.integrity_check() == "ok"
