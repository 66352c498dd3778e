"""/v1/fine_tuning/alpha/graders: run a grader on one sample, or check that a grader is valid.

The same grader objects and code as reinforcement fine-tuning and `tunery eval --grader`
(tunery.graders.grading), with OpenAI's request and response shapes. A grader that cannot
run (bad fields, a formula that is not arithmetic, python source without grade) is a 400; a
sample it fails on is a 200 with reward 0 and the error flagged in `metadata.errors`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tunery.errors import TuneryError
from tunery.serve.auth import current_org
from tunery.serve.errors import APIError
from tunery.serve.types.graders import (
    GraderRunParams,
    GraderRunResponse,
    GraderValidateParams,
    GraderValidateResponse,
    Metadata,
    MetadataErrors,
)

router = APIRouter(prefix="/fine_tuning/alpha/graders", tags=["graders"])


def _ready(grader: dict):
    from tunery.graders.grading import Grading
    from tunery.graders.objects import parse_grader

    try:
        grading = Grading(parse_grader(grader, "grader"), workers=1)
        grading.check()
    except TuneryError as exc:
        raise APIError(400, str(exc).replace("\n", " "), param="grader") from None
    return grading


@router.post("/validate", response_model=GraderValidateResponse)
def validate_grader(body: GraderValidateParams, org: str = Depends(current_org)) -> GraderValidateResponse:
    from tunery.graders.objects import dump_grader, parse_grader

    grading = _ready(body.grader)
    grading.close()
    return GraderValidateResponse(grader=dump_grader(parse_grader(body.grader)))


@router.post("/run", response_model=GraderRunResponse)
def run_grader(body: GraderRunParams, org: str = Depends(current_org)) -> GraderRunResponse:
    item = body.item if isinstance(body.item, dict) else ({} if body.item is None else {"value": body.item})
    grading = _ready(body.grader)
    try:
        result = grading.grade(body.model_sample, item)
    finally:
        grading.close()
    return GraderRunResponse(
        metadata=Metadata(
            errors=MetadataErrors.of(result.error, result.details),
            execution_time=result.seconds,
            name=grading.grader.name,
            scores=dict(result.sub_rewards),
            type=grading.grader.type,
        ),
        reward=result.reward,
        sub_rewards=dict(result.sub_rewards),
    )
