"""/v1/tunery/jobs/...: a job's metrics series, its resolved run config, and progress for the job list.

The curves come from the run's `metrics.jsonl`, the file `tunery plot` and the results CSV are
made from, so the browser shows exactly what the CSV holds. Server paths in configs are replaced
by what the client knows them as (file ids, the base model's served name).

Task score against forgetting per checkpoint is what `tunery compare --checkpoints
HOME/jobs/JOB/run --data HELD_OUT.jsonl` wrote into the run (checkpoints.json and
checkpoints.png), shown as it is, with names for the server's paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ValidationError

from tunery.eval.tradeoff import TradeoffReport
from tunery.jobs.states import TRANSITIONS
from tunery.serve.auth import current_org
from tunery.serve.deps import server_of
from tunery.serve.errors import not_found
from tunery.store import JobRecord
from tunery.train.rundir import RunDir

router = APIRouter(prefix="/jobs", tags=["dashboard"])

LOG_TAIL_LINES = 40
_TAIL_BYTES = 64 * 1024  # the last train record is well within this (records are ~400 bytes)


class MetricsPage(BaseModel):
    job_id: str
    records: list[dict]  # metrics.jsonl records (train, valid, full_valid) from `offset` on
    offset: int  # pass it back as ?offset= to get only newer records
    reset: bool  # the file was rewritten (a resumed run drops steps past its checkpoint): start over


class JobDetails(BaseModel):
    job_id: str
    requested_config: dict  # what the API asked the trainer for ("auto" where the request said so)
    run_config: dict | None  # every setting the trainer actually used; None until it has started
    run_status: dict | None  # the trainer's status.json
    log_tail: list[str]  # the trainer's last output lines, for failed jobs only
    actions: dict[str, list[str]]  # status → the buttons that apply (cancel, pause, resume)
    trackers: list[dict]  # the job's tracker runs: type, what (no server path), url when online
    checkpoint_tradeoff: dict | None = None  # `tunery compare --checkpoints` on the run, if it was run


class Progress(BaseModel):
    step: int
    total_steps: int
    epoch: float | None = None


class ProgressList(BaseModel):
    data: dict[str, Progress]  # job id → progress, for jobs whose trainer has logged a step


def _own_job(request: Request, job_id: str, org: str) -> JobRecord:
    job = server_of(request).store.get_job(job_id, org)
    if job is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    return job


def last_train_record(metrics_file: Path) -> dict | None:
    """The newest `train` record of a metrics.jsonl, read from its tail only."""
    try:
        with metrics_file.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - _TAIL_BYTES))
            tail = fh.read()
    except FileNotFoundError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:  # the first, cut-off line of the tail, or a torn last line
            continue
        if isinstance(record, dict) and record.get("type") == "train":
            return record
    return None


@router.get("/progress", response_model=ProgressList)
def jobs_progress(
    request: Request, org: str = Depends(current_org), limit: int = Query(100, ge=1, le=100)
) -> ProgressList:
    """Step / total steps of the organisation's newest jobs."""
    server = server_of(request)
    found = {}
    for job in server.store.list_jobs(org, limit=limit).items:
        record = last_train_record(server.home.run_dir(job.id) / "metrics.jsonl")
        if record and record.get("total_steps"):
            found[job.id] = Progress(step=record["step"], total_steps=record["total_steps"], epoch=record.get("epoch"))
    return ProgressList(data=found)


@router.get("/{job_id}/metrics", response_model=MetricsPage)
def job_metrics(
    job_id: str, request: Request, org: str = Depends(current_org), offset: int = Query(0, ge=0)
) -> MetricsPage:
    """The run's metrics records after the first `offset`; poll with the returned offset."""
    _own_job(request, job_id, org)
    records = RunDir(server_of(request).home.run_dir(job_id)).read_metrics()
    reset = offset > len(records)
    return MetricsPage(job_id=job_id, records=records[0 if reset else offset :], offset=len(records), reset=reset)


