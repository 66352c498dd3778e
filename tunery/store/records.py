"""The rows the store holds, as plain frozen dataclasses (the wire types live in `serve.types`).

Timestamps are Unix seconds, as in OpenAI's objects. JSON-ish columns (metadata, method,
metrics, ...) are already decoded here, so callers never see serialised text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

FileStatus = Literal["uploaded", "processed", "error"]
JobStatus = Literal["validating_files", "queued", "running", "pausing", "paused", "succeeded", "failed", "cancelled"]


class UnknownCursor(ValueError):
    """A pagination `after` id that names no object in the listed collection."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


@dataclass(frozen=True)
class FileRecord:
    id: str
    org: str
    filename: str  # as the client sent it; shown, never used as a path
    purpose: str
    bytes: int
    created_at: int
    status: FileStatus
    path: str  # where the bytes live, named after the id
    status_details: str | None = None
    format: str | None = None  # "chat" | "preference" for validated fine-tune files
    examples: int | None = None


@dataclass(frozen=True)
class JobRecord:
    id: str
    org: str
    model: str  # the base model's served name
    training_file: str
    status: JobStatus
    created_at: int
    seed: int
    method: dict  # {"type": ..., "<type>": {"hyperparameters": {...}, "tunery": {...}}}
    hyperparameters: dict  # as requested ("auto" allowed), later the resolved values
    validation_file: str | None = None
    suffix: str | None = None
    metadata: dict | None = None
    error: dict | None = None  # {"code", "message", "param"}
    fine_tuned_model: str | None = None
    result_files: list[str] = field(default_factory=list)
    trained_tokens: int | None = None
    finished_at: int | None = None
    estimated_finish: int | None = None
    integrations: list | None = None  # OpenAI's: [{"type": "wandb", "wandb": {...}}, ...] as accepted
    # Worker bookkeeping, not part of the wire object:
    resume: bool = False  # start with `tunery train --resume` rather than from scratch
    trainer_pid: int | None = None
    metrics_offset: int = 0  # bytes of metrics.jsonl already turned into events
    metrics_step: int = 0  # the last step reported as an event; a resumed trainer repeats some
    attempts: int = 0  # launches of the trainer so far
    worker: str | None = None  # the worker holding the job's lease (the last to run it)
    lease_until: float | None = None  # Unix seconds, database clock; another worker may take over after


@dataclass(frozen=True)
class EventRecord:
    id: str
    job_id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict | None = None


@dataclass(frozen=True)
class CheckpointRecord:
    id: str
    job_id: str
    step: int
    created_at: int
    model: str  # its servable name, `ft:...:ckpt-step-N`
    metrics: dict
    path: str


@dataclass(frozen=True)
class ModelRecord:
    id: str  # the model name clients use
    org: str
    base: str  # the served name of the base model it applies to
    kind: Literal["lora", "full"]
    path: str
    created_at: int
    job_id: str | None = None
    step: int | None = None  # set for checkpoints
