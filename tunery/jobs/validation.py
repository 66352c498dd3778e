"""The `validating_files` step: check a new job's files and base model before it is queued.

Uploads were validated line by line already; this checks what only the job knows: that the
files belong to the job's organisation and still exist, that their format fits the method
(its `data_format` in tunery/train/methods.py), and that the base model loads.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tunery.data.formats import FORMATS
from tunery.errors import TuneryError
from tunery.jobs import events
from tunery.jobs.layout import Home
from tunery.jobs.outcome import fail, job_error
from tunery.jobs.states import move
from tunery.store import JobRecord, Store
from tunery.train.methods import BY_OPENAI_TYPE


def file_problem(store: Store, job: JobRecord, file_id: str, method: str) -> str | None:
    record = store.get_file(file_id, job.org)
    if record is None or not Path(record.path).is_file():
        return f"file {file_id} does not exist (it may have been deleted)"
    named = f"{record.filename} ({file_id})"  # the name the user uploaded it under, and its id
    if record.purpose != "fine-tune":
        return f"file {named} has purpose {record.purpose!r}, not 'fine-tune'"
    if method == "reinforcement":  # checked against the grader when the job was created
        return None
    if record.status != "processed":
        return f"file {named} failed validation: {record.status_details}"
    wanted = BY_OPENAI_TYPE[method].data_format
    if record.format != wanted:
        return (
            f"file {named} holds {record.format} examples, but method {method!r} trains on {wanted} examples"
            f" ({FORMATS[wanted].shape})"
        )
    return None


def validate_job(store: Store, home: Home, job: JobRecord) -> None:
    """Move one `validating_files` job to `queued`, or to `failed` with the reason."""
    method = job.method["type"]
    for param, file_id in (("training_file", job.training_file), ("validation_file", job.validation_file)):
        if file_id is None:
            continue
        problem = file_problem(store, job, file_id, method)
        if problem:
            fail(store, job, job_error(f"invalid_{param}", problem, param), sources=["validating_files"])
            return
    try:
        config = yaml.safe_load(home.job_config(job.id).read_text())
        from tunery.models import resolve_model

        resolve_model(config["model"])
    except (OSError, yaml.YAMLError, KeyError) as exc:
        fail(
            store,
            job,
            job_error("internal_error", f"the job's run config is unreadable: {exc}"),
            sources=["validating_files"],
        )
        return
    except TuneryError as exc:
        fail(store, job, job_error("model_not_available", str(exc), "model"), sources=["validating_files"])
        return
    with store.transaction() as tx:
        if move(tx, job.id, ["validating_files"], "queued"):
            tx.add_event(events.message(job.id, "Files validated, moving job to queued state"))
