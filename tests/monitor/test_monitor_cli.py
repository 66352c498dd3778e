"""`tunery monitor` through the real CLI: scheduled re-evaluation with baseline, alert, webhook and
history plot; and drift from the prompt log of a served fine-tuned model.

One tiny run is trained for the module, into `.../jobs/ftjob-abc123/run`, where the server's
worker puts the run of job `ftjob-abc123`: so the served name `ft:tiny:local::abc123` maps to it.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from builders import run_cli, write_chat_dataset, write_heldout

from tunery.monitor.prompt_log import DAY, log_prompt

SERVED = "ft:tiny:local::abc123"


@pytest.fixture(scope="module")
def lab(tiny_model_dir, chat_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor")
    env = {"TUNERY_HOME": str(root / "home")}
    train = root / "train.jsonl"
    shutil.copy(chat_data[0], train)
    run_dir = root / "jobs" / "ftjob-abc123" / "run"
    result = run_cli(
        "train",
        "--model",
        tiny_model_dir,
        "--data",
        train,
        "--output",
        run_dir,
        "n_epochs=1",
        "batch_size=8",
        "lora.r=4",
        "save_every=6",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "env": env, "run": run_dir, "train": train}


def tunery(lab, *args):
    return run_cli(*args, env=lab["env"])


def test_scheduled_evaluation_records_a_baseline_then_alerts(lab, webhook, tmp_path):
    heldout = tmp_path / "heldout.jsonl"
    write_heldout(heldout, ["/^/"] * 6)
    url = f"http://127.0.0.1:{webhook.server_port}/hook"
    added = tunery(
        lab,
        "monitor",
        "add",
        lab["run"],
        "--eval",
        heldout,
        "--every",
        "1d",
        "--threshold",
        "0.1",
        "--graders",
        "regex",
        "--webhook",
        url,
    )
    assert added.returncode == 0, added.stderr
    suite = added.stdout.split()[1].rstrip(":")

    first = tunery(lab, "monitor", "run")
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"ok: {suite} " in first.stdout and "baseline recorded: regex 1.000" in first.stdout
    again = tunery(lab, "monitor", "run")  # cron fires again: nothing is due for a day
    assert (again.returncode, again.stdout.strip()) == (0, "nothing due")

    write_heldout(heldout, ["/^/"] * 3 + ["/^never$/"] * 3)  # new labelled traffic the model gets wrong
    dropped = tunery(lab, "monitor", "run", "--force")
    assert dropped.returncode == 1
    assert f"error: {suite} (run " in dropped.stderr and "regex fell to 0.500 from its baseline 1.000" in dropped.stderr
    assert len(webhook.received) == 1
    posted = webhook.received[0]
    assert posted["level"] == "error" and posted["suite"] == suite
    assert posted["alerts"] == [{"metric": "regex", "baseline": 1.0, "value": 0.5, "level": "error"}]

    history = json.loads(tunery(lab, "monitor", "report", lab["run"], "--json").stdout)["suites"][0]
    assert [r["level"] for r in history["results"]] == ["ok", "error"]
    assert history["baseline"] == {"regex": 1.0}
    assert history["results"][0]["dataset_id"] != history["results"][1]["dataset_id"]  # the data changed

    plot = tmp_path / "history.png"
    report = tunery(lab, "monitor", "report", SERVED, "--output", plot)  # the served name finds the same run
    assert report.returncode == 0, report.stderr
    assert suite in report.stdout and "regex" in report.stdout and "error" in report.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_monitor_rejects_bad_input_cleanly(lab, tmp_path):
    missing = tunery(lab, "monitor", "add", lab["run"], "--eval", tmp_path / "nope.jsonl", "--every", "1d")
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    heldout = tmp_path / "h.jsonl"
    write_heldout(heldout, ["/^/"])
    bad_every = tunery(lab, "monitor", "add", lab["run"], "--eval", heldout, "--every", "daily")
    assert bad_every.returncode == 2 and "'daily' is not a duration" in bad_every.stderr
    bad_hook = tunery(lab, "monitor", "add", lab["run"], "--eval", heldout, "--every", "1d", "--webhook", "file:///etc")
    assert bad_hook.returncode == 2 and "not an http(s) URL" in bad_hook.stderr
    no_prompts = tunery(lab, "monitor", "drift", lab["run"], "--since", "1h")
    assert no_prompts.returncode == 2 and "TUNERY_LOG_PROMPTS=1" in no_prompts.stderr


def test_drift_of_logged_prompts_against_the_training_data(lab, tmp_path):
    home = lab["root"] / "home"
    now = time.time()
    on_topic = [
        json.loads(line)["messages"]
        for line in write_chat_dataset(tmp_path / "same.jsonl", 30, seed=7).read_text().splitlines()
    ]
    for messages in on_topic:  # last month's traffic looked like the training data...
        log_prompt(home, SERVED, messages, retention_days=60, now=now - 20 * DAY)
    questions = [
        "What is 26 plus 50?",
        "Which planet is the largest?",
        "Translate good morning into French.",
        "Name three primary colours.",
        "How many legs does a spider have?",
        "Who wrote Hamlet?",
    ]
    for i in range(30):  # ...this week's is general knowledge questions
        log_prompt(home, SERVED, [{"role": "user", "content": f"{questions[i % 6]} ({i})"}], now=now - i * 60)

    drifted = tunery(lab, "monitor", "drift", lab["run"], "--since", "7d", "--json")
    assert drifted.returncode == 1, drifted.stderr[-2000:]  # alert
    report = json.loads(drifted.stdout)
    assert report["level"] == "alert" and report["recent_prompts"] == 30 and report["train_prompts"] == 48
    assert SERVED in report["source"]
    assert all(e["text"].split(" (")[0] in questions for e in report["most_distant"])

    steady = tunery(lab, "monitor", "drift", lab["run"], "--prompts", tmp_path / "same.jsonl")
    assert steady.returncode == 0, steady.stdout[-2000:] + steady.stderr[-2000:]
    assert "ok" in steady.stdout and "most distant prompts" in steady.stdout
