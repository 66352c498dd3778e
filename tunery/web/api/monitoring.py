"""/v1/tunery/monitoring: drift scores and re-evaluation history per model, for the Monitoring page.

Monitoring (`tunery monitor`) is opt-in. Until this server's home holds monitoring data, the
page shows an empty state that says how to turn it on.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tunery.serve.auth import current_org

router = APIRouter(prefix="/monitoring", tags=["dashboard"])

HOW_TO = [
    "tunery monitor add MODEL --eval heldout.jsonl --every 1d  # scheduled re-evaluation",
    "tunery monitor run                                        # run what is due (cron-friendly)",
    "tunery monitor drift MODEL                                # recent prompts against the training data",
]


class Point(BaseModel):
    at: int  # Unix seconds
    value: float
    alert: bool = False


class Series(BaseModel):
    name: str  # "drift score" or a metric name
    points: list[Point]
    threshold: float | None = None  # the alert line, where there is one


class ModelMonitoring(BaseModel):
    model: str
    drift: list[Series]
    evals: list[Series]
    alerts: list[str]  # human-readable, newest first


class MonitoringView(BaseModel):
    available: bool
    message: str
    how_to: list[str]
    models: list[ModelMonitoring]


@router.get("", response_model=MonitoringView)
def monitoring(request: Request, org: str = Depends(current_org)) -> MonitoringView:
    try:
        import tunery.monitor  # noqa: F401  (the monitoring package arrives with `tunery monitor`)
    except ImportError:
        return MonitoringView(
            available=False, models=[], how_to=HOW_TO, message="Monitoring is not part of this tunery installation yet."
        )
    return MonitoringView(
        available=False, models=[], how_to=HOW_TO, message="No model is monitored yet on this server."
    )
