"""Early stopping on the tiny model: a run whose validation loss stops falling ends early, with
the best step as final/; `off` runs every step; a resume in the middle of the patience ends the
same way; the setting is refused where it cannot work."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunery.errors import TuneryError
from tunery.train.config import RunConfig, load_config
from tunery.train.early_stopping import EarlyStopping
from tunery.train.plan import resolve
from tunery.train.rundir import RunDir

# A constant, too-high learning rate on 16 examples: the validation loss is lowest at step 2 of
# 12 (5.727, then 5.979 and 5.765), so with a patience of 2 passes the run stops at step 6.
NOISY = [
    "n_epochs=8",
    "batch_size=4",
    "max_steps=12",
    "eval_every=2",
    "lora.r=4",
    "seed=3",
    "learning_rate=0.05",
    "lr_scheduler=constant",
    "keep_checkpoints=1",
    "final_eval=false",
]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> tuple[Path, Path]:
    from builders import write_chat_dataset

    root = tmp_path_factory.mktemp("es-data")
    return write_chat_dataset(root / "train.jsonl", 16, seed=1), write_chat_dataset(root / "valid.jsonl", 12, seed=2)


def train_args(model: Path, data: tuple[Path, Path], out: Path, *extra: str) -> list:
    return ["train", "--model", model, "--data", data[0], "--validation", data[1], "--output", out, *NOISY, *extra]


@pytest.fixture(scope="module")
def stopped_run(tiny_model_dir, small_data, tmp_path_factory):
    from builders import run_cli

    out = tmp_path_factory.mktemp("es-runs") / "stopped"
    result = run_cli(*train_args(tiny_model_dir, small_data, out, "early_stopping=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_a_run_whose_validation_loss_stops_falling_stops_early_with_the_best_step_as_final(stopped_run):
    out, result = stopped_run
    run = RunDir(out)
    records = run.read_metrics()
    assert [r["step"] for r in records if r["type"] == "train"] == [1, 2, 3, 4, 5, 6]
    valid = [r["valid_loss"] for r in records if r["type"] == "valid"]
    assert valid[0] < min(valid[1:])  # what the test's settings are chosen for
    line = "Early stopping at step 6 of 12: validation loss did not improve for 2 passes; final model is step 2"
    assert line in result.stderr  # the CLI says so, once
    assert result.stderr.count("Early stopping at") == 1
    (stop,) = [r for r in records if r["type"] == "early_stop"]
    assert stop["step"] == 6 and stop["early_stopping"]["best_step"] == 2

    status = run.read_status()
    assert (status["state"], status["step"], status["total_steps"]) == ("succeeded", 6, 12)
    assert status["early_stopping"]["message"].startswith(line)
    manifest = json.loads((out / "final" / "tunery.json").read_text())
    assert manifest["step"] == 2
    assert {k: manifest["early_stopping"][k] for k in ("stopped_at_step", "planned_steps", "best_step")} == {
        "stopped_at_step": 6,
        "planned_steps": 12,
        "best_step": 2,
    }
    # final/ is the best step's checkpoint, which keep_checkpoints=1 did not prune.
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["step-000002", "step-000006"]
    best = load_file(run.checkpoints / "step-000002" / "adapter_model.safetensors")
    final = load_file(out / "final" / "adapter_model.safetensors")
    last = load_file(run.checkpoints / "step-000006" / "adapter_model.safetensors")
    assert best.keys() == final.keys()
    assert all(torch.equal(best[k], final[k]) for k in best)
    assert not all(torch.equal(last[k], final[k]) for k in last)
    # The plan printed the setting; the resolved config keeps it, so a resume stops the same way.
    assert "early_stopping" in result.stderr and load_config(out / "config.yaml").early_stopping == 2


def test_early_stopping_off_runs_every_step(tiny_model_dir, small_data, tmp_path, cli):
    out = tmp_path / "off"
    result = cli(*train_args(tiny_model_dir, small_data, out, "early_stopping=off"))
    assert result.returncode == 0, result.stderr[-3000:]
    records = RunDir(out).read_metrics()
    assert [r["step"] for r in records if r["type"] == "train"] == list(range(1, 13))
    assert not any(r["type"] == "early_stop" for r in records) and "Early stopping" not in result.stderr
    assert "early_stopping" not in RunDir(out).read_status()
    assert json.loads((out / "final" / "tunery.json").read_text())["step"] == 12


def test_a_resume_in_the_middle_of_the_patience_stops_as_the_uninterrupted_run(
    stopped_run, tiny_model_dir, small_data, tmp_path, cli
):
    out = tmp_path / "resumed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunery", *map(str, train_args(tiny_model_dir, small_data, out, "early_stopping=2"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = RunDir(out)
    deadline = time.monotonic() + 600
    while not any(r.get("step", 0) >= 4 for r in run.read_metrics()):  # past the best step, before the stop
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=600)
    status = run.read_status()
    assert status["state"] == "interrupted" and 4 <= status["step"] < 6, status

    result = cli("train", "--resume", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final model is step 2" in result.stderr
    assert run.read_status()["early_stopping"] == RunDir(stopped_run[0]).read_status()["early_stopping"]
    reference = load_file(stopped_run[0] / "final" / "adapter_model.safetensors")
    resumed = load_file(out / "final" / "adapter_model.safetensors")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_select_best_then_chooses_among_the_checkpoints_saved_before_the_stop(stopped_run, tmp_path):
    """Both set: early stopping ends training (final/ = the best loss), then select=best scores the
    checkpoints that are left and publishes its own pick, keeping the record of the stop."""
    from tunery.eval.select import select_final

    run = tmp_path / "run"
    shutil.copytree(stopped_run[0], run)
    selection = select_final(run)
    assert [s.step for s in selection.scores] == [2, 6]
    manifest = json.loads((run / "final" / "tunery.json").read_text())
    assert manifest["step"] == selection.step and manifest["early_stopping"]["best_step"] == 2
    final = load_file(run / "final" / "adapter_model.safetensors")
    chosen = load_file(run / "checkpoints" / f"step-{selection.step:06d}" / "adapter_model.safetensors")
    assert all(torch.equal(final[k], chosen[k]) for k in chosen)


def test_a_run_planned_before_early_stopping_existed_resumes_without_it(stopped_run, tmp_path):
    from tunery.train.prepare import prepare

    run = tmp_path / "old"
    shutil.copytree(stopped_run[0], run)
    config = run / "config.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(True) if "early_stopping" not in line))
    assert prepare(None, resume_dir=run).config.early_stopping == "off"


def test_a_patience_without_a_validation_file_is_refused(tiny_model_dir, small_data, tmp_path, cli):
    result = cli(
        "train", "--model", tiny_model_dir, "--data", small_data[0], "--output", tmp_path / "r", "early_stopping=3"
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "early_stopping=3 watches the validation loss; give validation" in result.stderr
    with pytest.raises(TuneryError, match="early_stopping must be auto, off or a positive patience"):
        load_config(overrides={"data": "x.jsonl", "validation": "v.jsonl", "early_stopping": 0})
    with pytest.raises(TuneryError, match="method=rft has no validation loss"):
        load_config(
            overrides={"data": "x.jsonl", "validation": "v.jsonl", "method": "rft", "rft": {"grader": "g.json"}}
            | {"early_stopping": 3}
        )
    # YAML reads a bare `off` as false: it means off.
    assert load_config(overrides={"data": "x.jsonl", "early_stopping": False}).early_stopping == "off"


def _plan(**settings):
    config = RunConfig(data="train.jsonl", **settings)
    return resolve(config, n_examples=300, longest=100, context_length=8192, cuda_available=False, bf16_supported=False)


def test_auto_turns_early_stopping_on_only_with_a_validation_file():
    plan = _plan(validation="valid.jsonl")
    assert plan.config.early_stopping == 3
    assert plan.reasons["early_stopping"].startswith("after 3 validation passes without a lower loss")
    assert _plan().config.early_stopping == "off"
    assert _plan().reasons["early_stopping"] == "no validation file to watch"
    assert _plan(validation="valid.jsonl", early_stopping=5).config.early_stopping == 5  # kept as given
    assert "early_stopping" not in _plan(validation="valid.jsonl", early_stopping=5).reasons


def test_the_watch_counts_passes_without_a_lower_loss():
    """Hand-worked: min_delta 0.1; 2.0 is a best, 1.95 is not lower by more than 0.1, 1.8 is."""
    watch = EarlyStopping(patience=2, min_delta=0.1)
    assert [watch.observe(step, loss) for step, loss in [(1, 2.0), (2, 1.95), (3, 1.8), (4, 1.75)]] == [
        True,
        False,
        True,
        False,
    ]
    assert (watch.best_step, watch.passes_without_improvement, watch.should_stop) == (3, 1, False)
    assert watch.observe(5, float("nan")) is False and watch.passes_without_improvement == 1  # no pass
    watch.observe(6, 1.9)
    assert watch.should_stop
