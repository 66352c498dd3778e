"""Job leases: which worker process runs a job, and when another worker may take the job over.

A worker that claims a job records its id and a lease expiry on the job's row; every tick it
renews the leases of the jobs it runs. Expiry is judged by the database's clock, so the hosts'
clocks need not agree. Another worker takes a job over when its lease has expired, or at once
when the holder ran on this same host: one worker runs per host (it holds a lock while it
serves), so a local holder other than the caller has died (a crashed server restarting).

"This host" is the kernel boot and the process-id namespace together: only there does a
holder's process id mean the same process. Two containers on one machine are two hosts.
"""

from __future__ import annotations

import hashlib
import os
import socket
from functools import cache
from pathlib import Path

from tunery.store import JobRecord


@cache
def host_key() -> str:
    """Names this kernel boot and pid namespace; random where /proc cannot tell (never local)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return os.urandom(6).hex()
    return hashlib.sha256(f"{boot}/{pid_namespace}".encode()).hexdigest()[:12]


def new_worker_id() -> str:
    """`host/pid/host-key`: readable in the store, and enough to tell whether the holder is local."""
    return f"{socket.gethostname()}/{os.getpid()}/{host_key()}"


def is_local(worker_id: str | None) -> bool:
    """Whether `worker_id` ran on this host, so that its process ids (and its trainers') are ours."""
    return bool(worker_id) and worker_id.rsplit("/", 1)[-1] == host_key()


def abandoned(job: JobRecord, *, me: str, now: float) -> bool:
    """Whether `me`, this host's one worker, may take over `job` from the worker that holds it."""
    if job.worker == me:
        return False
    if job.worker is None or job.lease_until is None:
        return True  # left by a worker from before leases
    return job.lease_until < now or is_local(job.worker)
