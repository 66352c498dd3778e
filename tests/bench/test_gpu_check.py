"""The GPU check runs end to end on the CPU in its --dry-run mode, so it is ready when a GPU is lent."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from builders import REPO


def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu-check.json"
    env = {**os.environ, "TUNERY_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    paths = {row["path"]: row for row in report["losses"]}
    assert set(paths) == {"fp32", "bf16 autocast", "packed rows", "shared prefix (KV cache)"}
    assert all(row["ok"] for row in paths.values()), paths
    assert paths["fp32"]["rel_error"] == 0.0  # the same device and precision: the same step
    sides = {(row["model"], row["adapter"]) for row in report["throughput"]}
    assert {adapter for _, adapter in sides} == {"lora", "full"}
    for row in report["throughput"]:
        assert row["tunery_tok_s"] > 0 and row["trl_tok_s"] > 0 and math.isfinite(row["speedup"])
    # policy and reference are the same weights at step 1: the DPO loss is log 2
    assert report["dpo"]["step1_loss"] == pytest.approx(math.log(2), abs=1e-4)
