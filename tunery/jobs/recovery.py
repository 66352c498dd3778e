"""What a worker does on start for jobs a previous worker left behind.

After a crash (or SIGKILL) of the server, the store may still say `running` or `pausing` for
jobs whose worker is gone. For each: stop any trainer still alive (it checkpoints on SIGTERM),
record what its run directory says happened, then finish the job if the run finished, or put
it back in the queue to resume from its last checkpoint (from the start if it had none).
"""

from __future__ import annotations

import logging
import os
import signal
import time

from tunery.jobs import outcome
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
    log.warning("job %s: stopping trainer pid %s left by the previous worker", job.id, job.trainer_pid)
    os.kill(job.trainer_pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while trainer_alive(job.trainer_pid, job.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    if trainer_alive(job.trainer_pid, job.id):
        os.kill(job.trainer_pid, signal.SIGKILL)


def recover(store: Store, home: Home, *, wait_s: float = 120) -> None:
    for job in store.jobs_in(["running", "pausing", "cancelled"]):
        try:
            recover_job(store, home, job, wait_s)
        except Exception as exc:  # one broken run directory must not keep the worker from starting
            log.exception("job %s: recovery failed", job.id)
            message = f"the job could not be recovered after the server stopped: {type(exc).__name__}: {exc}"
            outcome.fail(store, job, outcome.job_error("internal_error", message))


def recover_job(store: Store, home: Home, job: JobRecord, wait_s: float) -> None:
    """Settle one job the previous worker left `running`, `pausing` (or cancelled with a live trainer)."""
    if job.status == "cancelled":
        if job.trainer_pid:
            stop_orphan(job, wait_s)
            with store.transaction() as tx:
                tx.update_job(job.id, trainer_pid=None)
        return
    stop_orphan(job, wait_s)
    ingest(store, home, job, final=True)
    job = store.get_job(job.id)
    status = read_status(home.run_dir(job.id)) or {}
    state = status.get("state")
    step = status.get("step") or job.metrics_step
    log.info("job %s: recovering (%s, trainer state %s at step %s)", job.id, job.status, state, step)
    if state == "succeeded":
        outcome.succeed(store, home, job, status)
    elif state == "failed":
        outcome.fail(store, job, outcome.error_from_status(status, None, home.train_log(job.id)))
    elif job.status == "pausing":
        outcome.pause(store, job, step)
    else:
        checkpoints = finished_checkpoints(home.run_dir(job.id))
        if checkpoints:
            reason = (
                "The server stopped while this job was running; it is queued again and will resume "
                f"from its checkpoint at step {max(checkpoints)}"
            )
        else:
            reason = (
                "The server stopped before this job wrote its first checkpoint; it is queued again "
                "and will start from the beginning"
            )
        outcome.requeue(store, job, resume=bool(checkpoints), reason=reason)
