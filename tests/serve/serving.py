"""Driving a real `tunery serve`: a subprocess on a free loopback port, and the real openai client.

A plain module (not conftest.py), so test files import it by a name nothing else shadows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from openai import OpenAI

REPO = Path(__file__).resolve().parents[2]
KEYS = {"sk-alpha": "org-alpha", "sk-beta": "org-beta"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    home: Path
    args: list[str]
    env: dict
    log: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 90) -> ServerProcess:
        self.port = free_port()
        with self.log.open("ab") as out:
            # Its own session, so a test can SIGKILL the server, its worker and trainers at once.
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tunery",
                    "serve",
                    "--port",
                    str(self.port),
                    "--home",
                    str(self.home),
                    *self.args,
                ],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tunery serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"tunery serve did not come up in {timeout}s:\n{self.tail()}")

    def client(self, key: str = "sk-alpha") -> OpenAI:
        return OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=120)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.kill_everything()

    def kill_everything(self) -> None:
        """SIGKILL the server, its worker and every trainer: nothing gets to clean up."""
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def server_env(keys: dict[str, str] | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_API_KEYS"}
    if keys:
        env["TUNERY_API_KEYS"] = ",".join(f"{k}={o}" for k, o in keys.items())
    return env


def wait_for_status(client: OpenAI, job_id: str, statuses: set[str], timeout: float = 180):
    """Poll a job until its status is one of `statuses`; fail with its events otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.3)
    events = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=50)]
    raise AssertionError(f"{job_id} still {job.status} after {timeout}s; events: {events}")


def wait_for_event(client: OpenAI, job_id: str, text: str, timeout: float = 180):
    """Poll a job's events until one contains `text`; return that event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
            if text in event.message:
                return event
        time.sleep(0.3)
    raise AssertionError(f"no event containing {text!r} for {job_id} within {timeout}s")
