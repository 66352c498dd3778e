"""Record a running job's progress: metrics events, checkpoints (as servable models), ETA.

Called on every worker tick for each running job, once more with `final=True` after the
trainer exits, and by recovery for jobs whose worker died. Everything one call learns is
written in one transaction together with the new metrics offset, so nothing is recorded twice.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tunery.fsio import publish
from tunery.jobs import events
from tunery.jobs.follow import checkpoint_metrics, finished_checkpoints, read_metrics
from tunery.jobs.layout import Home
from tunery.jobs.naming import checkpoint_model_name
from tunery.store import CheckpointRecord, JobRecord, ModelRecord, Store
from tunery.store.ids import new_id

# OpenAI keeps a job's last three checkpoints; so do we (older copies are removed).
KEEP_CHECKPOINTS = 3
# Optimizer and RNG state: needed to resume the run, not to serve the checkpoint.
_NOT_SERVED = shutil.ignore_patterns("trainer_state.pt", "*.tmp*")


def model_kind(model_dir: Path) -> str:
    return "lora" if (model_dir / "adapter_config.json").is_file() else "full"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # instant and free while both names exist
    except OSError:
        shutil.copy2(src, dst)


def copy_checkpoint(source: Path, target: Path) -> bool:
    """Copy a checkpoint's servable files to `target` atomically; False if it vanished meanwhile."""
    if target.is_dir():
        return True
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, tmp, copy_function=_link_or_copy, ignore=_NOT_SERVED)
    except (FileNotFoundError, shutil.Error):  # the trainer rotated it away while we copied
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    publish(tmp, target)
    return True


def phase_message(phase: dict) -> str:
    """ "Evaluating: 40/100 validation answers, ETA 12s" for the phase status.json records."""
    from tunery.eval.progress import format_eta

    done, total = phase.get("done", 0), phase.get("total", 0)
    eta = f", {format_eta(phase['eta_s'])}" if phase.get("eta_s") is not None and done < total else ""
    return f"Evaluating: {done}/{total} validation answers{eta}"


def _current_phase(run_dir: Path) -> dict | None:
    """The trainer's phase after its steps (the final evaluation), from status.json, or None."""
    from tunery.train.rundir import RunDir

    try:
        phase = (RunDir(run_dir).read_status() or {}).get("phase")
    except (OSError, ValueError):  # replaced while read: the next tick sees it
        return None
    return phase if phase and phase.get("name") == "evaluating" else None


def _phase_event(store: Store, job: JobRecord, phase: dict | None):
    """An event when the phase moved on since the last one, else None."""
    if phase is None:
        return None
    text = phase_message(phase)
    newest = store.list_events(job.id, limit=1).items
    # One event per batch of answers: the ETA alone changing is no news.
    if newest and newest[0].message.split(", ETA")[0] == text.split(", ETA")[0]:
        return None
    return events.message(job.id, text)


def ingest(store: Store, home: Home, job: JobRecord, *, final: bool = False) -> None:
    """Turn what the trainer wrote since the last call into events, checkpoints and models."""
    run_dir = home.run_dir(job.id)
    metrics_file = run_dir / "metrics.jsonl"
    offset = job.metrics_offset
    if metrics_file.exists() and metrics_file.stat().st_size < offset:
        offset = 0  # the trainer rewrote the file on resume; steps already reported are skipped below
    checkpoints = finished_checkpoints(run_dir)
    update = read_metrics(metrics_file, offset, final=final, complete_through=max(checkpoints, default=0))
    new_steps = [s for s in update.steps if s.step > job.metrics_step]
    last_metrics = {s.step: s.data for s in update.steps}

    known = store.list_checkpoints(job.id, limit=1_000_000).items
    newest_known = max((c.step for c in known), default=0)
    added: list[tuple[CheckpointRecord, ModelRecord]] = []
    for step, path in sorted(checkpoints.items()):
        if step <= newest_known:
            continue
        target = home.checkpoint_copy(job.id, step)
        if not copy_checkpoint(path, target):
            continue
        name = checkpoint_model_name(job, step)
        now = int(time.time())
        added.append(
            (
                CheckpointRecord(
                    id=new_id("ftckpt_"),
                    job_id=job.id,
                    step=step,
                    created_at=now,
                    model=name,
                    metrics=checkpoint_metrics(target, last_metrics.get(step)),
                    path=str(target),
                ),
                ModelRecord(
                    id=name,
                    org=job.org,
                    base=job.model,
                    kind=model_kind(target),
                    path=str(target),
                    created_at=now,
                    job_id=job.id,
                    step=step,
                ),
            )
        )
    rotated = sorted([*known, *(c for c, _ in added)], key=lambda c: c.step)[:-KEEP_CHECKPOINTS]

    changes: dict = {"metrics_offset": update.offset}
    if new_steps:
        changes["metrics_step"] = new_steps[-1].step
        # OpenAI's trained_tokens is what it bills: every token of the examples, once per epoch. The
        # trainer logs each step's ("tokens"; the loss-token count is "loss_tokens"); the job sums them.
        changes["trained_tokens"] = (job.trained_tokens or 0) + sum(int(s.values.get("tokens") or 0) for s in new_steps)
    if update.latest_train:
        eta = update.latest_train.get("eta_s")
        changes["estimated_finish"] = int(time.time() + eta) if eta is not None else None
    phase = _current_phase(run_dir)
    if phase is not None and phase.get("done", 0) < phase.get("total", 0):
        # The steps are done and the ETA the last one gave is past: the evaluation's is the job's.
        eta = phase.get("eta_s")
        changes["estimated_finish"] = int(time.time() + eta) if eta is not None else None
    phase_event = _phase_event(store, job, phase)
    with store.transaction() as tx:
        for step in new_steps:
            tx.add_event(events.metrics(job.id, step))
        if phase_event is not None:
            tx.add_event(phase_event)
        for checkpoint, model in added:
            if tx.add_checkpoint(checkpoint):
                tx.add_model(model)
                tx.add_event(events.message(job.id, f"Checkpoint created at step {checkpoint.step}"))
        for old in rotated:
            tx.delete_checkpoint(old.id)
            tx.delete_model(old.model)
        tx.update_job(job.id, **changes)
    for old in rotated:
        if Path(old.path).is_relative_to(home.job_dir(job.id) / "checkpoints"):
            shutil.rmtree(old.path, ignore_errors=True)
