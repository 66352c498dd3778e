"""/v1/tunery/monitoring: re-evaluation history, input drift over time and alerts per fine-tuned model.

Monitoring (`tunery monitor`) is opt-in. A suite registered for a model's run is re-evaluated
when due, and each result (metrics, level, message) joins the registry; `GET /monitoring` reads
those results for the organisation's jobs, and a result at level warn or error is an alert.
Drift is measured from the prompt log (`TUNERY_LOG_PROMPTS=1`), day by day, by
`GET /monitoring/drift` (see tunery.web.drift_history); a day at level alert is an alert. It
embeds the prompts, so the page asks for it separately, after the fast part is shown, and the
result is kept for up to ten minutes unless a log changes.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from tunery.serve.auth import current_org
from tunery.serve.deps import server_of
from tunery.web.runs import job_runs, org_jobs, registry_if_any

if TYPE_CHECKING:
    from tunery.store.registry import ResultRecord, SuiteRecord
    from tunery.web.drift_history import DayDrift

router = APIRouter(prefix="/monitoring", tags=["dashboard"])

HOW_TO = [
    "tunery monitor add MODEL --eval heldout.jsonl --every 1d  # scheduled re-evaluation",
    "tunery monitor run                                        # run what is due (cron-friendly)",
    "TUNERY_LOG_PROMPTS=1 tunery serve                         # log prompts: drift appears here day by day",
]


class Point(BaseModel):
    at: int  # Unix seconds
    value: float
    alert: bool = False
    note: str | None = None  # shown beside the value, e.g. how many prompts a drift score covers


class Alert(BaseModel):
    at: int  # Unix seconds; the browser shows it in the reader's time zone
    level: str
    source: str  # the monitor suite, or "drift"
    message: str


class Series(BaseModel):
    name: str  # "drift score" or a metric name
    points: list[Point]
    threshold: float | None = None  # the alert line, where there is one


class ModelMonitoring(BaseModel):
    model: str
    drift: list[Series]
    evals: list[Series]
    alerts: list[Alert]  # newest first


class MonitoringView(BaseModel):
    available: bool
    message: str
    how_to: list[str]
    models: list[ModelMonitoring]


ALERT_LEVELS = frozenset({"warn", "error", "failed"})


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


def _alerts(suite: SuiteRecord, results: list[ResultRecord]) -> list[Alert]:
    return [
        Alert(at=int(r.started_at), level=r.level, source=suite.id, message=r.message)
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
    message = "" if models else "No model of this organisation has a scheduled evaluation yet."
    return MonitoringView(available=bool(models), message=message, how_to=HOW_TO, models=models)


DRIFT_DAYS = 14


class DriftView(BaseModel):
    days: int
    logging: bool  # whether this server logs prompts (TUNERY_LOG_PROMPTS)
    message: str  # what to do when there is nothing to show
    models: list[ModelMonitoring]  # drift filled in, evals empty


def _training_prompts(path: str) -> list[str]:
    """The user turns of each chat example or preference pair's input, as drift measures prompts."""
    from tunery.data.formats import iter_jsonl
    from tunery.monitor.drift import prompt_text

    texts = []
    for _, obj in iter_jsonl(Path(path)):
        if not isinstance(obj, dict):
            continue
        messages = obj.get("messages") or (obj.get("input") or {}).get("messages") or []
        if (text := prompt_text(messages)).strip():
            texts.append(text)
    return texts


def _logged_prompts(paths: list[Path], since: float) -> list[tuple[float, str]]:
    from tunery.monitor.drift import prompt_text
    from tunery.monitor.prompt_log import read_log

    found = [(entry.ts, prompt_text(entry.messages)) for path in paths for entry in read_log(path, since=since)]
    return sorted((ts, text) for ts, text in found if text.strip())


def _serves(job_model: str, logged: str) -> bool:
    """A logged name is the job's model or one of its checkpoints (`MODEL:ckpt-step-N`)."""
    return logged == job_model or logged.startswith(job_model + ":ckpt-step-")


CACHE_SECONDS = 600  # windows move little in ten minutes; embedding every prompt on each visit costs more


@lru_cache(maxsize=32)
def _history(training: str, logs: tuple[tuple[str, int, int], ...], days: int, bucket: int) -> tuple[DayDrift, ...]:
    """daily_drift of the logs (path, size, mtime), cached until a log changes or the bucket moves on."""
    from tunery.web.drift_history import daily_drift

    now = time.time()
    recent = _logged_prompts([Path(path) for path, _, _ in logs], now - days * 86400)
    return tuple(daily_drift(_training_prompts(training), recent, now=now, days=days))


def _drift_models(server, org: str, days: int) -> list[ModelMonitoring]:
    from tunery.home import tunery_home
    from tunery.monitor.prompt_log import logged_models

    logs = logged_models(tunery_home())
    models = []
    for job in org_jobs(server.store, org):
        paths = [path for name, path in logs.items() if job.fine_tuned_model and _serves(job.fine_tuned_model, name)]
        training = server.store.get_file(job.training_file, org) if paths else None
        if training is None:
            continue
        stats = tuple(sorted((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in paths))
        history = _history(training.path, stats, days, int(time.time() // CACHE_SECONDS))
        if not history:
            continue
        points = [
            Point(at=int(d.end), value=d.score, alert=d.level == "alert", note=f"{d.prompts} prompts, {d.level}")
            for d in history
        ]
        alerts = [
            Alert(
                at=int(d.end),
                level="alert",
                source="drift",
                message=f"drift score {d.score:.2f} over {d.prompts} prompts in the 24 h to this time",
            )
            for d in reversed(history)
            if d.level == "alert"
        ]
        series = Series(name="drift score", points=points, threshold=1.0)
        models.append(ModelMonitoring(model=job.fine_tuned_model, drift=[series], evals=[], alerts=alerts))
    return models


@router.get("/drift", response_model=DriftView)
async def drift(
    request: Request, org: str = Depends(current_org), days: int = Query(DRIFT_DAYS, ge=1, le=30)
) -> DriftView:
    """Each day's drift score of the prompts logged for the organisation's fine-tuned models."""
    from tunery.monitor.prompt_log import settings_from_env

    models = await run_in_threadpool(_drift_models, server_of(request), org, days)
    logging = settings_from_env().enabled
    if models:
        message = ""
    elif logging:
        message = f"No prompt was logged for this organisation's fine-tuned models in the last {days} days."
    else:
        message = (
            "This server does not log prompts, so there is no drift to measure: start it with TUNERY_LOG_PROMPTS=1."
        )
    return DriftView(days=days, logging=logging, message=message, models=models)
