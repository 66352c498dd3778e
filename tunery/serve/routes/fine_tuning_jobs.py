"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints.

The API never trains: it validates the request, writes the job's run config and a
`validating_files` row, and changes statuses. The worker process does the rest.
"""

from __future__ import annotations

import json
import secrets
import time
from functools import partial
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from tunery.jobs import events
from tunery.jobs.run_config import build_run_config
from tunery.jobs.states import move, sources_of
from tunery.serve.auth import current_org
from tunery.serve.deps import Server, server_of
from tunery.serve.errors import APIError, not_found
from tunery.serve.pagination import cursor_page
from tunery.serve.references import resolve_references
from tunery.serve.types.fine_tuning import (
    RESERVED_RUN_KEYS,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobCreateRequest,
    SupervisedMethod,
)
from tunery.serve.types.shared import CursorPage
from tunery.store import JobRecord
from tunery.store.ids import new_id
from tunery.train.config import merge
from tunery.train.methods import BY_OPENAI_TYPE
from tunery.train.rundir import atomic_write

router = APIRouter(prefix="/fine_tuning/jobs", tags=["fine-tuning"])


def normalise_method(body: JobCreateRequest) -> dict:
    """`{type, <type>: {hyperparameters: {...all keys...}, tunery: {...}}}` from the request.

    The deprecated top-level `hyperparameters` means a supervised job with those values.
    """
    if body.method is None:
        block = SupervisedMethod(hyperparameters=body.hyperparameters) if body.hyperparameters else SupervisedMethod()
        return {"type": "supervised", "supervised": block.model_dump(mode="json")}
    kind = body.method.type
    if kind not in BY_OPENAI_TYPE:
        supported = " or ".join(repr(name) for name in BY_OPENAI_TYPE)
        raise APIError(
            400,
            f"method {kind!r} is not supported yet; use {supported}",
            param="method.type",
            code="unsupported_method",
        )
    for other in body.method.given_blocks():
        if other != kind:
            raise APIError(400, f"method.{other} is given but method.type is {kind!r}", param=f"method.{other}")
    if kind == "reinforcement" and (body.method.reinforcement is None or body.method.reinforcement.grader is None):
        raise APIError(
            400,
            "method.reinforcement.grader is required: the grader defines what a good answer is",
            param="method.reinforcement.grader",
        )
    block = body.method.block()
    if body.hyperparameters is not None:
        if kind != "supervised" or "hyperparameters" in block.model_fields_set:
            raise APIError(
                400,
                "give hyperparameters either in method.<type>.hyperparameters or in the deprecated "
                "top-level field (supervised jobs only), not both",
                param="hyperparameters",
            )
        block = block.model_copy(update={"hyperparameters": body.hyperparameters})
    return {"type": kind, kind: block.model_dump(mode="json")}


def _usable_file(server: Server, file_id: str, org: str, param: str) -> Path:
    record = server.store.get_file(file_id, org)
    if record is None:
        raise APIError(400, f"invalid {param}: no such file {file_id}", param=param, code=f"invalid_{param}")
    if record.purpose != "fine-tune":
        raise APIError(
            400,
            f"invalid {param}: file {file_id} has purpose {record.purpose!r}; upload it with purpose 'fine-tune'",
            param=param,
            code=f"invalid_{param}",
        )
    if record.status == "error":
        raise APIError(
            400,
            f"invalid {param}: file {file_id} failed validation: {record.status_details}",
            param=param,
            code=f"invalid_{param}",
        )
    return Path(record.path)


def _prompts_file(server: Server, file_id: str, org: str, param: str, *, grader: dict) -> Path:
    """A reinforcement job's prompts: checked against the RFT rules and the grader's {{item.x}}
    fields here, since the upload's own check expects an assistant answer on every line."""
    from tunery.data.rft import validate_rft_file
    from tunery.graders.grading import item_fields
    from tunery.graders.objects import parse_grader

    record = server.store.get_file(file_id, org)
    if record is None or record.purpose != "fine-tune":
        return _usable_file(server, file_id, org, param)  # the same refusal as for other methods
    fields = item_fields(parse_grader(grader["reinforcement"]["grader"]))
    _, issues = validate_rft_file(record.path, fields)
    if issues:
        first = "; ".join(f"line {i.line}: {i.code}: {i.message}" for i in issues[:3])
        raise APIError(
            400,
            f"invalid {param}: file {file_id} is not reinforcement fine-tuning data ({len(issues)} problem(s)): {first}",
            param=param,
            code=f"invalid_{param}",
        )
    return Path(record.path)


