"""What a job's `tunery` extension block may name: only references its caller owns.

A run config setting that names a model, a file or a run directory (`tunery.train.config.names`) is
read by the trainer from the server's filesystem. Through the API its value is therefore never a
path: it is a model id the caller's `GET /v1/models` lists (a base model, or one of their own
fine-tuned models and checkpoints) or one of their own file ids, and the server puts its own
path for that reference into the job's run config. Anything else — a path, another
organisation's id, a hub id, a value of the wrong type — gets one and the same refusal, so a
caller learns nothing about what exists on the server or in other organisations.

Forwarded models (`settings.upstreams`) live on another server, so no job can train against them.
"""

from __future__ import annotations

from typing import Any

from tunery.serve.deps import Server
from tunery.serve.errors import APIError

WHAT = {"model": "a model id from GET /v1/models", "file": "the id of a file of yours", "run": None}


def refusal(param: str, what: str, keywords: list[str]) -> APIError:
    """The one error for every value of `param` that is not the caller's own reference."""
    allowed = [WHAT[what]] if WHAT[what] else []
    allowed += [repr(k) for k in keywords]
    message = f"{param} must be {' or '.join(allowed)}" if allowed else f"{param} cannot be set through the API"
    return APIError(400, message, param=param, code="invalid_reference")


def resolve_references(block: dict, param: str, server: Server, org: str, settings: dict[str, dict]) -> dict:
    """`block` (a job's `tunery` extension) with each naming setting's reference replaced by its path.

    Args:
        block: the caller's extension block (nested dicts, as sent).
        param: where the block sits in the request, for errors (`method.dpo.tunery`).
        settings: the naming settings the block may not pass through (dotted key → `names(...)`).

    Raises:
        APIError: 400 `invalid_reference`, the same for every refused value of a setting.
    """
    resolved = _copy(block)
    for key, spec in settings.items():
        *parents, leaf = key.split(".")
        node: Any = resolved
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node[leaf]
        if isinstance(value, str) and value in spec["keywords"]:
            continue
        path = _owned_path(value, spec["names"], server, org) if isinstance(value, str) else None
        if path is None:
            raise refusal(f"{param}.{key}", spec["names"], spec["keywords"])
        node[leaf] = path
    return resolved


def _owned_path(value: str, what: str, server: Server, org: str) -> str | None:
    """The server's path for a reference `org` owns, or None."""
    if what == "model":
        if value in server.settings.models:  # a base model: its configured reference
            return server.settings.models[value]
        record = server.store.get_model(value, org)
        return record.path if record is not None else None
    if what == "file":
        record = server.store.get_file(value, org)
        return record.path if record is not None and record.status != "error" else None
    return None  # a run directory is always the server's own choice


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value
