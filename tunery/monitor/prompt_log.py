"""The opt-in prompt log: what reached a deployed model, kept for a limited time.

Off unless `TUNERY_LOG_PROMPTS=1`. Each chat request then appends one line
`{"ts": <unix seconds>, "model": <served name>, "messages": [...]}` to
`$TUNERY_HOME/monitor/prompts/<model>.jsonl` (only the request's messages: no answers, no API
keys). Lines older than `TUNERY_PROMPT_RETENTION_DAYS` (default 30) are pruned: on write, once
the oldest line is a day past the limit (so a busy server rewrites the file about once a day,
not on every request), and by every `tunery monitor run`. Readers skip expired lines anyway.

Writers take a file lock per log, so the server's threads and a pruning `monitor run` never
interleave; pruning rewrites the file atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel, Field, ValidationError

from tunery.errors import TuneryError
from tunery.fsio import atomic_write

DAY = 86400.0
TRUE, FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


class PromptLogSettings(BaseModel):
    enabled: bool = Field(False, description="TUNERY_LOG_PROMPTS: log the prompts of chat requests")
    retention_days: float = Field(30.0, gt=0, description="TUNERY_PROMPT_RETENTION_DAYS: how long lines are kept")


def settings_from_env(env: dict | None = None) -> PromptLogSettings:
    """The settings from the environment.

    Raises:
        TuneryError: a value that is not a yes/no or a positive number of days.
    """
    env = os.environ if env is None else env
    flag = env.get("TUNERY_LOG_PROMPTS", "").strip().lower()
    if flag not in TRUE | FALSE:
        raise TuneryError(f"TUNERY_LOG_PROMPTS={flag!r} is not a yes/no value", hint="set it to 1 or 0")
    try:
        return PromptLogSettings(enabled=flag in TRUE, retention_days=env.get("TUNERY_PROMPT_RETENTION_DAYS") or 30.0)
    except ValidationError:
        raise TuneryError(
            f"TUNERY_PROMPT_RETENTION_DAYS={env.get('TUNERY_PROMPT_RETENTION_DAYS')!r} is not a positive number of days"
        ) from None


def prompts_dir(home: Path) -> Path:
    return Path(home) / "monitor" / "prompts"


def log_path(home: Path, model: str) -> Path:
    """Model names hold ':' and '/', so the file is a safe slug plus a hash that keeps names apart."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")[:80] or "model"
    return prompts_dir(home) / f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}.jsonl"


def _lock(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=30)


def log_prompt(
    home: Path,
    model: str,
    messages: list[dict],
    *,
    retention_days: float = 30.0,
    now: float | None = None,
    user: dict | None = None,
) -> Path:
    """Append one request's messages to the model's log, pruning it when due. Returns the log.

    `user` holds the request's end-user identifiers (`user`, `safety_identifier`) when it sent any.
    """
    now = time.time() if now is None else now
    path = log_path(home, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"ts": now, "model": model, "messages": messages} | ({"user": user} if user else {})
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _lock(path):
        with path.open("a", encoding="utf-8") as fh:
            fh.write(line)
        oldest = _first_timestamp(path)
        if oldest is not None and oldest < now - (retention_days + 1) * DAY:
            _prune_locked(path, now - retention_days * DAY)
    return path


def _first_timestamp(path: Path) -> float | None:
    with path.open(encoding="utf-8") as fh:
        first = fh.readline()
    try:
        return float(json.loads(first)["ts"])
    except (ValueError, KeyError, TypeError):
        return None


def _prune_locked(path: Path, cutoff: float) -> int:
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            fresh = float(json.loads(line)["ts"]) >= cutoff
        except (ValueError, KeyError, TypeError):
            fresh = False  # a line cut short by a crash: nothing to keep
        if fresh:
            kept.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        atomic_write(path, "".join(kept))
    return dropped


def prune(home: Path, retention_days: float, now: float | None = None) -> int:
    """Drop every logged line older than the retention period; returns how many went."""
    now = time.time() if now is None else now
    dropped = 0
    for path in sorted(prompts_dir(home).glob("*.jsonl")):
        with _lock(path):
            dropped += _prune_locked(path, now - retention_days * DAY)
    return dropped


@dataclass(frozen=True)
class LoggedPrompt:
    ts: float
    model: str
    messages: list[dict]


def read_log(path: Path, *, since: float | None = None) -> Iterator[LoggedPrompt]:
    """The logged prompts at or after `since`, oldest first; damaged lines are skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                obj = json.loads(line)
                entry = LoggedPrompt(ts=float(obj["ts"]), model=str(obj["model"]), messages=list(obj["messages"]))
            except (ValueError, KeyError, TypeError):
                continue
            if since is None or entry.ts >= since:
                yield entry


def logged_models(home: Path) -> dict[str, Path]:
    """Served model name → its log, for every log under `home`."""
    found = {}
    for path in sorted(prompts_dir(home).glob("*.jsonl")):
        first = next(read_log(path), None)
        if first is not None:
            found[first.model] = path
    return found


def log_if_enabled(model: str, messages: list[dict], user: dict | None = None) -> None:
    """The server's hook: log when TUNERY_LOG_PROMPTS is on. Never raises: a full disk must not
    fail a chat request, so problems go to stderr."""
    try:
        settings = settings_from_env()
        if settings.enabled:
            from tunery.home import tunery_home

            log_prompt(tunery_home(), model, messages, retention_days=settings.retention_days, user=user)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(f"warning: prompt not logged: {exc}", file=sys.stderr, flush=True)