# Files this big are checked for overlap by the trainer, after the job is created, rather than
# here: the request would wait several seconds for the scan.
OVERLAP_CHECK_MAX_BYTES = 64 << 20


def _refuse_overlap(server: Server, body: JobCreateRequest, org: str, data: Path, validation: Path) -> None:
    """A validation file that shares examples with the training file measures nothing unseen."""
    from tunery.data.validate import validate_file

    train_name = server.store.get_file(body.training_file, org).filename
    if body.validation_file == body.training_file:
        raise APIError(
            400,
            f"validation_file is the training file ({train_name}): validation would measure examples the "
            "model trains on; upload a separate validation file of held-out examples, or leave it out",
            param="validation_file",
            code="train_validation_overlap",
        )
    if data.stat().st_size + validation.stat().st_size > OVERLAP_CHECK_MAX_BYTES:
        return
    shared = [i for i in validate_file(data, validation=validation).errors if i.code == "train_validation_overlap"]
    if shared:
        valid_name = server.store.get_file(body.validation_file, org).filename
        first = shared[0]
        raise APIError(
            400,
            f"validation_file {valid_name} shares {len(shared)} example(s) with training_file {train_name} "
            f"(first: {train_name} line {first.line}, {first.message}); remove them from one of the two files, "
            "so validation measures unseen data",
            param="validation_file",
            code="train_validation_overlap",
        )


def _check_run_config(config: dict, kind: str) -> None:
    from tunery.train.config import RunConfig, describe_errors

    try:
        RunConfig.model_validate(config)
    except ValidationError as exc:
        raise APIError(
            400,
            describe_errors(exc, f"method.{kind}.tunery / hyperparameters").replace("\n", ";"),
            param=f"method.{kind}",
        ) from None


@router.post("", response_model=FineTuningJob)
def create_job(body: JobCreateRequest, request: Request, org: str = Depends(current_org)) -> FineTuningJob:
    server = server_of(request)
    method = normalise_method(body)
    if body.model not in server.settings.models:
        raise APIError(
            400,
            f"model {body.model!r} is not available for fine-tuning here; available: {sorted(server.settings.models)}",
            param="model",
            code="model_not_available",
        )
    usable = _usable_file if method["type"] != "reinforcement" else partial(_prompts_file, grader=method)
    data = usable(server, body.training_file, org, "training_file")
    validation = usable(server, body.validation_file, org, "validation_file") if body.validation_file else None
    if validation is not None and method["type"] != "reinforcement":  # RFT's held-out prompts have no answers
        _refuse_overlap(server, body, org, data, validation)

    job_id = new_id("ftjob-")
    grader = None
    if method["type"] == "reinforcement":
        grader = server.home.job_dir(job_id) / "grader.json"
        grader.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(grader, json.dumps(method["reinforcement"]["grader"], indent=2))
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    config_of = partial(
        build_run_config,
        seed=seed,
        model=server.settings.models[body.model],
        data=data,
        validation=validation,
        output=server.home.run_dir(job_id),
        files={"grader": grader} if grader else None,
    )
    with_paths = _with_paths(method, server, org)  # first: one refusal for every value it does not own
    tracking = tracking_settings(body.integrations or [], job_id=job_id, model=body.model, home=server.home.root)
    # Checked as the caller wrote it, so no error can quote a server path.
    _check_run_config(merge(config_of(method=method), tracking), method["type"])
    _write_config(server.home.job_config(job_id), merge(config_of(method=with_paths), tracking))

    hyperparameters = dict(method[method["type"]]["hyperparameters"])
    record = JobRecord(
        id=job_id,
        org=org,
        model=body.model,
        training_file=body.training_file,
        status="validating_files",
        created_at=int(time.time()),
        seed=seed,
        method=method,
        hyperparameters=hyperparameters,
        validation_file=body.validation_file,
        suffix=body.suffix or None,
        metadata=body.metadata,
        integrations=[i.model_dump(mode="json", exclude_none=True) for i in body.integrations or []] or None,
    )
    with server.store.transaction() as tx:
        tx.add_job(record)
        tx.add_event(events.message(job_id, f"Created fine-tuning job: {job_id}"))
        tx.add_event(
            events.message(
                job_id,
                f"Validating training file: {body.training_file}"
                + (f" and validation file: {body.validation_file}" if body.validation_file else ""),
            )
        )
    return FineTuningJob.of(record)


