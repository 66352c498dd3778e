"""Multipart uploads streamed straight to disk, with a size limit enforced while receiving.

Starlette's `request.form()` would spool the whole body before we could count it; here the
body is fed chunk by chunk to python-multipart's parser, the `file` part goes to a temporary
file named by us (never by the client), and the upload stops at the first byte over the limit.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from anyio import to_thread
from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from tunery.jobs.lease import host_key
from tunery.serve.errors import APIError

MAX_FIELD_BYTES = 64 * 1024  # purpose and friends are short strings
# A file being received: `.upload-<host key>-<pid>-<random>`, so a server starting on a shared home
# removes only the partial uploads of processes of its own host that are gone.
PARTIAL = ".upload-"


@dataclass
class Upload:
    fields: dict[str, str]
    path: Path | None = None  # the received `file` part, in a temporary file
    filename: str | None = None
    size: int = 0


@dataclass
class _Receiver:
    """Parser callbacks: route each part's bytes to the file or to a small field buffer."""

    tmp_dir: Path
    max_bytes: int
    upload: Upload = field(default_factory=lambda: Upload(fields={}))
    _header_name: bytes = b""
    _header_value: bytes = b""
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _name: str | None = None
    _field: bytearray = field(default_factory=bytearray)
    _file = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: setattr(
                self, "_header_name", self._header_name + data[start:end]
            ),
            "on_header_value": lambda data, start, end: setattr(
                self, "_header_value", self._header_value + data[start:end]
            ),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._field = {}, None, bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            if self.upload.path is not None:
                raise APIError(400, "send exactly one `file` part", param="file")
            self.upload.filename = options.get(b"filename", b"upload").decode("utf-8", "replace")
            self.upload.path = self.tmp_dir / f"{PARTIAL}{host_key()}-{os.getpid()}-{secrets.token_hex(8)}"
            self._file = self.upload.path.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == "file":
            self.upload.size += end - start
            if self.upload.size > self.max_bytes:
                raise APIError(
                    413,
                    f"the file is larger than this server's limit of {self.max_bytes} bytes",
                    param="file",
                    code="file_too_large",
                )
            self._file.write(data[start:end])
        else:
            self._field += data[start:end]
            if len(self._field) > MAX_FIELD_BYTES:
                raise APIError(400, f"form field {self._name!r} is too long", param=self._name)

    def _part_end(self) -> None:
        if self._name == "file":
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        elif self._name:
            self.upload.fields[self._name] = self._field.decode("utf-8", "replace")

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.upload.path is not None:
            self.upload.path.unlink(missing_ok=True)


def sweep_partial_uploads(files_dir: Path) -> list[Path]:
    """Remove what uploads cut short by a crash left in `files_dir` (run at server start).

    A partial upload whose receiving process, on this host, is gone can never finish; one from
    another host (a shared home) is left to that host's next start.
    """
    removed = []
    here = host_key()
    for path in files_dir.glob(f"{PARTIAL}*"):
        host, _, rest = path.name[len(PARTIAL) :].partition("-")
        pid = rest.partition("-")[0]
        if host == here and pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


async def receive_upload(request: Request, tmp_dir: Path, max_bytes: int) -> Upload:
    """Read a multipart/form-data body; the caller must move or delete `upload.path`.

    Raises:
        APIError: 400 for a body that is not multipart, 413 for one over `max_bytes`.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise APIError(400, "upload the file as multipart/form-data with fields `file` and `purpose`")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MAX_FIELD_BYTES:
        raise APIError(
            413,
            f"the file is larger than this server's limit of {max_bytes} bytes",
            param="file",
            code="file_too_large",
        )
    receiver = _Receiver(tmp_dir, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())
    try:
        async for chunk in request.stream():
            # Parsing writes to disk: keep it off the event loop.
            await to_thread.run_sync(parser.write, chunk)
        parser.finalize()
        if receiver._file is not None:
            raise APIError(400, "the upload ended in the middle of the file")
    except APIError:
        receiver.discard()
        raise
    except Exception as exc:  # a malformed body, from the parser
        receiver.discard()
        raise APIError(400, f"malformed multipart body: {exc}") from None
    return receiver.upload
