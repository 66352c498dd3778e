"""The alpha graders endpoints, as openai-python's `types/fine_tuning/alpha/grader_*`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunery.graders.grading import ERROR_KINDS


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_grader(value: dict) -> dict:
    from tunery.errors import TuneryError
    from tunery.graders.objects import parse_grader

    try:
        parse_grader(value, "grader")
    except TuneryError as exc:
        raise ValueError(str(exc).replace("\n", ";")) from None
    return value


class GraderValidateParams(_Request):
    grader: dict[str, Any]

    @field_validator("grader")
    @classmethod
    def _valid(cls, value: dict) -> dict:
        return _check_grader(value)


class GraderRunParams(GraderValidateParams):
    model_sample: str = Field(description="fills the `sample` namespace (output_json when it is JSON)")
    item: Any = None


class GraderValidateResponse(BaseModel):
    grader: dict[str, Any] | None = None


class MetadataErrors(BaseModel):
    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False

    @classmethod
    def of(cls, kind: str | None, details: str | None) -> MetadataErrors:
        if kind is None:
            return cls()
        flags: dict[str, Any] = {kind if kind in ERROR_KINDS else "other_error": True}
        if kind == "python_grader_runtime_error":
            flags["python_grader_runtime_error_details"] = details
        elif kind == "python_grader_server_error":
            flags["python_grader_server_error_type"] = details
        elif kind == "model_grader_server_error":
            flags["model_grader_server_error_details"] = details
        return cls(**flags)


class Metadata(BaseModel):
    errors: MetadataErrors
    execution_time: float
    name: str
    sampled_model_name: str | None = None
    scores: dict[str, Any]
    token_usage: int | None = None
    type: str


class GraderRunResponse(BaseModel):
    metadata: Metadata
    model_grader_token_usage_per_model: dict[str, Any] = Field(default_factory=dict)
    reward: float
    sub_rewards: dict[str, Any]
