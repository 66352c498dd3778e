"""/v1/tunery/monitoring: re-evaluation history and alerts per fine-tuned model, for the Monitoring page.

Monitoring (`tunery monitor`) is opt-in: a suite registered for a model's run is re-evaluated
when due, and each result (metrics, level, message) joins the registry. This endpoint reads those
results for the organisation's jobs; a result at level warn or error is an alert. Drift is
measured on demand by `tunery monitor drift` and is not kept, so it has no history to show yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tunery.serve.app import server_of
from tunery.serve.auth import current_org
from tunery.web.runs import job_runs, org_jobs, registry_if_any

if TYPE_CHECKING:
    from tunery.store.registry import ResultRecord, SuiteRecord

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


ALERT_LEVELS = frozenset({"warn", "error", "failed"})
DRIFT_HINT = (
    "drift is measured on demand: tunery monitor drift MODEL --since 7d (log prompts with TUNERY_LOG_PROMPTS=1)"
)


def eval_series(suite: SuiteRecord, results: list[ResultRecord]) -> list[Series]:
    """One series per metric of a suite; the alert line is the baseline minus the tolerated drop."""
    names = sorted({name for r in results for name in r.metrics})
    series = []
    for name in names:
        baseline = (suite.baseline or {}).get(name)
        series.append(
            Series(
                name=f"{name} on {Path(suite.eval_path).name}",
                points=[
                    Point(at=int(r.started_at), value=r.metrics[name], alert=r.level in ALERT_LEVELS)
                    for r in results
                    if name in r.metrics
                ],
                threshold=baseline - suite.threshold if baseline is not None else None,
            )
        )
    return series


def _alerts(suite: SuiteRecord, results: list[ResultRecord]) -> list[str]:
    from datetime import datetime

    return [
        f"{datetime.fromtimestamp(r.started_at):%Y-%m-%d %H:%M} {r.level} ({suite.id}): {r.message}"
        for r in reversed(results)
        if r.level in ALERT_LEVELS
    ]


@router.get("", response_model=MonitoringView)
def monitoring(request: Request, org: str = Depends(current_org)) -> MonitoringView:
    server = server_of(request)
    models = []
    with registry_if_any() as registry:
        for job, run in job_runs(registry, server.home, org_jobs(server.store, org)) if registry else []:
            suites = [(suite, registry.results(suite.id)) for suite in registry.suites(run.id)]
            if not suites:
                continue
            models.append(
                ModelMonitoring(
                    model=job.fine_tuned_model or job.id,
                    drift=[],
                    evals=[series for suite, results in suites for series in eval_series(suite, results)],
                    alerts=[alert for suite, results in suites for alert in _alerts(suite, results)],
                )
            )
    message = (
        "Drift is not recorded yet: " + DRIFT_HINT if models else "No model of this organisation is monitored yet."
    )
    return MonitoringView(available=bool(models), message=message, how_to=HOW_TO, models=models)
