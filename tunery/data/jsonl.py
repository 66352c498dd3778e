"""Reading JSONL data: bounded lines, decoded and parsed, or the problem that stopped them.

The validator's scan (tunery/data/validate.py) and `formats.iter_jsonl` both read through here,
so a file reads the same way everywhere: lines capped at `MAX_LINE_BYTES`, UTF-8 (a BOM on the
first line allowed), one JSON value per line, each problem with its code, message and column.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tunery.errors import TuneryError

MAX_LINE_BYTES = 10 * 1024 * 1024  # one example bigger than this is a mistake, not data
_SKIP_CHUNK = 1024 * 1024

# Canonical JSON: key order and spacing do not make two examples different. ASCII output, so
# lone surrogates from "\ud800" escapes encode too. Built once: json.dumps with options builds a
# new encoder on every call, which costs more than the hash.
canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode
canonical_utf8 = json.JSONEncoder(ensure_ascii=False).encode


def check_data_file(path: str | Path, name: str | None = None) -> None:
    """The one check of a data file's path, for every verb that reads one (`validate`, `train`):
    it exists, is a regular file (not a directory, a device such as /dev/zero, or a pipe) and can
    be opened. Messages call it `name` (an upload's own filename), default the path.

    Raises:
        TuneryError: exit code 2, what is wrong with the path and how to fix it.
    """
    path = Path(path)
    name = name or str(path)
    if path.is_symlink() and not path.exists():
        raise TuneryError(f"{name} is a broken symbolic link (to {os.readlink(path)})", hint="point it at the file")
    if not path.exists():
        raise TuneryError(f"{name} does not exist", hint="check the path (one JSON example per line)")
    if path.is_dir():
        raise TuneryError(f"{name} is a directory, not a JSONL file", hint="pass the .jsonl file inside it")
    if not path.is_file():
        raise TuneryError(f"{name} is not a regular file (a device, pipe or socket)", hint="pass a .jsonl file")
    if not os.access(path, os.R_OK):
        raise TuneryError(f"cannot read {name}: permission denied")


def open_data(path: Path, name: str | None = None) -> BinaryIO:
    """`path` opened for the scan; errors call it `name` (an upload's own filename), default the path."""
    check_data_file(path, name)
    try:
        return path.open("rb", buffering=1 << 20)
    except OSError as exc:
        raise TuneryError(f"cannot read {name or path}: {exc.strerror}") from None


def binary_reason(head: bytes) -> str | None:
    """Why the first bytes show this is not JSONL text, or None."""
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed (decompress it first)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it is UTF-16 text"
    if b"\x00" in head:
        return "it holds NUL bytes, so it is binary"
    return None


def read_lines(fh: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Yield (1-based line, raw bytes), with None in place of a line over MAX_LINE_BYTES."""
    readline = fh.readline
    number = 0
    while True:
        raw = readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
                pass
            raw = None
        yield number, raw


def parse_line(raw: bytes, number: int) -> tuple[object, tuple[str, str, int | None] | None]:
    """Decode and parse one line: (value, None) or (None, (code, message, column))."""
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start : exc.start + 1].hex()
        column = exc.start + 1
        return None, ("invalid_utf8", f"invalid UTF-8 at byte {column} (0x{byte})", column)
    try:
        value = json.loads(text)
    except RecursionError:
        return None, ("invalid_json", "the JSON is nested too deeply to parse", None)
    except ValueError:  # JSONDecodeError, and ints beyond Python's digit limit
        return None, _json_problem(text.rstrip("\r\n"))
    # JSON may spell half a UTF-16 surrogate pair ("\ud800"); it parses, but it is not a character,
    # and the tokenizer refuses it at training time. The substring test keeps valid lines fast.
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        column = _lone_surrogate_column(text)
        return None, ("invalid_utf8", f"the \\u escape at column {column} is half of a UTF-16 surrogate pair", column)
    return value, None


_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _has_lone_surrogate(value: object) -> bool:
    try:
        canonical_utf8(value).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate_column(text: str) -> int | None:
    """1-based column of the first surrogate escape that is not part of a pair."""
    for match in _SURROGATE_ESCAPE.finditer(text):
        if len(match.group()) == 6:
            return match.start() + 1
    return None


def _json_problem(text: str) -> tuple[str, str, int | None]:
    """Why `text` is not JSON, from a parse without the line ending (which would shift the column)."""
    column, reason = None, "unparseable"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        column, reason = exc.colno, exc.msg
    except ValueError as exc:
        reason = str(exc)
    where = f" at column {column}" if column else ""
    context = ""
    if text.strip() in ("[", "{", "]", "}"):
        context = " (this looks like pretty-printed JSON, not one object per line)"
    elif column == len(text) + 1:
        context = " (the line ends before the JSON does: is it cut off, or split over several lines?)"
    return "invalid_json", f"not valid JSON{where}: {reason}{context}", column
