"""tunery/fsio.py: atomic files and directories, and content hashes."""

from __future__ import annotations

import hashlib

from tunery.fsio import atomic_write, file_sha256, files_sha256, publish


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "status.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["status.json"]


def test_publish_moves_a_directory_over_the_old_one(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "stale.bin").write_text("old")
    tmp = tmp_path / ".final.tmp"
    tmp.mkdir()
    (tmp / "model.safetensors").write_text("weights")
    publish(tmp, final)
    assert not tmp.exists() and [p.name for p in final.iterdir()] == ["model.safetensors"]


def test_hashes_are_sha256_of_the_contents_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * (5 << 20))  # more than one read chunk
    b.write_bytes(b"tail")
    assert file_sha256(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert files_sha256([a, b]) == hashlib.sha256(a.read_bytes() + b"tail").hexdigest()
