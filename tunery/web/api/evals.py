"""/v1/tunery/evals: the evaluation reports kept with a job, for the Evaluation page.

A report belongs to a job when the registry links it to the job's run (`tunery compare --tuned
HOME/jobs/JOB/run ...` records it there, wherever --output puts it), or when it sits in the job's
`evals/` folder under the server home:

    tunery compare --tuned HOME/jobs/JOB/run --train train.jsonl --data test.jsonl \\
        --output HOME/jobs/JOB/evals/compare-report.json

(`tunery eval` reports work the same way.) The page reads the summary JSON and the per-example
answers written beside it; both are the files those commands write, unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tunery.serve.auth import current_org
from tunery.serve.deps import Server, server_of
from tunery.serve.errors import not_found
from tunery.store import JobRecord
from tunery.web.runs import job_runs, org_jobs, registry_if_any

router = APIRouter(prefix="/evals", tags=["dashboard"])

MAX_EXAMPLE_ROWS = 5000
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
    headline: str  # one line for the list: a compare report's verdict, an eval report's main score
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


def _summary(job: JobRecord, name: str, path: Path, report: dict) -> EvalSummary | None:
    kind = report_kind(report)
    if kind is None:
        return None
    first = next(iter(report["systems"].values()), {}) if kind == "compare" else report
    primary = report.get("primary") or next(iter(report.get("metrics") or {}), None)
    return EvalSummary(
        job_id=job.id,
        name=name,
        kind=kind,
        created_at=int(path.stat().st_mtime),
        fine_tuned_model=job.fine_tuned_model,
        verdict=report.get("verdict"),
        headline=report["verdict"] if kind == "compare" else _score_line(report, primary),
        primary=primary,
        n=first.get("n"),
        data=Path(report["data"]).name if report.get("data") else None,
    )


def _score_line(report: dict, metric: str | None) -> str:
    """'exact 0.417 (0.17..0.67), tuned on valid.jsonl' for an eval report."""
    score = (report.get("metrics") or {}).get(metric) if metric else None
    if not isinstance(score, dict) or not {"mean", "low", "high"} <= score.keys():
        return f"{report.get('system', 'model')}: no score"
    return f"{metric} {score['mean']:.3f} ({score['low']:.2f}..{score['high']:.2f}), {report.get('system', 'model')}"


def _read_report(path: Path) -> dict | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):  # being written, moved away, or not a report: skip it
        return None
    return report if isinstance(report, dict) else None


@dataclass(frozen=True)
class _Found:
    summary: EvalSummary
    path: Path
    report: dict


def _found(job: JobRecord, name: str, path: Path) -> _Found | None:
    report = _read_report(path)
    summary = _summary(job, name, path, report) if report else None
    return _Found(summary, path, report) if summary else None


def _reports(server: Server, org: str) -> list[_Found]:
    """The reports in the jobs' evals/ folders, then those the registry links to the jobs' runs."""
    jobs = org_jobs(server.store, org)
    found = [
        item
        for job in jobs
        for path in sorted((server.home.job_dir(job.id) / "evals").glob("*.json"))
        if (item := _found(job, path.stem, path))
    ]
    seen = {item.path.resolve() for item in found}
    with registry_if_any() as registry:
        for job, run in job_runs(registry, server.home, jobs) if registry else []:
            for record in registry.reports(run.id):
                path = Path(record.path)
                if record.kind in ("compare", "eval") and path.resolve() not in seen:
                    seen.add(path.resolve())
                    # `tunery train` keeps its final eval as run/eval/report.json: name it for that.
                    name = (
                        "final-eval" if path.parent.name == "eval" and path.parent.parent.name == "run" else path.stem
                    )
                    if item := _found(job, f"{name}-{record.seq}", path):
                        found.append(item)
    return sorted(found, key=lambda item: item.summary.created_at, reverse=True)


@router.get("", response_model=EvalList)
def list_evals(request: Request, org: str = Depends(current_org)) -> EvalList:
    return EvalList(data=[item.summary for item in _reports(server_of(request), org)], how_to=HOW_TO)


@router.get("/{job_id}/{name}", response_model=EvalReportView)
def get_eval(job_id: str, name: str, request: Request, org: str = Depends(current_org)) -> EvalReportView:
    """One report by the (job, name) the list gave: a name is never read as a path."""
    from tunery.eval.report import examples_path

    wanted = [i for i in _reports(server_of(request), org) if i.summary.job_id == job_id and i.summary.name == name]
    if not wanted:
        raise not_found("evaluation report", f"{job_id}/{name}", param="name")
    item = wanted[0]
    rows, cut = [], False
    try:
        with examples_path(item.path).open() as fh:
            for line in fh:
                if len(rows) == MAX_EXAMPLE_ROWS:
                    cut = True
                    break
                if line.strip():
                    rows.append(json.loads(line))
    except FileNotFoundError:
        pass
    return EvalReportView(summary=item.summary, report=item.report, examples=rows, examples_cut=cut)
