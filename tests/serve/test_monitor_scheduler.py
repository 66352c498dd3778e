"""`tunery serve --monitor-every`: the real server runs due monitor suites by itself.

No one calls `tunery monitor run` here: a suite registered with `monitor add --every 1s` gains
history while the server is up, and when the held-out data turns against the model the server's
background run records the error result, its event, and the webhook POST, as cron's would.
"""

from __future__ import annotations

import time

import pytest
from builders import run_cli, write_chat_dataset, write_heldout
from serving import ServerProcess, server_env

from tunery.errors import TuneryError
from tunery.serve.settings import load_settings
from tunery.store.registry import open_registry


def wait_until(check, what: str, server: ServerProcess, timeout: float = 240):
    """Poll `check()` until it returns something truthy; fail with the server's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert server.proc.poll() is None, f"the server exited:\n{server.tail()}"
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {timeout}s:\n{server.tail()}")


def results_when(home, suite_id: str, ready):
    """A check for `wait_until`: the suite's results once `ready(results)`."""

    def check():
        with open_registry(home) as registry:
            results = registry.results(suite_id)
        return results if ready(results) else None

    return check


def test_the_server_runs_due_suites_in_the_background(tiny_model_dir, tmp_path, webhook):
    home = tmp_path / "home"
    env = {"TUNERY_HOME": str(home), "OMP_NUM_THREADS": "1"}
    train = write_chat_dataset(tmp_path / "train.jsonl", 16, seed=1)
    run_dir = tmp_path / "run"
    trained = run_cli(
        "train", "--model", tiny_model_dir, "--data", train, "--output", run_dir,
        "n_epochs=1", "batch_size=8", "lora.r=4", env=env,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]

    heldout = tmp_path / "heldout.jsonl"
    write_heldout(heldout, ["/^/"] * 4)
    added = run_cli(
        "monitor", "add", run_dir, "--eval", heldout, "--every", "1s", "--threshold", "0.1",
        "--graders", "regex", "--webhook", f"http://127.0.0.1:{webhook.server_port}/hook", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    suite = added.stdout.split()[1].rstrip(":")

    server = ServerProcess(
        home=home / "server",
        args=["--workers", "0", "--model", f"tiny={tiny_model_dir}", "--threads", "1", "--monitor-every", "1s"],
        env={**server_env(None), **env},
        log=tmp_path / "server.log",
    )
    server.start()
    try:
        first = wait_until(results_when(home, suite, lambda rs: len(rs) >= 1), "baseline", server)
        assert (first[0].level, first[0].message) == ("ok", "baseline recorded: regex 1.000")
        write_heldout(heldout, ["/^/"] * 2 + ["/^never$/"] * 2)  # new labels the model gets wrong
        # The API keeps answering while evaluations come and go in their child processes.
        reply = server.client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=2
        )
        assert reply.object == "chat.completion"
        results = wait_until(results_when(home, suite, lambda rs: rs[-1].level == "error"), "error result", server)
        # The child posts the webhook after recording the result, then prints and exits: let it.
        wait_until(lambda: "monitor run exited 1" in server.log.read_text(), "exit line", server)
    finally:
        server.stop()

    # Between the baseline and the alert, only runs that read the old file (in flight at the rewrite).
    assert [r.level for r in results[1:-1]] in ([], ["ok"])
    assert "regex fell to 0.500 from its baseline 1.000" in results[-1].message
    with open_registry(home) as registry:
        events = registry.events(suite)
        assert registry.get_suite(suite).baseline == {"regex": 1.0}  # later runs never move the baseline
    assert [(e.level, e.data) for e in events][-1] == ("error", {"metric": "regex", "baseline": 1.0, "value": 0.5})
    assert webhook.received, "no webhook POST for the alert"
    assert webhook.received[-1]["level"] == "error" and webhook.received[-1]["suite"] == suite
    log = server.log.read_text()
    assert "monitor every 1s" in log and f"tunery monitor: running due suites: {suite}" in log
    assert f"error: {suite} (run " in log and "monitor run exited 1" in log
    assert "Traceback" not in log


def test_background_monitoring_is_off_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("TUNERY_MONITOR_EVERY", raising=False)
    assert load_settings(None, home=tmp_path).monitor_every is None
    monkeypatch.setenv("TUNERY_MONITOR_EVERY", "5m")
    assert load_settings(None, home=tmp_path).monitor_every == 300
    assert load_settings(None, home=tmp_path, monitor_every="90s").monitor_every == 90  # the flag wins
    config = tmp_path / "server.yaml"
    config.write_text("monitor_every: 2h\n")
    monkeypatch.delenv("TUNERY_MONITOR_EVERY")
    assert load_settings(config, home=tmp_path).monitor_every == 7200
    for bad in ("daily", "0s", -5):
        with pytest.raises(TuneryError, match="monitor_every"):
            load_settings(None, home=tmp_path, monitor_every=bad)


def test_serve_rejects_a_bad_monitor_period_cleanly(tmp_path):
    result = run_cli("serve", "--home", tmp_path, "--workers", "0", "--monitor-every", "daily")
    assert result.returncode == 2
    assert "'daily' is not a duration" in result.stderr and "Traceback" not in result.stderr
