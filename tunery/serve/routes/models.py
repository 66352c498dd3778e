"""/v1/models: the configured base models, the forwarded models, and this organisation's fine-tuned
models and checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi import APIRouter, Depends, Request

from tunery.serve.auth import current_org
from tunery.serve.deps import Server, server_of
from tunery.serve.errors import APIError, not_found
from tunery.serve.types.models import Model, ModelDeleted, ModelList

router = APIRouter(prefix="/models", tags=["models"])

BASE_OWNER = "tunery"


def _base_created(server: Server, name: str) -> int:
    """When a base model arrived on this machine; 0 if it is not local yet (a hub id not fetched)."""
    from tunery.home import models_dir

    reference = server.settings.models[name]
    config = Path(reference).expanduser() / "config.json"
    if not config.is_file():  # an embedded model, converted into the model cache
        config = models_dir() / reference / "config.json"
    return int(config.stat().st_mtime) if config.is_file() else 0


def _shared_upstreams(server: Server) -> list[str]:
    """Forwarded names every organisation sees; a forwarded `ft:` model is listed as its owner's."""
    return [name for name in server.settings.upstreams if not name.startswith("ft:")]


@router.get("", response_model=ModelList)
def list_models(request: Request, org: str = Depends(current_org)) -> ModelList:
    server = server_of(request)
    bases = [
        Model(id=name, created=_base_created(server, name), owned_by=BASE_OWNER) for name in server.settings.models
    ]
    # A forwarded model lives on another server; when it arrived there is not known here.
    forwarded = [Model(id=name, created=0, owned_by=BASE_OWNER) for name in _shared_upstreams(server)]
    tuned = [Model(id=m.id, created=m.created_at, owned_by=m.org) for m in server.store.list_models(org)]
    return ModelList(data=bases + forwarded + tuned)


@router.get("/{model_id}", response_model=Model)
def retrieve_model(model_id: str, request: Request, org: str = Depends(current_org)) -> Model:
    server = server_of(request)
    if model_id in server.settings.models:
        return Model(id=model_id, created=_base_created(server, model_id), owned_by=BASE_OWNER)
    if model_id in _shared_upstreams(server):
        return Model(id=model_id, created=0, owned_by=BASE_OWNER)
    record = server.store.get_model(model_id, org)
    if record is None:
        raise not_found("model", model_id, param="model", code="model_not_found")
    return Model(id=record.id, created=record.created_at, owned_by=record.org)


@router.delete("/{model_id}", response_model=ModelDeleted)
def delete_model(model_id: str, request: Request, org: str = Depends(current_org)) -> ModelDeleted:
    """Delete a fine-tuned model or checkpoint and its weights. Base models cannot be deleted."""
    server = server_of(request)
    if model_id in server.settings.models:
        raise APIError(
            403,
            f"{model_id} is a base model; only fine-tuned models can be deleted",
            param="model",
            code="model_not_deletable",
        )
    if model_id in _shared_upstreams(server):
        raise APIError(
            403,
            f"{model_id} is forwarded to {server.settings.upstreams[model_id].url}; remove it from the server's "
            "upstreams to stop offering it",
            param="model",
            code="model_not_deletable",
        )
    record = server.store.get_model(model_id, org)
    if record is None:
        raise not_found("model", model_id, param="model", code="model_not_found")
    checkpoints = server.store.list_checkpoints(record.job_id, limit=1_000_000).items if record.job_id else []
    with server.store.transaction() as tx:
        deleted = tx.delete_model(model_id)
        for checkpoint in checkpoints:  # a deleted checkpoint model leaves the job's checkpoint list too
            if checkpoint.model == model_id:
                tx.delete_checkpoint(checkpoint.id)
    # A checkpoint at the final step shares the final directory: keep files another name still serves.
    still_used = any(m.path == record.path for m in server.store.list_models(job_id=record.job_id))
    if not still_used:
        server.engine.forget(Path(record.path))
        shutil.rmtree(record.path, ignore_errors=True)
    return ModelDeleted(id=model_id, deleted=deleted)
