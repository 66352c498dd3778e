"""The server's background re-evaluation: a `tunery monitor run` child whenever a suite is due.

Opt-in: `tunery serve --monitor-every 60s` (or `monitor_every` in the server config, or
`TUNERY_MONITOR_EVERY`). Off by default because an evaluation loads a model next to the ones the
server is serving and the jobs it is training, so where and whether that happens is the
operator's choice; many deployments already run `tunery monitor run` from cron.

Every period one thread of the API process reads the registry; only when a suite is due does it
start `python -m tunery monitor run` and wait for it. A child process rather than `run_due` in a
thread, because an evaluation in the API process would share its memory, its GIL and torch's
process-wide thread count with the chat engine (which relies on being the API's only torch user);
a child gives its memory back when it exits, cannot take the API down if it crashes, and records
history, warn/error events and webhook posts exactly as cron's `monitor run` does, because it is
that command. Its output joins the server's own.

Never two at once: the one thread waits for each child before its next check. Several servers and
cron jobs on one `$TUNERY_HOME` share the registry, whose `claim_due` hands each due suite to
exactly one of them in a single transaction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

# Exit codes of `tunery monitor run` (the CLI's convention).
_EXIT_MEANING = {0: "no alerts", 1: "a suite alerted or failed (see above)", 2: "it refused to run (see above)"}


def due_suites(now: float | None = None) -> list[str]:
    """Ids of the registered suites due at `now`, without claiming them; [] with no registry yet."""
    from tunery.home import tunery_home
    from tunery.store.registry import FILENAME, open_registry

    home = tunery_home()
    if not (home / FILENAME).exists():  # a check must not create a registry as a side effect
        return []
    now = time.time() if now is None else now
    with open_registry(home) as registry:
        return [suite.id for suite in registry.suites() if suite.next_due <= now]


class MonitorScheduler:
    """A daemon thread that runs due monitor suites every `every_s` seconds, until `stop()`.

    Args:
        every_s: seconds between checks of the registry (the suites' own `--every` decides how
            often each one runs; this only bounds how late a due suite starts).
        device: passed to `monitor run --device` (auto, cpu, cuda, cuda:N).
        threads: CPU threads the evaluation may use; by default the same half of the cores the
            chat engine takes, so serving, training and the evaluation do not oversubscribe.
    """

    def __init__(self, every_s: float, *, device: str = "auto", threads: int | None = None):
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, not {every_s}")
        self.every_s = every_s
        self.argv = [sys.executable, "-m", "tunery", "monitor", "run", "--device", device]
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self._stop = threading.Event()
        self._child: subprocess.Popen | None = None
        self._lock = threading.Lock()  # guards _child between the loop and stop()
        self._thread = threading.Thread(target=self._loop, name="tunery-monitor-scheduler", daemon=True)

    def start(self) -> None:
        _say(f"checking for due suites every {self.every_s:g}s")
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop checking; SIGTERM a running evaluation (its suites come round again next period)."""
        self._stop.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
        self._thread.join(timeout)

    def _loop(self) -> None:
        # Check at once: a server started after a pause catches up on overdue suites.
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - a failed check (a locked registry...) must not end the thread
                _say(f"check failed: {exc!r}; trying again in {self.every_s:g}s")
            self._stop.wait(self.every_s)

    def run_once(self) -> int | None:
        """Run `monitor run` if any suite is due; its exit code, or None when nothing was due."""
        from tunery.jobs.trainer_process import spawn_with_parent_death_signal

        due = due_suites()
        if not due:
            return None
        _say(f"running due suites: {', '.join(due)}")
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(self.threads))  # torch reads it at import
        with self._lock:
            if self._stop.is_set():
                return None
            # Spawned from this long-lived thread: the child gets SIGTERM if the server dies.
            child = self._child = spawn_with_parent_death_signal(self.argv, env=env)
        code = child.wait()
        with self._lock:
            self._child = None
        if not self._stop.is_set():
            _say(f"monitor run exited {code}: {_EXIT_MEANING.get(code, 'it crashed')}")
        return code


def _say(message: str) -> None:
    print(f"tunery monitor: {message}", file=sys.stderr, flush=True)
