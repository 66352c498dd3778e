"""Data-parallel SFT and DPO through the real CLI: 2 gloo processes on loopback, tiny model, CPU.

Two processes must train exactly the run one process trains (same global batch per step), up to
float reduction order: each rank sums the loss and gradients of its half of the step in fp32,
and the halves are then added, where one process adds the same terms in another order (its
micro-batches pack the examples differently). So losses agree to ~1e-6 and weights to ~1e-6,
not bitwise. A killed and resumed 2-process run repeats the same reductions in the same order,
so it must match an uninterrupted 2-process run bitwise. DPO likewise, with whole pairs split
over the ranks and the reference log-probs computed by both ranks together and cached once.
"""

from __future__ import annotations

import os
import random
import re
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

# fp32 named: the default is bf16 on CPUs with native bf16, whose rounding is far above these tolerances.
SETTINGS = ["n_epochs=3", "batch_size=8", "eval_every=3", "save_every=2", "lora.r=4", "seed=3", "final_eval=false",
            "precision=fp32"]  # fmt: skip
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# Float tolerance for 1 vs 2 processes (see the module docstring); observed differences are ≤ 1e-6.
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5


def train_args(model: Path, data: tuple[Path, Path], out: Path, *extra: str) -> list:
    return ["train", "--model", model, "--data", data[0], "--validation", data[1], "--output", out, *SETTINGS, *extra]


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "final" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def reference_runs(tiny_model_dir, chat_data, tmp_path_factory):
    """The same run trained by one process and by two."""
    from builders import run_cli

    root = tmp_path_factory.mktemp("distributed")
    one, two = root / "one", root / "two"
    result = run_cli(*train_args(tiny_model_dir, chat_data, one), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(*train_args(tiny_model_dir, chat_data, two, "--nproc", "2"), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    return one, two, result


def assert_same_training(one: Path, two: Path) -> None:
    """Run `two` logged the losses of run `one` and ended at its adapter, within the tolerances."""
    for (kind, step, expected), (_, _, got) in zip(run_losses(one), run_losses(two), strict=True):
        assert got == pytest.approx(expected, abs=LOSS_TOLERANCE, rel=0), f"{kind} loss at step {step}"
    weights_one, weights_two = adapter(one), adapter(two)
    assert weights_one.keys() == weights_two.keys()
    for name in weights_one:
        torch.testing.assert_close(weights_two[name], weights_one[name], atol=WEIGHT_TOLERANCE, rtol=0)
    # Guards the comparison: training moved the weights far beyond the tolerance.
    assert max((w.abs().max().item() for n, w in weights_one.items() if "lora_B" in n)) > 100 * WEIGHT_TOLERANCE


def test_two_processes_train_the_same_run_as_one(reference_runs):
    one, two, result = reference_runs
    assert re.search(r"processes\s+│\s+2\s", result.stderr)  # the resolved settings say it
    assert RunDir(two).read_status()["state"] == "succeeded"

    records_one, records_two = RunDir(one).read_metrics(), RunDir(two).read_metrics()
    # Rank 0 alone writes: one record per step, none duplicated by the second process.
    assert [(r["type"], r["step"]) for r in records_two] == [(r["type"], r["step"]) for r in records_one]
    assert [r["step"] for r in records_two if r["type"] == "train"] == list(range(1, 19))
    # The same examples in every step: the trained tokens, summed over both ranks, are equal.
    tokens = [
        [(r["tokens"], r["loss_tokens"]) for r in records if r["type"] == "train"]
        for records in (records_one, records_two)
    ]
    assert tokens[0] == tokens[1]

    assert_same_training(one, two)

    assert sorted(p.name for p in RunDir(two).checkpoints.iterdir()) == ["step-000016", "step-000018"]


def kill_at_random_step(out: Path, args: list, env: dict | None = None) -> int:
    """Start a 2-process run, SIGKILL its launcher group at a random step after a checkpoint."""
    kill_after = random.Random().randint(3, 9)  # the first checkpoint is at step 2
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tunery", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ONE_THREAD, **(env or {})},
        start_new_session=True,
    )
    wait_for_step(out, kill_after, launcher)
    workers = psutil.Process(launcher.pid).children(recursive=True)
    assert len(workers) == 2
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.communicate()
    # The workers run in sessions of their own; they must die with their launcher, not train on.
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert RunDir(out).read_status()["state"] == "running"  # what a crash leaves behind
    assert not (out / "final").exists()
    return kill_after


@pytest.fixture(scope="module")
def killed_run(tiny_model_dir, chat_data, tmp_path_factory) -> tuple[Path, int]:
    """A 2-process run whose launcher group got SIGKILL at a random step after a checkpoint."""
    out = tmp_path_factory.mktemp("killed") / "run"
    return out, kill_at_random_step(out, train_args(tiny_model_dir, chat_data, out, "--nproc", "2"))


def test_killed_two_process_run_resumes_exactly(reference_runs, killed_run, tmp_path, cli):
    _, two, _ = reference_runs
    out = tmp_path / "run"
    shutil.copytree(killed_run[0], out)
    result = cli("train", "--resume", out, "--nproc", "2", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    # The same reductions in the same order as the uninterrupted run: bitwise, no duplicated steps.
    assert run_losses(out) == run_losses(two), f"killed after step {killed_run[1]}"
    reference, resumed = adapter(two), adapter(out)
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), f"{name} differs (killed after step {killed_run[1]})"


def test_a_two_process_checkpoint_resumes_in_one_process(reference_runs, killed_run, tmp_path, cli):
    one, _, _ = reference_runs
    out = tmp_path / "run"
    shutil.copytree(killed_run[0], out)
    result = cli("train", "--resume", out, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    for (kind, step, expected), (_, _, got) in zip(run_losses(one), run_losses(out), strict=True):
        assert got == pytest.approx(expected, abs=LOSS_TOLERANCE, rel=0), f"{kind} loss at step {step}"
    weights = adapter(out)
    for name, weight in adapter(one).items():
        torch.testing.assert_close(weights[name], weight, atol=WEIGHT_TOLERANCE, rtol=0)


def test_nproc_is_refused_where_it_would_not_be_data_parallel(tiny_model_dir, preference_data, tmp_path, cli):
    args = ["train", "--model", tiny_model_dir, "--data", preference_data[0], "--output", tmp_path / "run"]
    result = cli(*args, "--method", "rft", "rft.grader=grader.json", "--nproc", "2")
    assert result.returncode == 2 and "--nproc trains --method sft or dpo only; rft runs" in result.stderr
    result = cli(*args, "--nproc", "0")
    assert result.returncode == 2 and "--nproc must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_killed_two_process_run_with_lora_dropout_resumes_exactly(tiny_model_dir, chat_data, tmp_path, cli):
    """Dropout draws from each rank's own RNG, which goes its own way (each rank's examples differ
    in length): every rank must get its own state back, not rank 0's."""
    dropout = ("lora.dropout=0.1", "n_epochs=2", "eval_every=6", "--nproc", "2")
    reference = tmp_path / "reference"
    result = cli(*train_args(tiny_model_dir, chat_data, reference, *dropout), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "killed"
    kill_after = kill_at_random_step(out, train_args(tiny_model_dir, chat_data, out, *dropout))
    result = cli("train", "--resume", out, "--nproc", "2", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_losses(out) == run_losses(reference), f"killed after step {kill_after}"
    for name, weight in adapter(reference).items():
        assert torch.equal(adapter(out)[name], weight), f"{name} differs (killed after step {kill_after})"


# --- DPO: whole pairs split over the ranks -------------------------------------------------------

DPO_SETTINGS = [*SETTINGS, "n_epochs=2", "batch_size=4", "learning_rate=1e-2", "eval_every=8"]  # 16 steps


def dpo_args(model: Path, data: tuple[Path, Path], out: Path, *options: str) -> list:
    args = ["train", "--method", "dpo", "--model", model, "--data", data[0], "--validation", data[1]]
    return [*args, "--output", out, *options, *DPO_SETTINGS]


def reference_cache(home: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The cached reference log-probs (training and validation pairs) by file name."""
    return {p.name: torch.load(p, weights_only=True) for p in (home / "cache" / "dpo-reference").iterdir()}


@pytest.fixture(scope="module")
def dpo_runs(tiny_model_dir, preference_data, tmp_path_factory):
    """The same DPO run trained by one process and by two, each filling its own reference cache."""
    from builders import run_cli

    root = tmp_path_factory.mktemp("dpo-distributed")
    for name, extra in (("one", ()), ("two", ("--nproc", "2"))):
        env = {**ONE_THREAD, "TUNERY_HOME": str(root / f"home-{name}")}
        result = run_cli(*dpo_args(tiny_model_dir, preference_data, root / name, *extra), env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_two_processes_train_the_same_dpo_run_as_one(dpo_runs):
    one, two = dpo_runs / "one", dpo_runs / "two"
    assert RunDir(two).read_status()["state"] == "succeeded"
    # Both ranks scored half the pairs for the reference cache; rank 0 wrote the sum once. Each
    # micro-batch is scored as one process scores it, so the values are the same bit for bit.
    cache_one, cache_two = reference_cache(dpo_runs / "home-one"), reference_cache(dpo_runs / "home-two")
    assert cache_two.keys() == cache_one.keys() and len(cache_one) == 2  # no leftover temporary files
    for name, saved in cache_one.items():
        for key, values in saved.items():
            assert torch.equal(cache_two[name][key], values), f"{name}: {key}"

    records_one, records_two = RunDir(one).read_metrics(), RunDir(two).read_metrics()
    assert [(r["type"], r["step"]) for r in records_two] == [(r["type"], r["step"]) for r in records_one]
    assert [r["step"] for r in records_two if r["type"] == "train"] == list(range(1, 17))
    for key in ("train_loss", "reward_margin", "reward_accuracy", "logps_chosen", "grad_norm", "tokens"):
        for a, b in zip(records_one, records_two, strict=True):
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=LOSS_TOLERANCE, rel=LOSS_TOLERANCE), (
                    f"{key}, step {a['step']}"
                )
    assert_same_training(one, two)


def test_killed_two_process_dpo_run_resumes_exactly(dpo_runs, tiny_model_dir, preference_data, tmp_path, cli):
    env = {"TUNERY_HOME": str(dpo_runs / "home-two")}  # the reference cache is there: both ranks load it
    out = tmp_path / "run"
    args = dpo_args(tiny_model_dir, preference_data, out, "--nproc", "2")
    kill_after = kill_at_random_step(out, args, env=env)
    result = cli("train", "--resume", out, "--nproc", "2", env={**ONE_THREAD, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    two = dpo_runs / "two"
    assert run_losses(out) == run_losses(two), f"killed after step {kill_after}"
    for name, weight in adapter(two).items():
        assert torch.equal(adapter(out)[name], weight), f"{name} differs (killed after step {kill_after})"
