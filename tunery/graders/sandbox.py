"""The python grader's sandbox: the user's `grade(sample, item)` in separate, fenced processes.

Each worker is a fresh `python -I` running `sandbox_runner.py`, with:
- a scratch working directory of its own and an environment with nothing of the caller's in it
  (no TUNERY_HOME, no keys);
- rlimits on address space (`MEMORY_LIMIT_MB`), CPU time and file size;
- an empty network namespace (`unshare --map-root-user --net`) where the kernel allows it, and
  in every case an audit hook that refuses sockets, subprocesses, native libraries, and any
  file outside the Python installation and the scratch directory;
- a wall-clock limit per sample (`TIME_LIMIT_S`): a grader that loops forever is killed and a
  new worker takes the next sample.

A worker grades many samples (starting Python costs more than most graders), so globals may
persist between samples, as they would in one OpenAI grader container. A crash, a timeout or a
non-number is a `SandboxResult` with an error and no score, never an exception: the caller
counts it and rewards 0.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import select
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TIME_LIMIT_S = float(os.environ.get("TUNERY_PYTHON_GRADER_TIMEOUT_S", "10"))
MEMORY_LIMIT_MB = int(os.environ.get("TUNERY_PYTHON_GRADER_MEMORY_MB", "1024"))
START_LIMIT_S = 30.0  # compiling and importing a grader's module-level code
RUNNER = Path(__file__).with_name("sandbox_runner.py")


@dataclass(frozen=True)
class SandboxResult:
    score: float | None
    error: str | None = None  # one of OpenAI's grader error kinds, e.g. python_grader_runtime_error
    details: str | None = None


@lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """`unshare` arguments for an empty network namespace, or () where unprivileged namespaces are off."""
    unshare = shutil.which("unshare")
    if not unshare:
        return ()
    probe = subprocess.run(
        [unshare, "--map-root-user", "--net", sys.executable, "-c", "pass"], capture_output=True, timeout=30
    )
    return (unshare, "--map-root-user", "--net") if probe.returncode == 0 else ()


def _readable_roots() -> list[str]:
    """The Python installation (stdlib and site-packages), which a grader may import from."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    roots.update(p for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("purelib")) if p)
    return sorted(roots)


def _limits(memory_mb: int, cpu_s: int):
    def apply():  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class _Worker:
    def __init__(self, source: str, time_limit_s: float, memory_mb: int):
        self.scratch = tempfile.mkdtemp(prefix="tunery-grader-")
        config = {"readable": _readable_roots(), "scratch": self.scratch}
        self.stderr = open(os.path.join(self.scratch, ".stderr"), "w+b")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [*network_namespace_prefix(), sys.executable, "-I", str(RUNNER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=self.scratch,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": self.scratch,
                "TMPDIR": self.scratch,
                "LANG": "C.UTF-8",
                "OPENBLAS_NUM_THREADS": "1",
            },
            start_new_session=True,  # its own process group, so a timeout kills everything it started
            preexec_fn=_limits(memory_mb, int(max(time_limit_s, START_LIMIT_S) * 4)),
        )
        self.time_limit_s = time_limit_s
        self.start_error = self._expect_ready(source)

    def _send(self, message: dict) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def _read(self, timeout_s: float) -> dict | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {}

    def _expect_ready(self, source: str) -> SandboxResult | None:
        try:
            self._send({"source": source})
            reply = self._read(START_LIMIT_S)
        except (BrokenPipeError, json.JSONDecodeError):
            reply = {}
        if reply and reply.get("ready"):
            return None
        return self._failure(reply, START_LIMIT_S)

    def grade(self, sample: dict, item: dict) -> SandboxResult:
        try:
            self._send({"sample": sample, "item": item})
            reply = self._read(self.time_limit_s)
        except (BrokenPipeError, json.JSONDecodeError):
            reply = {}
        if reply and "score" in reply:
            return SandboxResult(reply["score"])
        return self._failure(reply, self.time_limit_s)

    def _failure(self, reply: dict | None, limit_s: float) -> SandboxResult:
        if reply is None:
            self.close()
            return SandboxResult(None, "python_grader_runtime_error", f"timed out after {limit_s:g} s")
        if reply:
            return SandboxResult(None, reply.get("error", "python_grader_runtime_error"), reply.get("details"))
        self.stderr.seek(0)  # the process died: out of memory, a signal, or os._exit
        tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        self.close()
        code = self.proc.returncode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        if tail[0].startswith("MemoryError") or code == -9:
            why += f" (memory limit {MEMORY_LIMIT_MB} MB?)"
        return SandboxResult(None, "python_grader_server_error", f"the grader process {why}: {tail[0][:200]}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.stderr.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class PythonSandbox:
    """A small pool of sandbox workers for one grader's source; thread-safe `grade`.

    Use as a context manager (or call `close`) so that no worker outlives the grading.
    """

    def __init__(
        self, source: str, *, workers: int = 2, time_limit_s: float = TIME_LIMIT_S, memory_mb: int = MEMORY_LIMIT_MB
    ):
        self.source, self.time_limit_s, self.memory_mb = source, time_limit_s, memory_mb
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(max(1, workers)):
            self._idle.put(None)  # started on first use
        self._all: list[_Worker] = []
        self._lock = threading.Lock()

    def _worker(self, worker: _Worker | None) -> _Worker:
        if worker is not None and worker.alive:
            return worker
        worker = _Worker(self.source, self.time_limit_s, self.memory_mb)
        with self._lock:
            self._all.append(worker)
        return worker

    def check(self) -> SandboxResult | None:
        """Compile the source and find `grade`; the error, or None when it is ready."""
        worker = self._worker(self._idle.get())
        self._idle.put(worker)
        return worker.start_error

    def grade(self, sample: dict, item: dict) -> SandboxResult:
        worker = self._worker(self._idle.get())
        try:
            if worker.start_error is not None:
                return worker.start_error
            return worker.grade(sample, item)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        with self._lock:
            for worker in self._all:
                worker.close()
            self._all.clear()

    def __enter__(self) -> PythonSandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
