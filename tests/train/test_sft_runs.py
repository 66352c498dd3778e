"""SFT runs through the real CLI on the tiny model: artefacts, pinned losses, failure and resume."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunery.train.config import load_config
from tunery.train.rundir import RunDir

# fp32 named: the default is bf16 on CPUs with native bf16, and the pinned losses below are fp32's.
TINY = ["n_epochs=2", "batch_size=8", "eval_every=3", "save_every=2", "keep_checkpoints=2", "lora.r=4", "seed=3",
        "precision=fp32"]  # fmt: skip


def train_args(model: Path, data: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return ["train", "--model", model, "--data", data[0], "--validation", data[1], "--output", out, *TINY, *extra]


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, chat_data, tmp_path_factory):
    from builders import run_cli

    out = tmp_path_factory.mktemp("runs") / "ref"
    result = run_cli(*train_args(tiny_model_dir, chat_data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_run_directory_is_complete_and_self_describing(finished_run, tiny_model_dir):
    out, result = finished_run
    run = RunDir(out)
    assert run.read_status()["state"] == "succeeded"
    adapter_config = json.loads((out / "final" / "adapter_config.json").read_text())
    assert Path(adapter_config["base_model_name_or_path"]) == tiny_model_dir
    assert (out / "final" / "adapter_model.safetensors").is_file()
    assert (out / "final" / "tokenizer.json").is_file()
    manifest = json.loads((out / "final" / "tunery.json").read_text())
    assert manifest["method"] == "sft" and manifest["adapter"] == "lora"
    assert len(manifest["base_model_sha256"]) == 64 and set(manifest["data"]) == {"train", "validation"}
    assert load_config(out / "config.yaml").unresolved() == []  # every "auto" resolved and saved
    assert "resolved run config" in result.stderr  # and printed at the start

    records = run.read_metrics()
    train = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 13))  # 48 examples / 8 × 2 epochs
    assert any(r["type"] == "valid" for r in records) and records[-1]["type"] == "full_valid"
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    kept = sorted(p.name for p in run.checkpoints.iterdir())
    assert kept == ["step-000010", "step-000012"]  # keep_checkpoints=2
    assert train[-1]["train_loss"] < train[0]["train_loss"]
    # With a validation file, the run ends by grading its own answers on it.
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["n"] == 12 and "exact" in report["metrics"]
    assert (out / "eval" / "report.examples.jsonl").is_file()
    assert f"summary: {out / 'eval' / 'report.json'}" in result.stdout  # and says where it went


def test_final_adapter_loads_with_plain_peft(finished_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, finished_run[0] / "final")
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_first_five_losses_are_pinned(finished_run):
    """A regression in rendering, packing, masking or the loss shows up here first."""
    losses = [r["train_loss"] for r in RunDir(finished_run[0]).read_metrics() if r["type"] == "train"][:5]
    assert losses == pytest.approx(PINNED_LOSSES, abs=1e-4)


# Pinned with torch 2.13.0 on CPU; re-pin deliberately when the math is meant to change.
PINNED_LOSSES = [5.940540, 5.937822, 5.903634, 5.896853, 5.917860]


def _wait_for_step(run: RunDir, step: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.get("step", 0) >= step for r in run.read_metrics()):
            return
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    raise AssertionError(f"training never reached step {step}")


def _spawn(args: list) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tunery", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigkill_at_a_random_step_then_resume_matches_uninterrupted(
    finished_run, tiny_model_dir, chat_data, tmp_path, cli
):
    out = tmp_path / "killed"
    kill_after = random.Random().randint(3, 10)
    proc = _spawn(train_args(tiny_model_dir, chat_data, out))
    _wait_for_step(RunDir(out), kill_after, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert RunDir(out).read_status()["state"] == "running"  # what a crash leaves behind

    result = cli("train", "--resume", out)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = load_file(finished_run[0] / "final" / "adapter_model.safetensors")
    resumed = load_file(out / "final" / "adapter_model.safetensors")
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), f"{name} differs after resume (killed at step {kill_after})"
    ref_losses = [r["train_loss"] for r in RunDir(finished_run[0]).read_metrics() if r["type"] == "train"]
    new_losses = [r["train_loss"] for r in RunDir(out).read_metrics() if r["type"] == "train"]
    assert new_losses == ref_losses  # bitwise, and no duplicated steps in the log


def test_sigterm_saves_a_checkpoint_and_exits_zero(tiny_model_dir, chat_data, tmp_path, cli):
    out = tmp_path / "stopped"
    proc = _spawn(train_args(tiny_model_dir, chat_data, out, "save_every=100"))
    _wait_for_step(RunDir(out), 3, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0
    status = RunDir(out).read_status()
    assert status["state"] == "interrupted"
    assert (out / "checkpoints" / f"step-{status['step']:06d}").is_dir()
    assert f"tunery train --resume {out}" in stdout
    assert cli("train", "--resume", out).returncode == 0
    assert RunDir(out).read_status()["state"] == "succeeded"


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tiny_model_dir, chat_data, tmp_path, cli):
    out = tmp_path / "nan"
    result = cli(
        *train_args(tiny_model_dir, chat_data, out, "learning_rate=1e30", "save_every=1", "max_grad_norm=null")
    )
    assert result.returncode == 1
    assert "not finite" in result.stderr and "Traceback" not in result.stderr
    status = RunDir(out).read_status()
    assert status["state"] == "failed" and status["error"]["code"] == "nan_loss"
    assert f"step {status['step'] + 1}" in status["error"]["message"]
    assert list((out / "checkpoints").iterdir())  # the last good checkpoint is still there


@pytest.mark.parametrize(
    "override, message",
    [
        ("n_epoch=3", "n_epoch: unknown key"),
        ("lr_scheduler=wavy", "lr_scheduler"),
        ("batch_size=0", "batch_size must be a positive integer"),
        ("lora.r=-1", "lora.r must be a positive integer"),
        ("nonsense", "is not key=value"),
    ],
)
def test_bad_settings_are_rejected_by_name(override, message, tiny_model_dir, chat_data, tmp_path, cli):
    result = cli(*train_args(tiny_model_dir, chat_data, tmp_path / "bad", override))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_invalid_data_fails_before_training(tiny_model_dir, tmp_path, cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n' * 12)
    result = cli("train", "--model", tiny_model_dir, "--data", bad, "--output", tmp_path / "run")
    assert result.returncode == 1
    assert "bad.jsonl" in result.stderr and "tunery validate" in result.stderr


def test_export_merge_gives_the_same_logits_as_base_plus_adapter(finished_run, tiny_model_dir, tmp_path, cli):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = tmp_path / "merged"
    result = cli("export", finished_run[0], "--merge", "--output", merged_dir)
    assert result.returncode == 0, result.stderr
    ids = torch.tensor([[1, 20, 30, 40, 50, 2]])
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), finished_run[0] / "final"
        )
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(base(ids).logits, merged(ids).logits, atol=1e-4)  # the adapter did something
    assert (merged_dir / "tokenizer.json").is_file() and (merged_dir / "tunery.json").is_file()


def test_plot_writes_a_png(finished_run, tmp_path, cli):
    out = tmp_path / "curves.png"
    result = cli("plot", finished_run[0], "--output", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_finished_run_is_a_model_reference_so_sft_then_dpo_is_one_command_each(
    finished_run, preference_data, tmp_path, cli
):
    out = tmp_path / "dpo-after-sft"
    result = cli(
        "train", "--method", "dpo", "--model", finished_run[0], "--data", preference_data[0], "--output", out,
        "n_epochs=1", "batch_size=8", "lora.r=4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "final" / "tunery.json").read_text())
    assert manifest["base_model"] == str(finished_run[0]) and "merged-" in manifest["base_model_path"]


@pytest.mark.parametrize("args", [["--method", "lora"], ["method=lora"], ["--method", "qlora"]])
def test_method_lora_is_answered_with_the_adapter_flag(args, tiny_model_dir, chat_data, tmp_path, cli):
    """Users of other tools type `--method lora`: say where LoRA goes instead of argparse's "invalid choice"."""
    result = cli("train", "--model", tiny_model_dir, "--data", chat_data[0], "--output", tmp_path / "run", *args)
    assert result.returncode == 2
    assert "LoRA is an adapter: --adapter lora (the default); --method is sft, dpo or rft" in result.stderr
    assert "invalid choice" not in result.stderr and "Traceback" not in result.stderr
