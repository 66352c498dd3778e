"""The file readers behind /v1/tunery: raw lines, the metrics tail, public configs, job actions."""

from __future__ import annotations

import json

from tunery.jobs.states import TRANSITIONS
from tunery.store import JobRecord
from tunery.train.rundir import RunDir
from tunery.web.api.evals import report_kind
from tunery.web.api.files import MAX_LINE_CHARS, read_lines
from tunery.web.api.jobs import job_actions, last_train_record, public_config


def test_lines_are_numbered_as_the_validator_numbers_them(tmp_path):
    from tunery.data.validate import validate_file

    path = tmp_path / "data.jsonl"
    huge = "x" * (MAX_LINE_CHARS * 5)
    path.write_text('{"a": 1}\n\n' + huge + "\n" + "not json\n" + "last, no newline")
    lines = read_lines(path, 2, 10)
    assert [(line.line, line.cut) for line in lines] == [(2, False), (3, True), (4, False), (5, False)]
    assert lines[0].text == "" and len(lines[1].text) == MAX_LINE_CHARS
    assert lines[2].text == "not json" and lines[3].text == "last, no newline"
    # The validator reports the bad JSON on line 4: the same number the page links to.
    invalid = [issue.line for issue in validate_file(path).issues if issue.code == "invalid_json"]
    assert 4 in invalid
    assert read_lines(path, 9, 3) == []


def test_last_train_record_reads_only_the_tail(tmp_path):
    run = RunDir(tmp_path)
    assert last_train_record(run.metrics_file) is None
    for step in range(1, 400):  # well over the 64 KiB tail
        run.log({"type": "train", "step": step, "total_steps": 400, "train_loss": 1 / step, "pad": "p" * 200})
    run.log({"type": "valid", "step": 399, "valid_loss": 0.5})
    with run.metrics_file.open("a") as fh:
        fh.write('{"type": "train", "step": 400, "tot')  # a write cut short by SIGKILL
    record = last_train_record(run.metrics_file)
    assert record["step"] == 399 and record["total_steps"] == 400


def _job(**fields) -> JobRecord:
    base = dict(
        id="ftjob-1",
        org="org-a",
        model="tiny",
        training_file="file-train",
        status="running",
        created_at=0,
        seed=1,
        method={},
        hyperparameters={},
        validation_file="file-valid",
    )
    return JobRecord(**{**base, **fields})


def test_public_config_names_files_by_id_and_hides_server_paths():
    config = {
        "model": "/srv/models/tiny",
        "data": "/srv/files/file-train",
        "validation": "/srv/files/file-valid",
        "output": "/srv/jobs/ftjob-1/run",
        "lora": {"r": 4},
        "seed": 1,
    }
    assert public_config(config, _job()) == {
        "model": "tiny",
        "data": "file-train",
        "validation": "file-valid",
        "lora": {"r": 4},
        "seed": 1,
    }


def test_job_actions_follow_the_state_machine():
    actions = job_actions()
    assert set(actions) == set(TRANSITIONS)
    assert actions["running"] == ["cancel", "pause"]
    assert actions["paused"] == ["cancel", "resume"]
    assert actions["queued"] == ["cancel"]  # queued → queued is no resume
    assert actions["succeeded"] == actions["failed"] == actions["cancelled"] == []


def test_report_kind_tells_compare_from_eval_reports(tmp_path):
    assert report_kind({"systems": {"tuned": {}}, "verdict": "..."}) == "compare"
    assert report_kind({"system": "model", "metrics": {"exact": {}}}) == "eval"
    assert report_kind(json.loads('{"something": "else"}')) is None
