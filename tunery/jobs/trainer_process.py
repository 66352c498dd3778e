"""One `python -m tunery train` subprocess per running job, and how to stop it.

The trainer is a child of the worker and asks the kernel for SIGTERM if the worker dies
(Linux `PR_SET_PDEATHSIG`), so a killed server never leaves a trainer writing on unobserved:
SIGTERM makes the trainer finish its step, checkpoint and exit, ready to be resumed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: recovery then waits for orphans instead
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def spawn_with_parent_death_signal(
    argv: list[str], *, log: Path | None = None, env: dict | None = None
) -> subprocess.Popen:
    """Start `argv` (output appended to `log`, or inherited); SIGTERM reaches it if we die."""
    parent = os.getpid()
    if log is None:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, preexec_fn=lambda: _die_with_parent(parent))
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=lambda: _die_with_parent(parent),
        )


class TrainerProcess:
    """A running `tunery train` for one job."""

    def __init__(self, job_id: str, popen: subprocess.Popen, *, resumed: bool):
        self.job_id = job_id
        self.popen = popen
        self.resumed = resumed
        self.stop_requested = False

    @classmethod
    def launch(
        cls, job_id: str, *, config: Path, run_dir: Path, log: Path, resume: bool, threads: int
    ) -> TrainerProcess:
        """Start `tunery train` for the job with `threads` CPU threads (jobs running side by side
        share the cores; more threads than cores only makes every job slower)."""
        args = ["--resume", str(run_dir)] if resume else ["--config", str(config)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
        popen = spawn_with_parent_death_signal([sys.executable, "-m", "tunery", "train", *args], log=log, env=env)
        return cls(job_id, popen, resumed=resume)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def request_stop(self) -> None:
        """Ask the trainer to checkpoint and exit (idempotent)."""
        if not self.stop_requested and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        self.stop_requested = True

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()


def trainer_alive(pid: int | None, job_id: str) -> bool:
    """Whether `pid` is still a trainer of this job (a pid may have been reused since)."""
    if not pid:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return job_id.encode() in cmdline.read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
