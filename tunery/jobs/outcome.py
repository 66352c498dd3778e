"""How a job ends a trainer run: succeeded, failed, paused, or re-queued to resume.

Each function is one transaction that moves the job only if it is still in a status that
allows the move (a user may cancel at any moment); it returns whether the move happened.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

import yaml

from tunery.jobs import events
from tunery.jobs.follow import checkpoint_metrics
from tunery.jobs.layout import Home
from tunery.jobs.naming import checkpoint_model_name, fine_tuned_model_name
from tunery.jobs.progress import model_kind
from tunery.jobs.states import move
from tunery.store import CheckpointRecord, FileRecord, JobRecord, ModelRecord, Store
from tunery.store.ids import new_id
from tunery.train.config import flatten
from tunery.train.methods import BY_OPENAI_TYPE, METHODS

logger = logging.getLogger("tunery.jobs")

ACTIVE = ("running", "pausing")

# status.json error code → (OpenAI-style job error code, the request parameter at fault)
TRAINER_ERRORS = {
    "invalid_data": ("invalid_training_file", "training_file"),
    "nan_loss": ("nan_loss", None),
    "out_of_memory": ("out_of_memory", None),
    "config": ("invalid_hyperparameters", "hyperparameters"),
    "internal": ("internal_error", None),
}


# An absolute path in a message: the server's layout is not the caller's business, but its last
# part is (HOME/files/<file-id> names the caller's own file).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/'\"`:;,()]+/)+([^\s/'\"`:;,()]+)")


def job_error(code: str, message: str, param: str | None = None) -> dict:
    """An error as the job API returns it: a code and one line or two for the caller, without the
    server's paths (each shortened to its last part) or tracebacks, which go to the server log."""
    if "Traceback (most recent call last)" in message:
        logger.error("job error with a traceback, replaced for the caller: %s", message)
        message = "training stopped on an internal error; the server's log has the details"
    return {"code": code, "message": _ABSOLUTE_PATH.sub(r"\1", message), "param": param}


def error_from_status(
    status: dict | None, exit_code: int | None, log: Path, files: dict[str, str] | None = None
) -> dict:
    """The job error for a trainer that failed, from its status.json or, failing that, its exit.

    Args:
        files: uploaded file id → the name it was uploaded under, so the message speaks of
            `train.jsonl`, never of the server's path for it.
    """
    reported = (status or {}).get("error")
    if reported:
        code, param = TRAINER_ERRORS.get(reported.get("code"), ("internal_error", None))
        return job_error(code, in_user_terms(reported.get("message") or "training failed", files or {}), param)
    if exit_code is not None and exit_code < 0 and -exit_code == 9:
        return job_error(
            "out_of_memory",
            "The trainer was killed with SIGKILL, most likely by the operating system for lack of memory.",
        )
    # The log's tail is a traceback with the server's source paths: for the server's log only.
    logger.error("trainer exited with code %s without an outcome; last lines of %s:\n%s", exit_code, log, _tail(log))
    return job_error(
        "internal_error",
        f"The trainer exited with code {exit_code} without reporting an outcome; the server's log has the details.",
    )


_SERVER_FILE = re.compile(r"(?:[^\s:'\"`]*/)?\b(file-[A-Za-z0-9]+)\b")
_CLI_ONLY = re.compile(r"\s*Run `tunery validate [^`]*` for the full report\.?")


def in_user_terms(message: str, files: dict[str, str]) -> str:
    """A trainer's message as an API user reads it: uploaded files by the names they were given
    (the server's paths mean nothing to them), and no CLI command they cannot run on the server.

    >>> in_user_terms("/srv/h/files/file-ab1 has 1 error(s): file-ab1:3: bad. Run `tunery validate /srv/h/files/file-ab1` for the full report.", {"file-ab1": "train.jsonl"})
    "train.jsonl has 1 error(s): train.jsonl:3: bad. The file's page in the dashboard (/files/file-ab1) lists every issue."
    """
    pages = [f"/files/{m}" for m in dict.fromkeys(_SERVER_FILE.findall(message))]
    replaced = _SERVER_FILE.sub(lambda m: files.get(m[1], m[1]), _CLI_ONLY.sub("", message))
    if _CLI_ONLY.search(message) and pages:
        replaced += f" The file's page in the dashboard ({', '.join(pages)}) lists every issue."
    return replaced


