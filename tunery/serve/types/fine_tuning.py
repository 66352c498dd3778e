"""Fine-tuning jobs, as openai-python's `types/fine_tuning/` (job, event, checkpoint, create params).

The request side rejects what tunery cannot honour instead of ignoring it. `method.<type>.tunery`
is tunery's extension block for settings OpenAI has no field for: any `tunery train` config key
(`adapter: lora|full`, `lora: {r, alpha, ...}`, `max_steps`, `max_seq_len`, ...) except the ones
the request already sets through OpenAI's own fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunery.store import CheckpointRecord, EventRecord, JobRecord

Auto = Literal["auto"]
# These come from OpenAI's fields (or from the server); the extension block may not set them.
RESERVED_RUN_KEYS = frozenset(
    {"model", "data", "validation", "output", "method", "seed", "n_epochs", "batch_size", "learning_rate_multiplier",
     "report_to", "tracking"}  # trackers come from `integrations`, where the server picks their paths
)  # fmt: skip


class _Request(BaseModel):
    # NaN and infinity parse from JSON (Python reads `NaN`, `Infinity`, `1e999`) but are no setting.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Wide enough for any real run (long test jobs use 1000 epochs); beyond them a value is a typo,
# and n_epochs=10**9 would plan a run that never ends.
WHOLE = {
    "n_epochs": (1, 10_000),
    "batch_size": (1, 65_536),
    "eval_interval": (1, 1_000_000),
    "eval_samples": (1, 100_000),
}
POSITIVE = {"learning_rate_multiplier": 1000, "beta": 100, "compute_multiplier": 100}  # 0 < value <= high


def _within_bounds(name: str, value):
    if value == "auto":
        return value
    if name in WHOLE:
        low, high = WHOLE[name]
        if not low <= value <= high:
            raise ValueError(f"{name} must be 'auto' or a whole number from {low} to {high}, got {value!r}")
    elif not 0 < value <= POSITIVE[name]:
        raise ValueError(f"{name} must be 'auto' or a number above 0 and at most {POSITIVE[name]}, got {value!r}")
    return value


class SupervisedHyperparameters(_Request):
    n_epochs: Auto | int = "auto"
    batch_size: Auto | int = "auto"
    learning_rate_multiplier: Auto | float = "auto"

    @model_validator(mode="before")
    @classmethod
    def _null_is_auto(cls, data):
        # The client sends null for a field it was given as None: OpenAI treats that as "auto".
        return {k: ("auto" if v is None else v) for k, v in data.items()} if isinstance(data, dict) else data

    @field_validator("n_epochs", "batch_size", "learning_rate_multiplier")
    @classmethod
    def _bounded(cls, value, info):
        return _within_bounds(info.field_name, value)


class DpoHyperparameters(SupervisedHyperparameters):
    beta: Auto | float = "auto"

    @field_validator("beta")
    @classmethod
    def _bounded_beta(cls, value):
        return _within_bounds("beta", value)


class ReinforcementHyperparameters(SupervisedHyperparameters):
    """OpenAI's fields; compute_multiplier scales the completions per prompt, eval_interval is the
    steps between held-out evaluations, eval_samples the held-out prompts each one grades."""

    compute_multiplier: Auto | float = "auto"
    eval_interval: Auto | int = "auto"
    eval_samples: Auto | int = "auto"
    reasoning_effort: Literal["auto", "default", "low", "medium", "high"] = "auto"

    @field_validator("compute_multiplier", "eval_interval", "eval_samples")
    @classmethod
    def _bounded_rft(cls, value, info):
        return _within_bounds(info.field_name, value)

    @field_validator("reasoning_effort")
    @classmethod
    def _no_reasoning_budget(cls, value: str) -> str:
        if value not in ("auto", "default"):
            raise ValueError(
                f"reasoning_effort={value!r} is not supported: the open models tunery trains have no "
                "reasoning-effort setting; leave it out"
            )
        return value


class _MethodBlock(_Request):
    tunery: dict[str, Any] = Field(default_factory=dict, description="tunery extension: `tunery train` config keys")

    @field_validator("tunery")
    @classmethod
    def _not_reserved(cls, value: dict) -> dict:
        clash = sorted(RESERVED_RUN_KEYS & set(value))
        if clash:
            raise ValueError(f"{clash} cannot be set in the tunery block; use the OpenAI fields for them")
        return value


class SupervisedMethod(_MethodBlock):
    hyperparameters: SupervisedHyperparameters = Field(default_factory=SupervisedHyperparameters)


class DpoMethod(_MethodBlock):
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class ReinforcementMethod(_MethodBlock):
    # Required by the API (the route says so by name); optional here so the block has defaults.
    grader: dict[str, Any] | None = None
    hyperparameters: ReinforcementHyperparameters = Field(default_factory=ReinforcementHyperparameters)

    @field_validator("grader")
    @classmethod
    def _grader(cls, value: dict | None) -> dict | None:
        if value is None:
            return value
        from tunery.errors import TuneryError
        from tunery.graders.objects import parse_grader

        try:
            parse_grader(value, "method.reinforcement.grader")
        except TuneryError as exc:
            raise ValueError(str(exc).replace("\n", ";")) from None
        return value

    @field_validator("tunery")
    @classmethod
    def _grader_is_the_method_s(cls, value: dict) -> dict:
        if isinstance(value.get("rft"), dict) and "grader" in value["rft"]:
            raise ValueError("the grader is method.reinforcement.grader, not tunery.rft.grader")
        return value


class MethodRequest(_Request):
    """OpenAI's `method`: its type and one block of settings named after it.

    The types are OpenAI's; which of them tunery trains is the `openai_type` of each entry in
    tunery/train/methods.py.
    """

    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None

    def given_blocks(self) -> list[str]:
        """The method blocks the request sets."""
        return [name for name in self.model_fields if name != "type" and getattr(self, name) is not None]

    def block(self) -> _MethodBlock:
        """The block of `type`, or its defaults when the request leaves it out."""
        given = getattr(self, self.type)
        if given is not None:
            return given
        annotation = type(self).model_fields[self.type].annotation
        return next(t for t in get_args(annotation) if t is not type(None))()


class WandbSettings(_Request):
    """OpenAI's `integrations[].wandb`."""

    project: str = Field(min_length=1)
    entity: str | None = None
    name: str | None = None
    tags: list[str] | None = None


