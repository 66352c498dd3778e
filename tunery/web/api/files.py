"""/v1/tunery/files/{id}/...: a file's full validation report, its token view and its raw lines.

The public upload only keeps the first problems in `status_details`; the dataset page wants the
whole report, grouped by code, with statistics and a histogram of tokens per example. The token
view renders a few examples with `render_chat`, the function the trainer masks with, so the
highlighted tokens are exactly the trained ones. Files never change after upload, so reports are
cached by (file, tokenizer, max_seq_len).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from tunery.data.render import ChatTokenizer
from tunery.errors import TuneryError
from tunery.serve.auth import current_org
from tunery.serve.deps import Server, server_of
from tunery.serve.errors import APIError, not_found
from tunery.store import FileRecord
from tunery.web.histogram import Bin, histogram

router = APIRouter(prefix="/files", tags=["dashboard"])

REPORT_ISSUES_PER_CODE = 200  # shown per code; the counts stay exact
HISTOGRAM_EXAMPLES = 5000  # the histogram covers the first this many valid examples
MAX_LINE_CHARS = 2000  # a line shown in the browser is cut here (lines can be megabytes)


class TokenizerChoice(BaseModel):
    model: str
    max_seq_len: int  # the model's context: what validation and the token view truncate to


class FileReport(BaseModel):
    file_id: str
    filename: str
    tokenizer: TokenizerChoice
    report: dict  # ValidationReport.to_dict(), with file paths replaced by the upload's filename
    fixes: dict[str, str]  # code → how to fix it, for each code in the report
    histogram: list[Bin]  # rendered tokens per example
    histogram_examples: int  # how many examples the histogram covers


class TokenExample(BaseModel):
    line: int
    answer: str | None  # "chosen" / "rejected" for preference pairs, None for chat
    tokens: list[tuple[str, bool]]  # (token text, trained?) as show_tokens gives them
    trained: int
    total: int
    truncated: int


class TokenView(BaseModel):
    file_id: str
    tokenizer: TokenizerChoice
    max_seq_len: int  # where examples were cut: a job's max_seq_len, or the model's context
    examples: list[TokenExample]


class Line(BaseModel):
    line: int
    text: str
    cut: bool  # True when the line was longer than MAX_LINE_CHARS


class Lines(BaseModel):
    file_id: str
    lines: list[Line]  # fewer than asked for where the file ends


def _own_file(request: Request, file_id: str, org: str) -> FileRecord:
    record = server_of(request).store.get_file(file_id, org)
    if record is None:
        raise not_found("file", file_id, param="file_id")
    return record


def _fine_tune_file(request: Request, file_id: str, org: str) -> FileRecord:
    record = _own_file(request, file_id, org)
    if record.purpose != "fine-tune":
        raise APIError(
            400,
            f"file {file_id} has purpose {record.purpose!r}; only fine-tune files have a validation report",
            param="file_id",
        )
    return record


def _model_dir(server: Server, org: str, model: str | None) -> tuple[TokenizerChoice, Path]:
    """The directory of a configured base model (the first one when `model` is None)."""
    name = model or next(iter(server.settings.models))
    if name not in server.settings.models:
        raise APIError(
            400, f"model must be one of the base models {sorted(server.settings.models)}, got {name!r}", param="model"
        )
    served = server.catalog.lookup(name, org)
    return TokenizerChoice(model=name, max_seq_len=served.context_length), served.base_dir


def _tokenizer(server: Server, org: str, model: str | None) -> tuple[TokenizerChoice, ChatTokenizer]:
    """The chat tokenizer of a configured base model (the first one when `model` is None)."""
    choice, model_dir = _model_dir(server, org, model)
    return choice, server.catalog.tokenizer(model_dir)


def _is_pair(example) -> bool:
    from tunery.data.formats import PreferenceExample

    return isinstance(example, PreferenceExample)


@lru_cache(maxsize=16)
def _validate_elsewhere(path: str, model_dir: str, max_seq_len: int) -> tuple[dict, list[int]]:
    """`_validate` in a child process that exits when done: tokenising an upload can take seconds
    and hundreds of MB, which the API process would otherwise hold (or keep) while it serves."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_validate, path, model_dir, max_seq_len).result()


def _validate(path: str, model_dir: str, max_seq_len: int) -> tuple[dict, list[int]]:
    """(report dict, rendered tokens per example for the histogram)."""
    from tunery.data.formats import to_example
    from tunery.data.render import render_chat
    from tunery.data.validate import first_valid_examples, validate_file

    tok = ChatTokenizer.from_dir(model_dir)
    from tunery.train.plan import auto_epochs

    report = validate_file(
        path, tokenizer=tok, max_seq_len=max_seq_len, max_issues_per_code=REPORT_ISSUES_PER_CODE, epochs=auto_epochs
    )
    lengths = []
    for line, obj in first_valid_examples(path, HISTOGRAM_EXAMPLES):
        example = to_example(obj, line)
        chats = [example.as_chat("chosen"), example.as_chat("rejected")] if _is_pair(example) else [example]
        try:
            # The validator measures an example by its longest rendering; so does the histogram.
            lengths.append(max(len(render_chat(chat, tok).input_ids) for chat in chats))
        except TuneryError:
            continue  # reported as template_error in the report
    return report.to_dict(), lengths


