"""The worker process: runs queued jobs first in, first out, `slots` at a time.

Workers on many hosts may serve one store and one home (a shared mount): each claimed job
carries the claiming worker's lease (see `lease`). One worker runs per host (a file lock; it
runs `slots` jobs at once): a new one waits until the previous one has let its trainers
checkpoint and exit, so a restart never has two trainers on one device. Each tick a worker
(1) renews the leases of the jobs it runs, (2) takes over the jobs of workers that are gone
(`recovery`), (3) validates new jobs, (4) follows every running trainer — forwarding cancel and
pause requests as SIGTERM, recording metrics and checkpoints, concluding the jobs whose trainer
exited — and (5) claims the oldest queued jobs while a slot is free. On shutdown it lets its
trainers checkpoint and puts their jobs back in the queue, for any worker to resume.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time

from filelock import FileLock, Timeout

from tunery.hardware import cpu_threads
from tunery.jobs import events, outcome
from tunery.jobs.follow import finished_checkpoints, read_status
from tunery.jobs.layout import Home
from tunery.jobs.lease import host_key, new_worker_id
from tunery.jobs.progress import ingest
from tunery.jobs.recovery import recover, requeue_reason
from tunery.jobs.states import move
from tunery.jobs.trainer_process import TrainerProcess
from tunery.jobs.validation import validate_job
from tunery.store import JobRecord, Store

log = logging.getLogger("tunery.jobs")

# A trainer that keeps exiting "interrupted" without being asked to would otherwise loop forever.
MAX_LAUNCHES = 10


class Worker:
    def __init__(
        self,
        home: Home,
        store: Store,
        *,
        slots: int = 1,
        poll_interval: float = 0.5,
        lease_s: float = 60,
        shutdown_timeout: float = 300,
    ):
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        if lease_s <= poll_interval:
            raise ValueError(f"the lease ({lease_s}s) must outlast the poll interval ({poll_interval}s)")
        self.home = home
        self.store = store
        self.slots = slots
        self.poll_interval = poll_interval
        self.lease_s = lease_s
        self.shutdown_timeout = shutdown_timeout
        self.id = new_worker_id()
        self.active: dict[str, TrainerProcess] = {}
        self.stopping = False
        self.leases_renewed_at = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then stop the trainers (they checkpoint) and return."""
        path = self.home.worker_lock(host_key())
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning("another worker on this host holds %s; waiting for it to finish", path)
            while not stop.is_set():
                try:
                    lock.acquire(timeout=1)
                    break
                except Timeout:
                    continue
            else:
                return
        log.info("worker %s: serving %s (lease %ss)", self.id, self.home.root, self.lease_s)
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # e.g. the database unreachable for a while: log it and try again next tick
                    log.exception("worker tick failed; retrying")
                    self._fence()
                stop.wait(self.poll_interval)
            self.shutdown()
        finally:
            lock.release()

    def tick(self) -> None:
        self._renew_leases()
        # A peer's orphan trainer gets half a lease to checkpoint: our own leases must not lapse meanwhile.
        recover(self.store, self.home, me=self.id, lease_s=self.lease_s, wait_s=self.lease_s / 2)
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
        """Let every trainer checkpoint and exit; their jobs go back in the queue, for any worker to resume."""
        self.stopping = True
        for trainer in self.active.values():
            trainer.request_stop()
        deadline = time.monotonic() + self.shutdown_timeout
        while self.active and time.monotonic() < deadline:
            try:
                self._renew_leases()
                for job_id, trainer in list(self.active.items()):
                    self._follow(job_id, trainer)
            except Exception:
                log.exception("worker shutdown tick failed; retrying")
                self._fence()
            time.sleep(0.2)
        for trainer in self.active.values():
            log.error("job %s: trainer did not stop within %ss; killing it", trainer.job_id, self.shutdown_timeout)
            trainer.kill()

    def _renew_leases(self) -> None:
        """Extend the leases of the jobs we run; kill the trainers of any another worker took over."""
        asked_at = time.monotonic()
        until = self.store.clock() + self.lease_s
        with self.store.transaction() as tx:
            held = tx.renew_leases(self.id, list(self.active), until)
        self.leases_renewed_at = asked_at
        for job_id in set(self.active) - held:
            # Our lease lapsed (this worker stalled) and another worker resumes the job from its
            # last checkpoint: stop writing into a run directory that is no longer ours.
            log.error("job %s: another worker took the job over; killing its trainer here", job_id)
            trainer = self.active.pop(job_id)
            trainer.kill()
            trainer.popen.wait()

    def _fence(self) -> None:
        """Once our leases may have lapsed unrenewed, kill our trainers: others may resume their jobs."""
        if self.active and time.monotonic() - self.leases_renewed_at > self.lease_s:
            log.error("could not renew leases for %ss; killing trainers of %s", self.lease_s, sorted(self.active))
            for trainer in self.active.values():
                trainer.kill()
            self.active.clear()

    def _claim(self) -> JobRecord | None:
        until = self.store.clock() + self.lease_s
        with self.store.transaction() as tx:
            job = tx.oldest_job("queued")
            if job is None:
                return None
            checkpoints = finished_checkpoints(self.home.run_dir(job.id)) if job.resume else {}
            # The trainer may rewrite metrics.jsonl on resume: re-read it all; reported steps are skipped.
            claimed = move(
                tx,
                job.id,
                ["queued"],
                "running",
                attempts=job.attempts + 1,
                metrics_offset=0,
                resume=bool(checkpoints),
                trainer_pid=None,
                worker=self.id,
                lease_until=until,
            )
            if not claimed:
                return None
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
                threads=cpu_threads(self.slots),
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
                checkpoints = finished_checkpoints(self.home.run_dir(job.id))
                cause = f"The worker running this job ({self.id}) stopped"
                outcome.requeue(self.store, job, resume=bool(checkpoints), reason=requeue_reason(cause, checkpoints))
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
            pass  # killed during shutdown: stays `running`, and another worker's recovery decides
        else:
            names = outcome.uploaded_names(self.store, job)
            error = outcome.error_from_status(status, exit_code, self.home.train_log(job.id), names)
            outcome.fail(self.store, job, error)
