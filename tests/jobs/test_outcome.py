"""How a trainer's end becomes the job's error, and what an "auto" job reports it ran with."""

from __future__ import annotations

import pytest

from tunery.jobs.outcome import error_from_status, resolved_multiplier


def test_a_reported_trainer_error_maps_to_an_openai_code_and_param(tmp_path):
    status = {"state": "failed", "error": {"code": "invalid_data", "message": "line 3: no assistant message"}}
    assert error_from_status(status, 1, tmp_path / "train.log") == {
        "code": "invalid_training_file",
        "message": "line 3: no assistant message",
        "param": "training_file",
    }
    for reported, code in (("nan_loss", "nan_loss"), ("out_of_memory", "out_of_memory"), ("what", "internal_error")):
        error = error_from_status({"error": {"code": reported, "message": "m"}}, 1, tmp_path / "train.log")
        assert error["code"] == code and error["message"] == "m"


def test_a_sigkilled_trainer_is_out_of_memory_and_a_silent_exit_logs_its_tail_for_the_server(tmp_path, caplog):
    # The kernel's OOM killer sends SIGKILL and leaves the trainer no time to report anything.
    assert error_from_status({"state": "running"}, -9, tmp_path / "none.log")["code"] == "out_of_memory"
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)) + "Segmentation fault\n")
    error = error_from_status(None, 139, log)
    # The caller gets the code and the exit; the log's tail (a traceback, server paths) goes to the server log.
    assert error["code"] == "internal_error" and "code 139" in error["message"] and "line 19" not in error["message"]
    assert "line 19\nSegmentation fault" in caplog.text and "line 11" not in caplog.text


def test_a_job_error_shows_no_server_path_and_no_traceback(caplog):
    from tunery.jobs.outcome import job_error

    error = job_error("invalid_training_file", "/srv/home/files/file-abc has 1 error(s): see https://x.org/a/b")
    assert error["message"] == "file-abc has 1 error(s): see https://x.org/a/b"
    crash = job_error("internal_error", 'Traceback (most recent call last):\n  File "/srv/tunery/x.py"\nValueError')
    assert "Traceback" not in crash["message"] and "/srv" not in crash["message"]
    assert "/srv/tunery/x.py" in caplog.text


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"method": "sft", "adapter": "lora", "learning_rate": 1e-3}, 1.0),  # the base rate itself
        ({"method": "sft", "adapter": "lora", "learning_rate": 3e-3}, 3.0),  # 3e-3 / 1e-3
        ({"method": "dpo", "adapter": "full", "learning_rate": 1e-6}, 0.5),  # 1e-6 / 2e-6
        ({"method": "sft", "adapter": "lora", "learning_rate": "auto"}, "auto"),  # never resolved
        ({}, "auto"),
    ],
)
def test_an_auto_multiplier_is_the_resolved_rate_over_the_base_rate(config, expected):
    assert resolved_multiplier(config) == expected
