"""OpenAI's grader objects, as typed configs: the same JSON works in OpenAI's API and in tunery.

The fields and their meanings are those of the `openai` package (`openai/types/graders/*.py`):
`string_check`, `text_similarity`, `python`, `score_model`, `label_model` and `multi`. Unknown
keys are refused, so a typo never silently changes what is graded. `load_grader` reads a grader
from a JSON file and names the file in every error.

`multi.graders` is a map from a variable name to a sub-grader in OpenAI's documentation, and one
sub-grader in the generated client types; both are accepted (a single one is named by its `name`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from tunery.errors import TuneryError


class _Object(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StringCheckGrader(_Object):
    """1 when `input` and `reference` pass `operation`, else 0.

    eq: equal · ne: not equal · like: input contains reference · ilike: the same, ignoring case.
    """

    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


SIMILARITY_METRICS = (
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
)


class TextSimilarityGrader(_Object):
    """A similarity in [0, 1] between `input` and `reference` (see `similarity.py` for each metric)."""

    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: Literal[SIMILARITY_METRICS]  # type: ignore[valid-type]


class PythonGrader(_Object):
    """`source` defines `grade(sample, item) -> float`, run in a sandbox (see `sandbox.py`)."""

    type: Literal["python"]
    name: str
    source: str
    image_tag: str | None = Field(None, description="OpenAI's runtime image; tunery runs its own Python")


class MessageInput(_Object):
    """One templated message sent to a model grader. Only text content is graded here."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | dict | list
    type: Literal["message"] | None = None


class SamplingParams(_Object):
    max_completions_tokens: int | None = Field(None, gt=0)
    reasoning_effort: str | None = None
    seed: int | None = None
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)


class ScoreModelGrader(_Object):
    """A model reads the templated `input` and answers with a number within `range`."""

    type: Literal["score_model"]
    name: str
    model: str
    input: list[MessageInput] = Field(min_length=1)
    range: list[float] | None = None
    sampling_params: SamplingParams | None = None

    @model_validator(mode="after")
    def _range(self):
        if self.range is not None and (len(self.range) != 2 or self.range[0] >= self.range[1]):
            raise ValueError(f"range must be two increasing numbers [low, high], got {self.range}")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        low, high = self.range or (0.0, 1.0)
        return float(low), float(high)


class LabelModelGrader(_Object):
    """A model picks one of `labels`; 1 when it is among `passing_labels`, else 0."""

    type: Literal["label_model"]
    name: str
    model: str
    input: list[MessageInput] = Field(min_length=1)
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _subset(self):
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels {unknown} are not among labels {self.labels}")
        return self


SubGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Object):
    """Sub-graders combined by the arithmetic in `calculate_output` (see `formula.py`)."""

    type: Literal["multi"]
    name: str
    graders: dict[str, SubGrader] | SubGrader
    calculate_output: str

    @property
    def named(self) -> dict[str, BaseModel]:
        """The sub-graders by the variable name `calculate_output` uses for each."""
        return dict(self.graders) if isinstance(self.graders, dict) else {self.graders.name: self.graders}

    @model_validator(mode="after")
    def _formula(self):
        from tunery.graders.formula import FormulaError, check_formula

        try:
            check_formula(self.calculate_output, set(self.named))
        except FormulaError as exc:
            raise ValueError(f"calculate_output {self.calculate_output!r}: {exc}") from None
        return self


GraderObject = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader | MultiGrader,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter = TypeAdapter(GraderObject)
GRADER_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")


def parse_grader(data: object, source: str = "grader") -> GraderObject:
    """Check a grader object (a dict, as in OpenAI's API) and return it typed.

    Raises:
        TuneryError: not an object, an unknown type, a missing or unknown field, or a bad value;
            each problem is named with its path inside the grader.
    """
    if not isinstance(data, dict):
        raise TuneryError(f"{source}: a grader is a JSON object, got {type(data).__name__}")
    if data.get("type") not in GRADER_TYPES:
        raise TuneryError(
            f"{source}: unknown grader type {data.get('type')!r}", hint=f"use one of {', '.join(GRADER_TYPES)}"
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise TuneryError(f"{source}: invalid grader\n" + describe(exc)) from None


def describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # pydantic names union members by their class; keep the path a user can find in the JSON
        parts = [str(p) for p in err["loc"] if not str(p)[:1].isupper() and not str(p).startswith("function-")]
        where = ".".join(parts) or "(grader)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown field")
        elif err["type"] == "missing":
            lines.append(f"  {where}: required")
        else:
            lines.append(f"  {where}: {err['msg']}")
    return "\n".join(dict.fromkeys(lines))


def load_grader(path: str | Path) -> GraderObject:
    """Read one grader object from a JSON file.

    Raises:
        TuneryError: the file is missing or not JSON, or the grader is invalid.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TuneryError(f"cannot read grader {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise TuneryError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return parse_grader(data, str(path))


def dump_grader(grader: BaseModel) -> dict:
    """The grader as OpenAI's JSON (no unset optional fields)."""
    return grader.model_dump(mode="json", exclude_none=True)