class FileSummary(BaseModel):
    id: str
    filename: str
    created_at: int
    format: str | None  # "chat" or "preference"
    examples: int | None


@router.get("", response_model=list[FileSummary])
def usable_files(request: Request, org: str = Depends(current_org)) -> list[FileSummary]:
    """The organisation's validated fine-tuning files, newest first, with their format and
    example counts: what the New-job form offers."""
    page = server_of(request).store.list_files(org, purpose="fine-tune")
    return [
        FileSummary(id=f.id, filename=f.filename, created_at=f.created_at, format=f.format, examples=f.examples)
        for f in page.items
        if f.status == "processed"
    ]


@router.get("/{file_id}/report", response_model=FileReport)
async def file_report(
    file_id: str, request: Request, org: str = Depends(current_org), model: str | None = None
) -> FileReport:
    """Every issue (up to 200 per code, exact counts), the statistics, and a token-length histogram."""
    from tunery.data.rules import RULES

    server = server_of(request)
    record = _fine_tune_file(request, file_id, org)
    choice, model_dir = await run_in_threadpool(_model_dir, server, org, model)
    try:
        report, lengths = await run_in_threadpool(_validate_elsewhere, record.path, str(model_dir), choice.max_seq_len)
    except TuneryError as exc:
        raise APIError(500, f"cannot read file {file_id}: {exc}", type="server_error") from None
    # The server's path to the bytes is not the client's business; its filename is what it knows.
    report = {
        **report,
        "file": record.filename,
        "issues": [{**issue, "file": record.filename} for issue in report["issues"]],
    }
    fixes = {code: RULES[code].fix for code in report["issue_counts"] if code in RULES}
    return FileReport(
        file_id=file_id,
        filename=record.filename,
        tokenizer=choice,
        report=report,
        fixes=fixes,
        histogram=histogram(lengths),
        histogram_examples=len(lengths),
    )


def _token_view(path: str, tok: ChatTokenizer, max_seq_len: int, n: int) -> list[TokenExample]:
    from tunery.data.formats import to_example
    from tunery.data.render import render_chat, show_tokens
    from tunery.data.validate import first_valid_examples

    shown = []
    for line, obj in first_valid_examples(path, n):
        example = to_example(obj, line)
        answers = [(a, example.as_chat(a)) for a in ("chosen", "rejected")] if _is_pair(example) else [(None, example)]
        for answer, chat in answers:
            rendered = render_chat(chat, tok, max_seq_len)
            shown.append(
                TokenExample(
                    line=line,
                    answer=answer,
                    tokens=show_tokens(rendered, tok),
                    trained=rendered.trained_tokens,
                    total=len(rendered.input_ids),
                    truncated=rendered.truncated,
                )
            )
    return shown


@router.get("/{file_id}/tokens", response_model=TokenView)
async def file_tokens(
    file_id: str,
    request: Request,
    org: str = Depends(current_org),
    model: str | None = None,
    n: int = Query(3, ge=1, le=20),
    max_seq_len: int | None = Query(None, ge=1, description="a job's max_seq_len; default the model's context"),
) -> TokenView:
    """The first `n` valid examples as tokens, each marked trained or not, exactly as the trainer masks them.

    A job with max_seq_len auto never cuts an example shorter than the model's context; one with
    a set max_seq_len cuts there, so the job page links here with its value.
    """
    server = server_of(request)
    record = _fine_tune_file(request, file_id, org)
    choice, tok = await run_in_threadpool(_tokenizer, server, org, model)
    if max_seq_len is not None and max_seq_len > choice.max_seq_len:
        raise APIError(
            400, f"max_seq_len must be at most {choice.model}'s context ({choice.max_seq_len})", param="max_seq_len"
        )
    limit = max_seq_len or choice.max_seq_len
    try:
        examples = await run_in_threadpool(_token_view, record.path, tok, limit, n)
    except TuneryError as exc:
        raise APIError(
            400, f"cannot render file {file_id} with {choice.model}'s chat template: {exc}", param="model"
        ) from None
    return TokenView(file_id=file_id, tokenizer=choice, max_seq_len=limit, examples=examples)


def read_lines(path: Path, start: int, count: int) -> list[Line]:
    """Lines start..start+count-1, numbered as the validator numbers them (1-based, split at \\n)."""
    limit = MAX_LINE_CHARS * 4  # UTF-8 needs at most 4 bytes per character
    found: list[Line] = []
    with path.open("rb") as fh:
        number = 0
        while len(found) < count and (raw := fh.readline(limit + 1)):
            number += 1
            cut = len(raw) > limit and not raw.endswith(b"\n")
            if cut:  # skip the rest of an over-long line without holding it
                while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
            if number >= start:
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                found.append(Line(line=number, text=text[:MAX_LINE_CHARS], cut=cut or len(text) > MAX_LINE_CHARS))
    return found


@router.get("/{file_id}/lines", response_model=Lines)
async def file_lines(
    file_id: str,
    request: Request,
    org: str = Depends(current_org),
    start: int = Query(1, ge=1),
    count: int = Query(5, ge=1, le=100),
) -> Lines:
    """Raw lines of any of the organisation's files, so an issue can be shown in its context."""
    record = _own_file(request, file_id, org)
    lines = await run_in_threadpool(read_lines, Path(record.path), start, count)
    return Lines(file_id=file_id, lines=lines)
