"""The opt-in prompt log: one line per request, read back by time, pruned past its retention."""

from __future__ import annotations

import json

import pytest

from tunery.errors import TuneryError
from tunery.monitor.prompt_log import (
    DAY,
    log_if_enabled,
    log_path,
    log_prompt,
    logged_models,
    prune,
    read_log,
    settings_from_env,
)

MODEL = "ft:tiny:local::abc123"
NOW = 1_750_000_000.0


def ask(text: str) -> list[dict]:
    return [{"role": "system", "content": "Route it."}, {"role": "user", "content": text}]


def test_lines_are_appended_and_read_back_by_time(tmp_path):
    path = log_prompt(tmp_path, MODEL, ask("old"), now=NOW - 3 * DAY)
    log_prompt(tmp_path, MODEL, ask("new"), now=NOW)
    log_prompt(tmp_path, MODEL, ask("who"), now=NOW, user={"user": "u1"})  # a request's `user` field
    assert path == log_path(tmp_path, MODEL) and ":" not in path.name  # the name is a safe slug
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[1] == {"ts": NOW, "model": MODEL, "messages": ask("new")}
    assert lines[2]["user"] == {"user": "u1"}
    assert [p.messages[1]["content"] for p in read_log(path)] == ["old", "new", "who"]
    assert [p.messages[1]["content"] for p in read_log(path, since=NOW - DAY)] == ["new", "who"]
    assert logged_models(tmp_path) == {MODEL: path}
    assert log_path(tmp_path, "ft_tiny_local__abc123") != path  # similar names do not share a log


def test_writing_prunes_once_the_oldest_line_is_a_day_past_retention(tmp_path):
    log_prompt(tmp_path, MODEL, ask("a"), retention_days=2, now=NOW)
    log_prompt(tmp_path, MODEL, ask("b"), retention_days=2, now=NOW + 2.5 * DAY)  # "a" expired, within slack
    assert len(list(read_log(log_path(tmp_path, MODEL)))) == 2
    log_prompt(tmp_path, MODEL, ask("c"), retention_days=2, now=NOW + 3.5 * DAY)  # a day past: prune
    assert [p.messages[1]["content"] for p in read_log(log_path(tmp_path, MODEL))] == ["b", "c"]


def test_prune_drops_everything_past_retention(tmp_path):
    for i, age in enumerate((40, 31, 29, 1)):  # written with a long retention: nothing pruned on write
        log_prompt(tmp_path, MODEL, ask(str(i)), retention_days=100, now=NOW - age * DAY)
    log_prompt(tmp_path, "other-model", ask("x"), retention_days=100, now=NOW - 35 * DAY)
    with log_path(tmp_path, MODEL).open("a") as fh:
        fh.write('{"ts": 17500')  # the half line a crash leaves
    assert prune(tmp_path, retention_days=30, now=NOW) == 4
    assert [p.messages[1]["content"] for p in read_log(log_path(tmp_path, MODEL))] == ["2", "3"]
    assert list(read_log(log_path(tmp_path, "other-model"))) == []


def test_settings_come_from_the_environment():
    assert settings_from_env({}).enabled is False
    on = settings_from_env({"TUNERY_LOG_PROMPTS": "1", "TUNERY_PROMPT_RETENTION_DAYS": "7"})
    assert on.enabled and on.retention_days == 7
    with pytest.raises(TuneryError, match="TUNERY_LOG_PROMPTS"):
        settings_from_env({"TUNERY_LOG_PROMPTS": "maybe"})
    with pytest.raises(TuneryError, match="positive number of days"):
        settings_from_env({"TUNERY_PROMPT_RETENTION_DAYS": "0"})


def test_the_server_hook_logs_only_when_enabled(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path))
    monkeypatch.delenv("TUNERY_LOG_PROMPTS", raising=False)
    log_if_enabled(MODEL, ask("not logged"))
    assert not log_path(tmp_path, MODEL).exists()
    monkeypatch.setenv("TUNERY_LOG_PROMPTS", "1")
    log_if_enabled(MODEL, ask("logged"))
    assert [p.messages[1]["content"] for p in read_log(log_path(tmp_path, MODEL))] == ["logged"]
    monkeypatch.setenv("TUNERY_LOG_PROMPTS", "maybe")
    log_if_enabled(MODEL, ask("bad setting"))  # warns on stderr, never raises into a chat request