def tracking_settings(integrations: list, *, job_id: str, model: str, home: Path) -> dict:
    """The run config's `report_to` and `tracking` for a job's `integrations` (none: {}).

    W&B's fields map one to one (the run name defaults to the job id and the tags get tunery's own,
    as OpenAI's do); MLflow logs to the server's MLFLOW_TRACKING_URI, else a SQLite store in
    TUNERY_HOME; TensorBoard writes into the run directory. No path comes from the caller.
    """
    import os

    if not integrations:
        return {}
    kinds = [i.type for i in integrations]
    if len(set(kinds)) != len(kinds):
        raise APIError(400, f"integrations name a type twice: {kinds}", param="integrations")
    by_type = {i.type: i for i in integrations}
    tracking: dict = {"name": job_id}
    wandb, mlflow = by_type.get("wandb"), by_type.get("mlflow")
    if wandb and mlflow and wandb.wandb.project != mlflow.mlflow.experiment:
        raise APIError(
            400,
            "wandb.project and mlflow.experiment name one project for the run; give them the same name",
            param="integrations",
        )
    if wandb:
        settings = wandb.wandb
        tags = ["tunery/finetune", f"tunery/{model}", f"tunery/{job_id}", *(settings.tags or [])]
        tracking.update(project=settings.project, wandb_entity=settings.entity, wandb_tags=tags)
        tracking["name"] = settings.name or job_id
    if mlflow:
        tracking["project"] = mlflow.mlflow.experiment
        tracking["name"] = (mlflow.mlflow.name if not wandb else None) or tracking["name"]
        tracking["mlflow_uri"] = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    return {"report_to": kinds, "tracking": {k: v for k, v in tracking.items() if v is not None}}


def _with_paths(method: dict, server: Server, org: str) -> dict:
    """`method` with each model or file its extension block names replaced by the server's path
    (the job record keeps the caller's ids; only the run config holds paths)."""
    from tunery.train.config import naming_settings

    kind = method["type"]
    block = method[kind].get("tunery") or {}
    settings = {key: spec for key, spec in naming_settings().items() if key.split(".")[0] not in RESERVED_RUN_KEYS}
    resolved = resolve_references(block, f"method.{kind}.tunery", server, org, settings)
    return {**method, kind: {**method[kind], "tunery": resolved}}


def _write_config(path: Path, config: dict) -> None:
    import yaml

    from tunery.fsio import atomic_write

    atomic_write(path, yaml.safe_dump(config, sort_keys=False))


def _metadata_filter(request: Request) -> dict[str, str] | None:
    """`metadata[key]=value` query pairs, as the client sends a metadata filter; None for the
    literal `metadata=null`, which OpenAI defines as "jobs without metadata"."""
    found, null = {}, False
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            found[key[len("metadata[") : -1]] = value
        elif key == "metadata" and value == "null":
            null = True
        elif key == "metadata":
            raise APIError(400, "filter metadata as metadata[key]=value, or metadata=null", param="metadata")
    if null and found:
        raise APIError(400, "send metadata=null or metadata[key]=value filters, not both", param="metadata")
    return None if null else found