def public_config(config: dict, job: JobRecord) -> dict:
    """A run config with the server's paths replaced by the names the client used."""
    named = {"model": job.model, "data": job.training_file, "validation": job.validation_file}
    return {key: named.get(key, value) for key, value in config.items() if key != "output"}


# The API's verbs and the status each moves a job to (see routes/fine_tuning_jobs.py).
_VERBS = {"cancel": "cancelled", "pause": "pausing", "resume": "queued"}


def job_actions() -> dict[str, list[str]]:
    """For each status, the verbs the state machine allows; resume applies to paused jobs only."""
    allowed = {}
    for status, targets in TRANSITIONS.items():
        verbs = [verb for verb, target in _VERBS.items() if target in targets]
        allowed[status] = [v for v in verbs if v != "resume" or status == "paused"]
    return allowed


def _read_yaml(path: Path) -> dict | None:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return None


@router.get("/{job_id}/details", response_model=JobDetails)
def job_details(job_id: str, request: Request, org: str = Depends(current_org)) -> JobDetails:
    job = _own_job(request, job_id, org)
    home = server_of(request).home
    requested = _read_yaml(home.job_config(job_id)) or {}
    resolved = _read_yaml(RunDir(home.run_dir(job_id)).config_file)
    tail: list[str] = []
    if job.status == "failed":
        try:
            tail = home.train_log(job_id).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except FileNotFoundError:
            pass
    return JobDetails(
        job_id=job_id,
        requested_config=public_config(requested, job),
        run_config=public_config(resolved, job) if resolved is not None else None,
        run_status=RunDir(home.run_dir(job_id)).read_status(),
        log_tail=tail,
        actions=job_actions(),
        trackers=tracker_links(home.run_dir(job_id)),
        checkpoint_tradeoff=checkpoint_tradeoff(home.run_dir(job_id)),
    )


TRADEOFF_JSON, TRADEOFF_PNG = "checkpoints.json", "checkpoints.png"


def checkpoint_tradeoff(run_dir: Path) -> dict | None:
    """The run's checkpoints.json as `tunery compare --checkpoints` wrote it, with each path
    replaced by its name (the checkpoint's folder, the held-out file); None when there is none."""
    try:
        report = TradeoffReport.model_validate_json((run_dir / TRADEOFF_JSON).read_text())
    except (FileNotFoundError, ValidationError):
        return None
    shown = report.model_dump(mode="json", exclude={"run", "plot"})
    shown["data"] = Path(report.data).name
    for row in shown["checkpoints"]:
        row["path"] = Path(row["path"]).name
    shown["plot"] = (run_dir / TRADEOFF_PNG).is_file()
    return shown


@router.get("/{job_id}/checkpoints.png", response_class=FileResponse)
def checkpoint_tradeoff_plot(job_id: str, request: Request, org: str = Depends(current_org)) -> FileResponse:
    """The PNG `tunery compare --checkpoints` drew beside the run's loss.png."""
    _own_job(request, job_id, org)
    path = server_of(request).home.run_dir(job_id) / TRADEOFF_PNG
    if not path.is_file():
        raise not_found("checkpoint comparison of job", job_id, param="fine_tuning_job_id")
    return FileResponse(path, media_type="image/png")


def tracker_links(run_dir: Path) -> list[dict]:
    """Where the run's trackers (trackers.json) put it, said without the server's paths."""
    from tunery.train.trackers import TRACKERS_FILE

    try:
        links = json.loads((run_dir / TRACKERS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    what = {
        "wandb": lambda t: (
            f"W&B run {t.get('run_id')}"
            + (" (offline: `wandb sync` the run directory's wandb/ to upload it)" if t.get("mode") == "offline" else "")
        ),
        "mlflow": lambda t: f"MLflow run {t.get('run_id')} in experiment {t.get('experiment_id')}",
        "tensorboard": lambda t: "TensorBoard event files in the run directory's tensorboard/",
    }
    return [
        {"type": t["type"], "what": what[t["type"]](t), "url": t.get("url")} for t in links if t.get("type") in what
    ]
