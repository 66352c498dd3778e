"""/v1/tunery/evals: the evaluation reports kept with a job, for the Evaluation page.

A report belongs to a job when it sits in the job's `evals/` folder under the server home:

    tunery compare --tuned HOME/jobs/JOB/run --train train.jsonl --data test.jsonl \\
        --output HOME/jobs/JOB/evals/compare-report.json

(`tunery eval` reports work the same way.) The page reads the summary JSON and the per-example
answers written beside it; both are the files those commands write, unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tunery.serve.app import Server, server_of
from tunery.serve.auth import current_org
from tunery.serve.errors import not_found

router = APIRouter(prefix="/evals", tags=["dashboard"])

MAX_EXAMPLE_ROWS = 5000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a report's file stem; never a path
HOW_TO = (
    "tunery compare --tuned HOME/jobs/JOB_ID/run --train train.jsonl --data test.jsonl "
    "--output HOME/jobs/JOB_ID/evals/compare-report.json"
)


class EvalSummary(BaseModel):
    job_id: str
    name: str  # the report's file stem, e.g. compare-report
    kind: Literal["compare", "eval"]
    created_at: int
    fine_tuned_model: str | None
    verdict: str | None  # compare reports only
    primary: str | None
    n: int | None  # held-out examples
    data: str | None  # the held-out file's name


class EvalList(BaseModel):
    data: list[EvalSummary]  # newest first
    how_to: str  # the command that adds a report, for the empty state


class EvalReportView(BaseModel):
    summary: EvalSummary
    report: dict  # the summary JSON as `tunery compare` / `tunery eval` wrote it
    examples: list[dict]  # the rows of its .examples.jsonl, at most MAX_EXAMPLE_ROWS
    examples_cut: bool


def report_kind(report: dict) -> Literal["compare", "eval"] | None:
    if isinstance(report.get("systems"), dict) and "verdict" in report:
        return "compare"
    if isinstance(report.get("metrics"), dict) and "system" in report:
        return "eval"
    return None


def _summary(job_id: str, path: Path, report: dict, fine_tuned_model: str | None) -> EvalSummary | None:
    kind = report_kind(report)
    if kind is None:
        return None
    first = next(iter(report["systems"].values()), {}) if kind == "compare" else report
    return EvalSummary(
        job_id=job_id,
        name=path.stem,
        kind=kind,
        created_at=int(path.stat().st_mtime),
        fine_tuned_model=fine_tuned_model,
        verdict=report.get("verdict"),
        primary=report.get("primary") or next(iter(report.get("metrics") or {}), None),
        n=first.get("n"),
        data=Path(report["data"]).name if report.get("data") else None,
    )


def _read_report(path: Path) -> dict | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):  # being written, or not a report: skip it
        return None
    return report if isinstance(report, dict) else None


def _reports(server: Server, org: str) -> list[tuple[EvalSummary, Path, dict]]:
    found = []
    for folder in sorted((server.home.root / "jobs").glob("*/evals")):
        job = server.store.get_job(folder.parent.name, org)
        if job is None:  # another organisation's job
            continue
        for path in folder.glob("*.json"):
            report = _read_report(path)
            summary = _summary(job.id, path, report, job.fine_tuned_model) if report else None
            if summary:
                found.append((summary, path, report))
    return sorted(found, key=lambda item: item[0].created_at, reverse=True)


@router.get("", response_model=EvalList)
def list_evals(request: Request, org: str = Depends(current_org)) -> EvalList:
    return EvalList(data=[summary for summary, _, _ in _reports(server_of(request), org)], how_to=HOW_TO)


@router.get("/{job_id}/{name}", response_model=EvalReportView)
def get_eval(job_id: str, name: str, request: Request, org: str = Depends(current_org)) -> EvalReportView:
    from tunery.eval.report import examples_path

    server = server_of(request)
    job = server.store.get_job(job_id, org)
    path = server.home.job_dir(job_id) / "evals" / f"{name}.json"
    report = _read_report(path) if job is not None and _NAME.match(name) else None
    summary = _summary(job_id, path, report, job.fine_tuned_model) if report else None
    if summary is None:
        raise not_found("evaluation report", f"{job_id}/{name}", param="name")
    rows, cut = [], False
    try:
        with examples_path(path).open() as fh:
            for line in fh:
                if len(rows) == MAX_EXAMPLE_ROWS:
                    cut = True
                    break
                if line.strip():
                    rows.append(json.loads(line))
    except FileNotFoundError:
        pass
    return EvalReportView(summary=summary, report=report, examples=rows, examples_cut=cut)