@router.get("", response_model=CursorPage[FineTuningJob])
def list_jobs(
    request: Request, org: str = Depends(current_org), after: str | None = None, limit: int = Query(20, ge=1, le=100)
) -> CursorPage[FineTuningJob]:
    store = server_of(request).store
    metadata = _metadata_filter(request)
    return cursor_page(
        lambda: store.list_jobs(
            org, after=after, limit=limit, metadata=metadata or {}, without_metadata=metadata is None
        ),
        FineTuningJob.of,
        "fine-tuning job",
        after,
    )


def _own_job(request: Request, job_id: str, org: str) -> JobRecord:
    job = server_of(request).store.get_job(job_id, org)
    if job is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    return job


@router.get("/{job_id}", response_model=FineTuningJob)
def retrieve_job(job_id: str, request: Request, org: str = Depends(current_org)) -> FineTuningJob:
    return FineTuningJob.of(_own_job(request, job_id, org))


def _transition(
    request: Request, job_id: str, org: str, target: str, verb: str, message: str, **fields
) -> FineTuningJob:
    _own_job(request, job_id, org)  # 404 for a job of another organisation
    store = server_of(request).store
    allowed = sources_of(target)
    with store.transaction() as tx:
        moved = move(tx, job_id, allowed, target, **fields)
        if moved:
            tx.add_event(events.message(job_id, message))
    if not moved:
        current = store.get_job(job_id).status
        raise APIError(
            409,
            f"job {job_id} is {current} and cannot be {verb}; only jobs that are {' or '.join(sorted(allowed))} can",
            code="invalid_job_state",
        )
    return FineTuningJob.of(store.get_job(job_id))


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
def cancel_job(job_id: str, request: Request, org: str = Depends(current_org)) -> FineTuningJob:
    now = int(time.time())
    error = {"code": "cancelled", "message": "The job was cancelled.", "param": None}
    return _transition(
        request,
        job_id,
        org,
        "cancelled",
        "cancelled",
        "Fine-tuning job cancelled",
        error=error,
        finished_at=now,
        estimated_finish=None,
    )


@router.post("/{job_id}/pause", response_model=FineTuningJob)
def pause_job(job_id: str, request: Request, org: str = Depends(current_org)) -> FineTuningJob:
    return _transition(
        request, job_id, org, "pausing", "paused", "Pausing fine-tuning job: the trainer will checkpoint and stop"
    )


@router.post("/{job_id}/resume", response_model=FineTuningJob)
def resume_job(job_id: str, request: Request, org: str = Depends(current_org)) -> FineTuningJob:
    job = _own_job(request, job_id, org)
    if job.status != "paused":  # `queued` is also reached from validating_files and running
        raise APIError(
            409, f"job {job_id} is {job.status} and cannot be resumed; only paused jobs can", code="invalid_job_state"
        )
    return _transition(
        request,
        job_id,
        org,
        "queued",
        "resumed",
        "Fine-tuning job resumed: queued to continue from its last checkpoint",
        resume=True,
    )


@router.get("/{job_id}/events", response_model=CursorPage[FineTuningJobEvent])
def list_events(
    job_id: str,
    request: Request,
    org: str = Depends(current_org),
    after: str | None = None,
    limit: int = Query(20, ge=1, le=1000),
) -> CursorPage[FineTuningJobEvent]:
    _own_job(request, job_id, org)
    store = server_of(request).store
    return cursor_page(
        lambda: store.list_events(job_id, after=after, limit=limit), FineTuningJobEvent.of, "event", after
    )


@router.get("/{job_id}/checkpoints", response_model=CursorPage[FineTuningJobCheckpoint])
def list_checkpoints(
    job_id: str,
    request: Request,
    org: str = Depends(current_org),
    after: str | None = None,
    limit: int = Query(10, ge=1, le=100),
) -> CursorPage[FineTuningJobCheckpoint]:
    _own_job(request, job_id, org)
    store = server_of(request).store
    return cursor_page(
        lambda: store.list_checkpoints(job_id, after=after, limit=limit),
        FineTuningJobCheckpoint.of,
        "checkpoint",
        after,
    )
