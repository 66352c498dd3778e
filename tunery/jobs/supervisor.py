"""Keeps the worker process alive next to the API: started with the server, restarted if it dies.

The worker is a child process, so training never shares the API's memory or GIL, and the kernel
sends it SIGTERM if the server dies (see `trainer_process`). Since that signal is tied to the
thread that spawned the child, one long-lived thread spawns and, after a crash, respawns it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from tunery.jobs.trainer_process import spawn_with_parent_death_signal
from tunery.store import DATABASE_URL_ENV

log = logging.getLogger("tunery.jobs")


class WorkerSupervisor:
    def __init__(
        self, home: Path, slots: int, *, database_url: str | None = None, lease_s: float = 60, check_every: float = 2.0
    ):
        self.argv = [sys.executable, "-m", "tunery", "jobs", "worker", "--home", str(home), "--workers", str(slots)]
        self.argv += ["--lease", str(lease_s)]
        # In the environment, not the command line: the URL may hold a password, and `ps` shows argv.
        self.env = {k: v for k, v in os.environ.items() if k != DATABASE_URL_ENV}
        if database_url:
            self.env[DATABASE_URL_ENV] = database_url
        self.check_every = check_every
        self._stop = threading.Event()
        self._started = threading.Event()
        self._process = None
        self._thread = threading.Thread(target=self._watch, name="tunery-worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _watch(self) -> None:
        self._process = spawn_with_parent_death_signal(self.argv, env=self.env)
        self._started.set()
        while not self._stop.wait(self.check_every):
            code = self._process.poll()
            if code is not None and not self._stop.is_set():
                print(f"tunery: the job worker exited with code {code}; starting a new one", file=sys.stderr)
                self._process = spawn_with_parent_death_signal(self.argv, env=self.env)

    def stop(self) -> None:
        """SIGTERM the worker and wait while its trainers checkpoint and exit."""
        self._stop.set()
        if self._process is not None and self._process.poll() is None:
            print("waiting for running jobs to checkpoint...", file=sys.stderr, flush=True)
            self._process.send_signal(signal.SIGTERM)
            self._process.wait()
        self._thread.join(timeout=self.check_every * 2)
