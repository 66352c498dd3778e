"""What a worker does for jobs whose worker is gone: take them over and settle them.

Every tick a worker looks for jobs left `running` or `pausing` (or cancelled with a trainer) by
a worker whose lease expired, or which ran on this host and has died (see `lease`). It takes
each one's lease, so that no other worker settles it too, then: stops the trainer if it is
still alive here (it checkpoints on SIGTERM; a trainer on another host got SIGTERM when its own
worker died), records what the run directory says happened, and finishes the job if the run
finished, or puts it back in the queue to resume from its last checkpoint (from the start if
it had none). The run directory is on the shared home, so any worker can resume any job.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from tunery.jobs import lease, outcome
from tunery.jobs.follow import finished_checkpoints, read_status
from tunery.jobs.layout import Home
from tunery.jobs.progress import ingest
from tunery.jobs.trainer_process import trainer_alive
from tunery.store import JobRecord, Store

log = logging.getLogger("tunery.jobs")


def stop_orphan(job: JobRecord, wait_s: float) -> None:
    """Stop a trainer the dead worker left running (SIGTERM, then SIGKILL after `wait_s`)."""
    if not trainer_alive(job.trainer_pid, job.id):
        return
    log.warning("job %s: stopping trainer pid %s left by worker %s", job.id, job.trainer_pid, job.worker)
    os.kill(job.trainer_pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while trainer_alive(job.trainer_pid, job.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    if trainer_alive(job.trainer_pid, job.id):
        os.kill(job.trainer_pid, signal.SIGKILL)


def requeue_reason(cause: str, checkpoints: dict) -> str:
    if checkpoints:
        return f"{cause}; it is queued again and will resume from its checkpoint at step {max(checkpoints)}"
    return f"{cause} before this job wrote its first checkpoint; it is queued again and will start from the beginning"


def recover(store: Store, home: Home, *, me: str, lease_s: float, wait_s: float = 120) -> list[str]:
    """Take over and settle every job whose worker is gone; returns their ids."""
    now = store.clock()
    taken = []
    for job in store.unsettled_jobs():
        if not lease.abandoned(job, me=me, now=now):
            continue
        with store.transaction() as tx:
            if not tx.transfer_lease(job.id, holder=job.worker, worker=me, until=now + lease_s):
                continue  # another worker got there first
        taken.append(job.id)
        try:
            recover_job(store, home, job, wait_s)
        except Exception as exc:  # one broken run directory must not keep the worker from working
            log.exception("job %s: recovery failed", job.id)
            message = f"the job could not be recovered after its worker stopped: {type(exc).__name__}: {exc}"
            outcome.fail(store, job, outcome.job_error("internal_error", message))
    return taken


def recover_job(store: Store, home: Home, job: JobRecord, wait_s: float) -> None:
    """Settle one job its worker left `running`, `pausing` (or cancelled with a live trainer)."""
    holder = job.worker
    # A trainer's process id means something only on the host that started it; a worker from
    # before leases (no id) ran on the one host there was.
    if holder is None or lease.is_local(holder):
        stop_orphan(job, wait_s)
    if job.status == "cancelled":
        with store.transaction() as tx:
            tx.update_job(job.id, trainer_pid=None)
        return
    ingest(store, home, job, final=True)
    job = store.get_job(job.id)
    status = read_status(home.run_dir(job.id)) or {}
    state = status.get("state")
    step = status.get("step") or job.metrics_step
    log.info("job %s: recovering (%s, trainer state %s at step %s)", job.id, job.status, state, step)
    if state == "succeeded":
        outcome.succeed(store, home, job, status)
    elif state == "failed":
        names = outcome.uploaded_names(store, job)
        outcome.fail(store, job, outcome.error_from_status(status, None, home.train_log(job.id), names))
    elif job.status == "pausing":
        outcome.pause(store, job, step)
    else:
        checkpoints = finished_checkpoints(home.run_dir(job.id))
        cause = f"The worker running this job ({holder}) stopped" if holder else "The server stopped"
        outcome.requeue(store, job, resume=bool(checkpoints), reason=requeue_reason(cause, checkpoints))
