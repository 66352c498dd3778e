"""The worker process: runs queued jobs first in, first out, `slots` at a time.

Each tick it (1) validates new jobs, (2) follows every running trainer — forwarding cancel and
pause requests as SIGTERM, recording metrics and checkpoints, concluding the jobs whose trainer
exited — and (3) starts the oldest queued jobs while a slot is free. Only one worker may serve a
home at a time (a file lock); a new one waits until the previous one has let its trainers
checkpoint and exit, then recovers what it left.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time

from filelock import FileLock, Timeout

from tunery.jobs import events, outcome
from tunery.jobs.follow import finished_checkpoints, read_status
from tunery.jobs.layout import Home
from tunery.jobs.progress import ingest
from tunery.jobs.recovery import recover
from tunery.jobs.states import move
from tunery.jobs.trainer_process import TrainerProcess
from tunery.jobs.validation import validate_job
from tunery.store import JobRecord, Store

log = logging.getLogger("tunery.jobs")

# A trainer that keeps exiting "interrupted" without being asked to would otherwise loop forever.
MAX_LAUNCHES = 10


class Worker:
    def __init__(
        self, home: Home, store: Store, *, slots: int = 1, poll_interval: float = 0.5, shutdown_timeout: float = 300
    ):
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        self.home = home
        self.store = store
        self.slots = slots
        self.poll_interval = poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.active: dict[str, TrainerProcess] = {}
        self.stopping = False

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then stop the trainers (they checkpoint) and return."""
        lock = FileLock(str(self.home.worker_lock))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning("another worker holds %s; waiting for it to finish", self.home.worker_lock)
            while not stop.is_set():
                try:
                    lock.acquire(timeout=1)
                    break
                except Timeout:
                    continue
            else:
                return
        try:
            recover(self.store, self.home)
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # e.g. a store locked for too long: log it and try again next tick
                    log.exception("worker tick failed; retrying")
                stop.wait(self.poll_interval)
            self.shutdown()
        finally:
            lock.release()

    def tick(self) -> None:
        for job in self.store.jobs_in(["validating_files"]):
            validate_job(self.store, self.home, job)
        for job_id, trainer in list(self.active.items()):
            self._follow(job_id, trainer)
        while len(self.active) < self.slots and not self.stopping:
            job = self._claim()
            if job is None:
                break
            self._launch(job)

    def shutdown(self) -> None:
        """Let every trainer checkpoint and exit; their jobs are resumed by the next worker."""
        self.stopping = True
        for trainer in self.active.values():
            trainer.request_stop()
        deadline = time.monotonic() + self.shutdown_timeout
        while self.active and time.monotonic() < deadline:
            for job_id, trainer in list(self.active.items()):
                self._follow(job_id, trainer)
            time.sleep(0.2)
        for trainer in self.active.values():
            log.error("job %s: trainer did not stop within %ss; killing it", trainer.job_id, self.shutdown_timeout)
            trainer.kill()

    def _claim(self) -> JobRecord | None:
        with self.store.transaction() as tx:
            job = tx.oldest_job("queued")
            if job is None:
                return None
            checkpoints = finished_checkpoints(self.home.run_dir(job.id)) if job.resume else {}
            # The trainer may rewrite metrics.jsonl on resume: re-read it all; reported steps are skipped.
            move(
                tx,
                job.id,
                ["queued"],
                "running",
                attempts=job.attempts + 1,
                metrics_offset=0,
                resume=bool(checkpoints),
                trainer_pid=None,
            )
            text = f"Fine-tuning job resumed from step {max(checkpoints)}" if checkpoints else "Fine-tuning job started"
            tx.add_event(events.message(job.id, text))
            return tx.get_job(job.id)

    def _launch(self, job: JobRecord) -> None:
        run_dir = self.home.run_dir(job.id)
        if not job.resume:
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh start must not mix with an old run
        try:
            trainer = TrainerProcess.launch(
                job.id,
                config=self.home.job_config(job.id),
                run_dir=run_dir,
                log=self.home.train_log(job.id),
                resume=job.resume,
            )
        except OSError as exc:
            outcome.fail(self.store, job, outcome.job_error("internal_error", f"could not start the trainer: {exc}"))
            return
        with self.store.transaction() as tx:
            tx.update_job(job.id, trainer_pid=trainer.pid)
        self.active[job.id] = trainer
        log.info("job %s: trainer pid %s started%s", job.id, trainer.pid, " (resume)" if job.resume else "")

    def _follow(self, job_id: str, trainer: TrainerProcess) -> None:
        job = self.store.get_job(job_id)
        if job.status in ("cancelled", "pausing"):
            trainer.request_stop()
        exit_code = trainer.poll()
        ingest(self.store, self.home, job, final=exit_code is not None)
        if exit_code is None:
            return
        del self.active[job_id]
        log.info("job %s: trainer exited with code %s", job_id, exit_code)
        self._conclude(self.store.get_job(job_id), exit_code)

    def _conclude(self, job: JobRecord, exit_code: int) -> None:
        status = read_status(self.home.run_dir(job.id)) or {}
        state = status.get("state")
        step = status.get("step") or job.metrics_step
        if job.status == "cancelled":
            outcome.note_stopped_after_cancel(self.store, job, step)
        elif state == "succeeded" and exit_code == 0:
            outcome.succeed(self.store, self.home, job, status)
        elif state == "interrupted" and exit_code == 0:
            if job.status == "pausing":
                outcome.pause(self.store, job, step)
            elif self.stopping:
                pass  # stays `running`: the next worker's recovery re-queues it to resume
            elif job.attempts < MAX_LAUNCHES:
                outcome.requeue(
                    self.store,
                    job,
                    resume=True,
                    reason=(
                        f"The trainer was interrupted at step {step} without a request; the job is queued "
                        "again and will resume from its last checkpoint"
                    ),
                )
            else:
                outcome.fail(
                    self.store,
                    job,
                    outcome.job_error("internal_error", f"the trainer was interrupted {job.attempts} times; giving up"),
                )
        elif self.stopping and state not in ("succeeded", "failed"):
            pass  # killed during shutdown: recovery decides
        else:
            outcome.fail(self.store, job, outcome.error_from_status(status, exit_code, self.home.train_log(job.id)))
