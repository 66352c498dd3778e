"""/v1/tunery/session: who the browser's API key acts for, and the base models on offer."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tunery.serve.auth import current_org
from tunery.serve.deps import server_of

router = APIRouter(prefix="/session", tags=["dashboard"])


class Session(BaseModel):
    organization: str
    local_mode: bool  # no API keys configured: every request acts as `local`
    base_models: list[str]  # what jobs can fine-tune and the token view can tokenize with


@router.get("", response_model=Session)
def session(request: Request, org: str = Depends(current_org)) -> Session:
    settings = server_of(request).settings
    return Session(organization=org, local_mode=settings.local_mode, base_models=list(settings.models))
