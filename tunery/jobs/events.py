"""Building the event rows a job emits: messages for state changes, metrics for steps."""

from __future__ import annotations

import time

from tunery.jobs.follow import StepMetrics
from tunery.store import EventRecord
from tunery.store.ids import new_id


def message(job_id: str, text: str, level: str = "info") -> EventRecord:
    return EventRecord(id=new_id("ftevent-"), job_id=job_id, created_at=int(time.time()), level=level, message=text)


def metrics(job_id: str, step: StepMetrics) -> EventRecord:
    return EventRecord(
        id=new_id("ftevent-"),
        job_id=job_id,
        created_at=int(time.time()),
        level="info",
        message=step.message,
        type="metrics",
        data=step.data,
    )
