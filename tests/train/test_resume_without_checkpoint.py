"""A run killed before its first checkpoint, then resumed: it starts over, and its metrics log
holds each step once (it held 1, 2, 1, 2, 3...: the log was kept while training restarted)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tunery.train.rundir import RunDir


def test_a_resume_with_no_complete_checkpoint_logs_each_step_once(tiny_model_dir, chat_data, tmp_path, cli):
    out = tmp_path / "run"
    args = ["train", "--model", tiny_model_dir, "--data", chat_data[0], "--output", out]
    args += ["n_epochs=1", "batch_size=4", "lora.r=4", "seed=3", "save_every=1000", "final_eval=false"]
    proc = subprocess.Popen([sys.executable, "-m", "tunery", *map(str, args)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(r.get("step", 0) >= 2 for r in RunDir(out).read_metrics()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # before step 1000: no checkpoint exists
    proc.wait()
    assert not list((out / "checkpoints").glob("step-*"))

    result = cli("train", "--resume", out)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [r["step"] for r in RunDir(out).read_metrics() if r["type"] == "train"]
    assert steps == list(range(1, 13)), steps  # 48 examples / 4 per step, each once
