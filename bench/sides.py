"""What the peer benchmarks share: each side runs in its own pinned subprocess, clocked step by step.

A side's peak RSS and CPU time come from wait4 on its own child, so the sides never share a process
or see each other's memory. Inside the child, tunery's steps are clocked from outside its loop (by
watching metrics.jsonl grow) and TRL's by a Trainer callback, the same two clocks in every benchmark.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


class MetricsClock(threading.Thread):
    """Notes (wall, process CPU) time whenever tunery appends a step to metrics.jsonl.

    Polling is accurate to the poll interval, far below a step's duration here, and leaves tunery's
    loop exactly as users run it.
    """

    def __init__(self, metrics: Path, interval_s: float = 0.01):
        super().__init__(daemon=True)
        self.metrics, self.interval_s = metrics, interval_s
        self.ends: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                lines = self.metrics.read_bytes().count(b"\n")
            except FileNotFoundError:
                lines = 0
            now = (time.perf_counter(), time.process_time())
            while len(self.ends) < lines:
                self.ends.append(now)
            time.sleep(self.interval_s)


def trl_step_clock():
    """A Trainer callback noting (wall, process CPU) at the start of training and at each step's end,
    and every log record that carries a loss."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.began: tuple[float, float] | None = None
            self.ends: list[tuple[float, float]] = []
            self.logs: list[dict] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.began = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append((time.perf_counter(), time.process_time()))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.logs.append(dict(logs))

    return StepClock()


def child_main(side: str, spec_path: Path, run: Callable[[dict, str], dict]) -> int:
    """The child's side of run_side: pin the threads, run the side, write its result next to its spec.

    The spec gets `child_started` (perf_counter at the child's start), so a side can report the time
    from its start to its first step.
    """
    started = time.perf_counter()
    spec = {**json.loads(spec_path.read_text()), "child_started": started}
    available = sorted(os.sched_getaffinity(0))
    if spec["threads"] < len(available):
        # Pinning makes tunery's own rule (threads = physical cores it may use) pick the same count
        os.sched_setaffinity(0, available[: spec["threads"]])
    load_before = os.getloadavg()[0]
    result = run(spec, side)
    result["load_average"] = (load_before + os.getloadavg()[0]) / 2
    result["self_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


def run_side(script: str, side: str, spec: dict, workdir: Path) -> dict:
    """Run `script --child SIDE SPEC` in a fresh subprocess; return its result with the child's own
    peak RSS (MiB), wall seconds and CPU seconds."""
    safe_name = re.sub(r"[^\w.-]+", "_", side)
    side_dir = workdir / f"{safe_name}-{time.monotonic_ns()}"
    side_dir.mkdir()
    spec = {**spec, "workdir": str(side_dir), "result": str(side_dir / "result.json")}
    (side_dir / "spec.json").write_text(json.dumps(spec))
    log = side_dir / "log.txt"
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    env["HF_DATASETS_CACHE"] = str(side_dir / "hf-datasets")
    # A fresh home per child: tunery's caches start empty, and the finished run registers there,
    # not in the user's home
    env["TUNERY_HOME"] = str(side_dir / "tunery-home")
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, script, "--child", side, str(side_dir / "spec.json")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        # wait4 gives this child's own rusage: its peak RSS and CPU time, untouched by the other runs
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{side} failed (exit {code}); last lines of {log}:\n{tail}")
    result = json.loads(Path(spec["result"]).read_text())
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["process_s"] = time.perf_counter() - started
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


def median_row(rows: list[dict]) -> dict:
    """Medians of one side's runs, key by key."""
    keys = [k for k in rows[0] if k != "side"]
    return {"side": rows[0]["side"], "runs": len(rows), **{k: statistics.median(r[k] for r in rows) for k in keys}}


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "peft", "trl", "accelerate"))
