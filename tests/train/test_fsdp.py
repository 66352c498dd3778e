"""FSDP2 full fine-tuning through the real CLI: 2 gloo processes on loopback, tiny model, CPU.

With `distributed.strategy=fsdp` each process holds half of every weight, gradient and AdamW
moment. It must still train the run one process trains with the same global batch: the
gradients are reduce-scattered as a sum of the ranks' halves of the step, so they differ from a
one-process run only in float summation order (~1e-7 on this model); after 12 AdamW steps the
losses agree to ~1e-6 and the weights to ~1e-6, hence the 1e-5 tolerances. A killed and resumed
FSDP run repeats the same collectives in the same order from a checkpoint that holds the exact
fp32 state, so it must match the uninterrupted FSDP run bitwise.

The tiny model ties its LM head to its embeddings, as SmolLM2 does; the checks on the saved
files cover that the tie survives sharding.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
from builders import run_losses, wait_for_step
from safetensors.torch import load_file

from tunery.train.rundir import RunDir

SETTINGS = [
    "--adapter",
    "full",
    "n_epochs=2",
    "batch_size=8",
    "learning_rate=1e-3",  # large enough that the weights move far beyond the tolerance
    "eval_every=3",
    "save_every=2",
    "seed=3",
    "final_eval=false",
    "precision=fp32",  # the default is bf16 on CPUs with native bf16, whose rounding is far above the tolerance
]
FSDP = ["distributed.strategy=fsdp", "--nproc", "2"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5


def train_args(model: Path, data: tuple[Path, Path], out: Path, *extra: str) -> list:
    return ["train", "--model", model, "--data", data[0], "--validation", data[1], "--output", out, *SETTINGS, *extra]


def weights(run_dir: Path, where: str = "final") -> dict[str, torch.Tensor]:
    return load_file(run_dir / where / "model.safetensors")


@pytest.fixture(scope="module")
def fsdp_runs(tiny_model_dir, chat_data, tmp_path_factory):
    """The same full fine-tune trained by one process and by two with FSDP."""
    from builders import run_cli

    root = tmp_path_factory.mktemp("fsdp")
    one, two = root / "one", root / "two"
    result = run_cli(*train_args(tiny_model_dir, chat_data, one), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(*train_args(tiny_model_dir, chat_data, two, *FSDP), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    return one, two


def test_fsdp_trains_the_same_full_fine_tune_as_one_process(fsdp_runs, tiny_model_dir):
    one, two = fsdp_runs
    assert RunDir(two).read_status()["state"] == "succeeded"
    records_one, records_two = RunDir(one).read_metrics(), RunDir(two).read_metrics()
    assert [(r["type"], r["step"]) for r in records_two] == [(r["type"], r["step"]) for r in records_one]
    for (kind, step, expected), (_, _, got) in zip(run_losses(one), run_losses(two), strict=True):
        assert got == pytest.approx(expected, abs=LOSS_TOLERANCE, rel=0), f"{kind} loss at step {step}"
    # The clipped norm is the global one, not one rank's shard's.
    for a, b in zip(records_one, records_two, strict=True):
        if a["type"] == "train":
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], abs=1e-5, rel=1e-5), f"grad norm at {a['step']}"

    base = load_file(tiny_model_dir / "model.safetensors")
    for where in ("final", "checkpoints/step-000012"):
        expected, got = weights(one, where), weights(two, where)
        # The same files as a one-process run: whole tensors, the tied LM head saved once.
        assert got.keys() == expected.keys() == base.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], atol=WEIGHT_TOLERANCE, rtol=0)
    moved = max((expected[n] - base[n]).abs().max().item() for n in base)
    assert moved > 100 * WEIGHT_TOLERANCE  # guards the comparison
    # The optimizer state is a one-process run's too: one entry per parameter, whole moments.
    state_one = torch.load(one / "checkpoints/step-000012/trainer_state.pt", weights_only=False)["optimizer"]
    state_two = torch.load(two / "checkpoints/step-000012/trainer_state.pt", weights_only=False)["optimizer"]
    assert state_two["state"].keys() == state_one["state"].keys()
    for i, moments in state_one["state"].items():
        torch.testing.assert_close(state_two["state"][i]["exp_avg"], moments["exp_avg"], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def killed_fsdp_run(tiny_model_dir, chat_data, tmp_path_factory) -> tuple[Path, int]:
    """An FSDP run whose launcher's process group got SIGKILL at a random step after a checkpoint."""
    out = tmp_path_factory.mktemp("killed-fsdp") / "run"
    kill_after = random.Random().randint(3, 9)  # the first checkpoint is at step 2
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tunery", *map(str, train_args(tiny_model_dir, chat_data, out, *FSDP))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ONE_THREAD},
        start_new_session=True,
    )
    wait_for_step(out, kill_after, launcher)
    workers = psutil.Process(launcher.pid).children(recursive=True)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.communicate()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert not (out / "final").exists()
    return out, kill_after


def test_killed_fsdp_run_resumes_exactly(fsdp_runs, killed_fsdp_run, tmp_path, cli):
    _, two = fsdp_runs
    out = tmp_path / "run"
    shutil.copytree(killed_fsdp_run[0], out)
    result = cli("train", "--resume", out, "--nproc", "2", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_losses(out) == run_losses(two), f"killed after step {killed_fsdp_run[1]}"
    reference, resumed = weights(two), weights(out)
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), f"{name} differs (killed after step {killed_fsdp_run[1]})"


def test_a_rank_without_examples_still_joins_every_collective(tiny_model_dir, chat_data, tmp_path):
    """batch_size=1 leaves rank 1 no example in any step: it runs idle micro-batches, adding nothing."""
    from builders import run_cli

    small = ["batch_size=1", "max_steps=3", "eval_every=2"]
    one, two = tmp_path / "one", tmp_path / "two"
    result = run_cli(*train_args(tiny_model_dir, chat_data, one, *small), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(*train_args(tiny_model_dir, chat_data, two, *small, *FSDP), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    for (kind, step, expected), (_, _, got) in zip(run_losses(one), run_losses(two), strict=True):
        assert got == pytest.approx(expected, abs=LOSS_TOLERANCE, rel=0), f"{kind} loss at step {step}"
    expected, got = weights(one), weights(two)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=WEIGHT_TOLERANCE, rtol=0)


def test_fsdp_is_refused_where_it_cannot_shard(tiny_model_dir, chat_data, preference_data, tmp_path, cli):
    args = ["train", "--model", tiny_model_dir, "--data", preference_data[0], "--output", tmp_path / "run"]
    result = cli(*args, "--method", "dpo", "--adapter", "full", "distributed.strategy=fsdp", "--nproc", "2")
    assert result.returncode == 2 and "distributed.strategy=fsdp shards --method sft only; method=dpo" in result.stderr
    args = ["train", "--model", tiny_model_dir, "--data", chat_data[0], "--output", tmp_path / "run"]
    result = cli(*args, "distributed.strategy=fsdp", "--nproc", "2")  # the default adapter is LoRA
    assert result.returncode == 2 and "fsdp shards full fine-tuning only" in result.stderr
    result = cli(*args, "--adapter", "full", "distributed.strategy=fsdp")
    assert result.returncode == 2 and "add --nproc 2" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
