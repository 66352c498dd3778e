"""/v1/files: upload (validated on the way in for `fine-tune`), list, retrieve, delete, content."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from tunery.errors import TuneryError
from tunery.serve.auth import current_org
from tunery.serve.deps import server_of
from tunery.serve.errors import APIError, not_found
from tunery.serve.pagination import cursor_page
from tunery.serve.types.files import FileDeleted, FileObject, FilePurpose
from tunery.serve.types.shared import CursorPage
from tunery.serve.upload import receive_upload
from tunery.store import FileRecord
from tunery.store.ids import new_id

router = APIRouter(prefix="/files", tags=["files"])

UPLOAD_PURPOSES = FilePurpose.__args__
DETAILS_ISSUES = 5  # problems named in status_details; `tunery validate` gives the full report


def check_fine_tune_file(path: Path, filename: str) -> tuple[str, str | None, str | None, int | None]:
    """(status, status_details, format, examples) for an uploaded training file; the details call
    it by the user's `filename`, never by the server's temporary path."""
    from tunery.data.validate import validate_file
    from tunery.train.plan import auto_epochs

    try:
        report = validate_file(path, max_issues_per_code=DETAILS_ISSUES, name=filename, epochs=auto_epochs)
    except TuneryError as exc:
        return "error", str(exc), None, None
    if report.ok:
        return "processed", None, report.stats.format, report.stats.examples
    prompts = _rft_prompts(path)
    if prompts:  # every line a prompt that ends on the user turn: reinforcement fine-tuning's format
        return "processed", None, "rft", prompts
    named = []
    for issue in report.errors[:DETAILS_ISSUES]:
        where = f"line {issue.line}" if issue.line else "file"
        named.append(f"{where}: {issue.message} [{issue.code}]")
    more = report.error_count - len(named)
    details = f"{report.error_count} error(s); " + "; ".join(named) + (f"; and {more} more" if more > 0 else "")
    return "error", details, report.stats.format, report.stats.examples


def _rft_prompts(path: Path) -> int:
    """How many prompts the file holds if it is a clean RFT file, else 0. The grader's own fields
    are checked when a job names it, since only the grader knows which fields it reads."""
    from tunery.data.rft import validate_rft_file

    try:
        examples, issues = validate_rft_file(path)
    except TuneryError:
        return 0
    return 0 if issues else len(examples)


@router.post("", response_model=FileObject)
async def create_file(request: Request, org: str = Depends(current_org)) -> FileObject:
    server = server_of(request)
    upload = await receive_upload(request, server.home.root / "files", server.settings.max_upload_bytes)
    try:
        purpose = upload.fields.get("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise APIError(400, f"purpose must be one of {list(UPLOAD_PURPOSES)}, got {purpose!r}", param="purpose")
        if upload.path is None:
            raise APIError(400, "the upload has no `file` part", param="file")
        filename = (upload.filename or "upload")[:255]
        status, details, fmt, examples = "processed", None, None, None
        if purpose == "fine-tune":
            status, details, fmt, examples = await run_in_threadpool(check_fine_tune_file, upload.path, filename)
        file_id = new_id("file-")
        target = server.home.file_path(file_id)
        os.replace(upload.path, target)
        record = FileRecord(
            id=file_id,
            org=org,
            filename=filename,
            purpose=purpose,
            bytes=upload.size,
            created_at=int(time.time()),
            status=status,
            path=str(target),
            status_details=details,
            format=fmt,
            examples=examples,
        )

        def save() -> None:
            with server.store.transaction() as tx:
                tx.add_file(record)

        try:
            await run_in_threadpool(save)
        except BaseException:
            target.unlink(missing_ok=True)  # bytes no record names would never be cleaned up
            raise
    finally:
        if upload.path is not None:
            upload.path.unlink(missing_ok=True)
    return FileObject.of(record)


@router.get("", response_model=CursorPage[FileObject])
def list_files(
    request: Request,
    org: str = Depends(current_org),
    after: str | None = None,
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    purpose: str | None = None,
) -> CursorPage[FileObject]:
    store = server_of(request).store
    return cursor_page(
        lambda: store.list_files(org, purpose=purpose, after=after, limit=limit, order=order),
        FileObject.of,
        "file",
        after,
    )


def _own_file(request: Request, file_id: str, org: str) -> FileRecord:
    record = server_of(request).store.get_file(file_id, org)
    if record is None:
        raise not_found("file", file_id, param="file_id")
    return record


@router.get("/{file_id}", response_model=FileObject)
def retrieve_file(file_id: str, request: Request, org: str = Depends(current_org)) -> FileObject:
    return FileObject.of(_own_file(request, file_id, org))


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, request: Request, org: str = Depends(current_org)) -> FileDeleted:
    record = _own_file(request, file_id, org)
    store = server_of(request).store
    if store.file_in_use(file_id):
        raise APIError(
            409,
            f"file {file_id} is used by a fine-tuning job that has not finished; "
            "cancel the job or wait for it to finish",
            param="file_id",
            code="file_in_use",
        )
    with store.transaction() as tx:
        deleted = tx.delete_file(file_id)
    Path(record.path).unlink(missing_ok=True)
    return FileDeleted(id=file_id, deleted=deleted)


@router.get("/{file_id}/content")
def file_content(file_id: str, request: Request, org: str = Depends(current_org)) -> FileResponse:
    record = _own_file(request, file_id, org)
    media = "text/csv" if record.filename.endswith(".csv") else "application/octet-stream"
    return FileResponse(record.path, media_type=media)