class WandbIntegration(_Request):
    """OpenAI's W&B integration. Offline (the run directory holds it, for `wandb sync`) unless the
    server has a W&B key (WANDB_API_KEY)."""

    type: Literal["wandb"]
    wandb: WandbSettings


class MlflowSettings(_Request):
    experiment: str = Field("tunery", min_length=1)
    name: str | None = None


class MlflowIntegration(_Request):
    """tunery extension: a run in the server's MLflow (MLFLOW_TRACKING_URI, else TUNERY_HOME/mlflow.db)."""

    type: Literal["mlflow"]
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)


class TensorboardIntegration(_Request):
    """tunery extension: TensorBoard event files in the job's run directory."""

    type: Literal["tensorboard"]


Integration = Annotated[WandbIntegration | MlflowIntegration | TensorboardIntegration, Field(discriminator="type")]


class JobCreateRequest(_Request):
    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9._-]*$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[Integration] | None = None
    method: MethodRequest | None = None
    hyperparameters: SupervisedHyperparameters | None = Field(None, description="deprecated: use method")

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None):
        if value is None:
            return value
        if len(value) > 16:
            raise ValueError(f"metadata holds at most 16 pairs, got {len(value)}")
        for key, item in value.items():
            if len(key) > 64:
                raise ValueError(f"metadata key {key[:20]!r}... is longer than 64 characters")
            if len(item) > 512:
                raise ValueError(f"metadata value for {key!r} is longer than 512 characters")
        return value


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class Hyperparameters(BaseModel):
    n_epochs: Auto | int | None = None
    batch_size: Auto | int | None = None
    learning_rate_multiplier: Auto | float | None = None


JobStatus = Literal["validating_files", "queued", "running", "pausing", "paused", "succeeded", "failed", "cancelled"]


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: JobStatus
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None

    @classmethod
    def of(cls, job: JobRecord) -> FineTuningJob:
        hp = {k: job.hyperparameters.get(k) for k in ("n_epochs", "batch_size", "learning_rate_multiplier")}
        return cls(
            id=job.id,
            created_at=job.created_at,
            error=JobError(**job.error) if job.error else None,
            fine_tuned_model=job.fine_tuned_model,
            finished_at=job.finished_at,
            hyperparameters=Hyperparameters(**hp),
            model=job.model,
            organization_id=job.org,
            result_files=job.result_files,
            seed=job.seed,
            status=job.status,
            trained_tokens=job.trained_tokens,
            training_file=job.training_file,
            validation_file=job.validation_file,
            estimated_finish=job.estimated_finish,
            integrations=job.integrations,
            metadata=job.metadata,
            method=job.method,
        )


class FineTuningJobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] = "message"

    @classmethod
    def of(cls, event: EventRecord) -> FineTuningJobEvent:
        return cls(
            id=event.id,
            created_at=event.created_at,
            level=event.level,
            message=event.message,
            data=event.data or {},
            type=event.type,
        )


class CheckpointMetrics(BaseModel):
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int

    @classmethod
    def of(cls, checkpoint: CheckpointRecord) -> FineTuningJobCheckpoint:
        return cls(
            id=checkpoint.id,
            created_at=checkpoint.created_at,
            fine_tuned_model_checkpoint=checkpoint.model,
            fine_tuning_job_id=checkpoint.job_id,
            metrics=CheckpointMetrics(
                **{k: v for k, v in checkpoint.metrics.items() if k in CheckpointMetrics.model_fields}
            ),
            step_number=checkpoint.step,
        )
