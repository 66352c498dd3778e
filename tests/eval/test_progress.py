"""eval and compare progress: answers done of N with an ETA, and the final eval's status.json phase."""

from __future__ import annotations

import json

from tunery.eval.progress import AnswerProgress, format_eta
from tunery.jobs.outcome import in_user_terms
from tunery.jobs.progress import phase_message


def test_a_pipe_gets_a_line_per_quarter_and_the_listener_every_batch(capsys):
    heard = []
    progress = AnswerProgress("[eval]", on_update=lambda *args: heard.append(args))
    for done in (0, 16, 32, 48, 64, 80, 96, 100):
        progress("tuned", done, 100)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" answers")[0].rsplit(" ", 1)[1] for line in lines] == [
        "0/100",
        "32/100",
        "64/100",
        "80/100",
        "100/100",
    ]
    assert lines[0] == "[eval] tuned: " + "░" * 20 + " 0/100 answers · ETA –"
    assert lines[-1].startswith("[eval] tuned: " + "█" * 20 + " 100/100 answers · ETA 0s")
    assert [h[1:3] for h in heard] == [(d, 100) for d in (0, 16, 32, 48, 64, 80, 96, 100)]
    assert heard[0][3] is None and heard[-1][3] == 0


def test_eta_and_event_wording():
    assert format_eta(None) == "ETA –" and format_eta(12.4) == "ETA 12s" and format_eta(125) == "ETA 2m05s"
    assert phase_message({"name": "evaluating", "done": 40, "total": 100, "eta_s": 30}) == (
        "Evaluating: 40/100 validation answers, ETA 30s"
    )
    assert phase_message({"name": "evaluating", "done": 100, "total": 100, "eta_s": 0}) == (
        "Evaluating: 100/100 validation answers"
    )


def test_a_trainer_error_reads_in_the_api_users_terms():
    message = (
        "/srv/home/files/file-Ab12 has 2 error(s): file-Ab12:3: no assistant message. "
        "Run `tunery validate /srv/home/files/file-Ab12` for the full report."
    )
    said = in_user_terms(message, {"file-Ab12": "train.jsonl"})
    assert said == (
        "train.jsonl has 2 error(s): train.jsonl:3: no assistant message. "
        "The file's page in the dashboard (/files/file-Ab12) lists every issue."
    )
    assert "/srv" not in said and "tunery validate" not in said


def test_training_keeps_status_current_and_records_the_final_eval(cli, tiny_model_dir, chat_data, tmp_path):
    train, valid = chat_data
    run = tmp_path / "run"
    result = cli(
        "train",
        "--model",
        tiny_model_dir,
        "--data",
        train,
        "--validation",
        valid,
        "--output",
        run,
        "max_steps=3",
        "batch_size=4",
        "eval_every=3",
        "save_every=3",
    )
    assert result.returncode == 0, result.stderr
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "succeeded" and status["step"] == 3
    assert status["phase"] == {"name": "evaluating", "done": 12, "total": 12, "eta_s": 0.0}
    assert "[final eval] tuned: " in result.stderr and "12/12 answers" in result.stderr


def test_each_training_step_reaches_status_json(tmp_path):
    from tunery.train.report import Progress
    from tunery.train.rundir import RunDir

    run = RunDir(tmp_path)
    run.create()
    progress = Progress(10, 0, run=run)
    progress.update(1, "loss 1.0")
    assert run.read_status()["step"] == 1 and run.read_status()["state"] == "running"
    progress.update(2, "loss 0.9")  # within a second of the last write: not rewritten yet
    assert run.read_status()["step"] == 1
    progress.update(10, "loss 0.5")  # the last step always is
    assert run.read_status()["step"] == 10
    progress.close()