def uploaded_names(store: Store, job: JobRecord) -> dict[str, str]:
    """The job's files: id → the name they were uploaded under."""
    names = {}
    for file_id in (job.training_file, job.validation_file):
        record = store.get_file(file_id, job.org) if file_id else None
        if record is not None:
            names[file_id] = record.filename
    return names


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def resolved_hyperparameters(home: Home, job: JobRecord) -> dict:
    """The hyperparameters the trainer actually used, from its resolved RUN_DIR/config.yaml."""
    try:
        config = yaml.safe_load((home.run_dir(job.id) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return job.hyperparameters
    resolved = dict(job.hyperparameters)
    for key in ("n_epochs", "batch_size", "learning_rate_multiplier"):
        if config.get(key) not in (None, "auto"):
            resolved[key] = config[key]
    if resolved.get("learning_rate_multiplier") == "auto":
        resolved["learning_rate_multiplier"] = resolved_multiplier(config)
    method = BY_OPENAI_TYPE.get(job.method.get("type"))
    for name, key in (method.openai_hyperparameters if method else {}).items():
        value = flatten(config).get(key)  # e.g. beta ← dpo.beta
        if value is not None:
            resolved[name] = value
    return resolved


def resolved_multiplier(config: dict) -> float | str:
    """The multiplier an "auto" job ran with: its resolved learning rate over the method's base
    rate (the trainer folds the multiplier into `learning_rate`); "auto" if the config lacks it."""
    method = METHODS.get(config.get("method"))
    base = method.base_lr.get(config.get("adapter")) if method else None
    rate = config.get("learning_rate")
    if base is None or not isinstance(rate, int | float):
        return "auto"
    return round(rate / base, 6)


def succeed(store: Store, home: Home, job: JobRecord, status: dict) -> bool:
    """Register the final model (and its last checkpoint) and the results file; mark succeeded."""
    final = home.run_dir(job.id) / "final"
    name = fine_tuned_model_name(job)
    now = int(time.time())
    kind = model_kind(final)
    result_file = _store_results_csv(home, job, now)
    # The step final/'s weights are from: the best one when early stopping or select=best chose it.
    step = int(final_manifest(final).get("step") or status.get("step") or status.get("total_steps") or 0)
    has_checkpoint = any(c.step >= step for c in store.list_checkpoints(job.id, limit=1_000_000).items)
    with store.transaction() as tx:
        moved = move(
            tx,
            job.id,
            ACTIVE,
            "succeeded",
            fine_tuned_model=name,
            result_files=[result_file.id] if result_file else [],
            finished_at=now,
            estimated_finish=None,
            trainer_pid=None,
            hyperparameters=resolved_hyperparameters(home, job),
        )
        if not moved:
            return False
        tx.add_model(
            ModelRecord(id=name, org=job.org, base=job.model, kind=kind, path=str(final), created_at=now, job_id=job.id)
        )
        if not has_checkpoint and step:
            # OpenAI lists the final step among the checkpoints; it is the final model itself.
            ckpt = checkpoint_model_name(job, step)
            tx.add_checkpoint(
                CheckpointRecord(
                    id=new_id("ftckpt_"),
                    job_id=job.id,
                    step=step,
                    created_at=now,
                    model=ckpt,
                    metrics=checkpoint_metrics(final),
                    path=str(final),
                )
            )
            tx.add_model(
                ModelRecord(
                    id=ckpt,
                    org=job.org,
                    base=job.model,
                    kind=kind,
                    path=str(final),
                    created_at=now,
                    job_id=job.id,
                    step=step,
                )
            )
        if result_file:
            tx.add_file(result_file)
        stopped = final_manifest(final).get("early_stopping")
        if stopped:
            tx.add_event(events.message(job.id, stopped["message"]))
        selection = selected_checkpoint(final)
        if selection:
            tx.add_event(events.message(job.id, selection))
        tx.add_event(events.message(job.id, f"New fine-tuned model created: {name}"))
        tx.add_event(events.message(job.id, "The job has successfully completed"))
    return True


def final_manifest(final: Path) -> dict:
    """final/tunery.json, or {} when it cannot be read."""
    try:
        manifest = json.loads((final / "tunery.json").read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def selected_checkpoint(final: Path) -> str | None:
    """The event text for a run that chose its final model among its checkpoints (select=best)."""
    selection = final_manifest(final).get("selection")
    if not selection:
        return None
    scores = "; ".join(
        f"step {s['step']}: loss {s['loss']:.4f}"
        + ("" if s.get("score") is None else f", {s['metric']} {s['score']:.3f}")
        for s in selection["scores"]
    )
    return f"Selected the checkpoint at {selection['reason']} as the fine-tuned model ({scores})"


def _store_results_csv(home: Home, job: JobRecord, now: int) -> FileRecord | None:
    source = home.run_dir(job.id) / "results.csv"
    if not source.is_file():
        return None
    file_id = new_id("file-")
    target = home.file_path(file_id)
    shutil.copyfile(source, target)
    return FileRecord(
        id=file_id,
        org=job.org,
        filename="step_metrics.csv",
        purpose="fine-tune-results",
        bytes=target.stat().st_size,
        created_at=now,
        status="processed",
        path=str(target),
    )


def fail(store: Store, job: JobRecord, error: dict, sources=ACTIVE) -> bool:
    with store.transaction() as tx:
        moved = move(
            tx,
            job.id,
            sources,
            "failed",
            error=error,
            finished_at=int(time.time()),
            estimated_finish=None,
            trainer_pid=None,
        )
        if moved:
            tx.add_event(events.message(job.id, f"Fine-tuning job failed: {error['message']}", level="error"))
    return moved


def pause(store: Store, job: JobRecord, step: int) -> bool:
    with store.transaction() as tx:
        moved = move(tx, job.id, ["pausing"], "paused", resume=True, trainer_pid=None, estimated_finish=None)
        if moved:
            tx.add_event(events.message(job.id, f"Fine-tuning job paused at step {step}"))
    return moved


def requeue(store: Store, job: JobRecord, *, resume: bool, reason: str) -> bool:
    """Put a job whose trainer stopped unexpectedly back at its place in the queue."""
    with store.transaction() as tx:
        moved = move(tx, job.id, ACTIVE, "queued", resume=resume, trainer_pid=None, estimated_finish=None)
        if moved:
            tx.add_event(events.message(job.id, reason, level="warn"))
    return moved


def note_stopped_after_cancel(store: Store, job: JobRecord, step: int) -> None:
    with store.transaction() as tx:
        tx.update_job(job.id, trainer_pid=None, estimated_finish=None)
        where = f"at step {step}" if step else "before its first step"
        tx.add_event(events.message(job.id, f"Training stopped {where} after the job was cancelled"))
