"""DPO through the real CLI on the tiny model: the loss starts at log 2 and the preference is learned."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from tunery.train.rundir import RunDir

SETTINGS = [
    "--method",
    "dpo",
    "n_epochs=2",
    "batch_size=8",
    "learning_rate=1e-2",
    "eval_every=2",
    "save_every=2",
    "lora.r=4",
    "dpo.nll_weight=0",  # plain DPO: its loss is exactly log 2 at step 1
    "precision=fp32",  # the default is bf16 on CPUs with native bf16, whose rounding is far above the tolerances
]


def dpo_args(model, data, out, *extra):
    return ["train", "--model", model, "--data", data[0], "--validation", data[1], "--output", out, *SETTINGS, *extra]


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "simpo"])
def test_dpo_variants_learn_the_preference(loss, tiny_model_dir, preference_data, tmp_path, cli):
    out = tmp_path / loss
    result = cli(*dpo_args(tiny_model_dir, preference_data, out, f"dpo.loss={loss}"))
    assert result.returncode == 0, result.stderr[-3000:]
    records = RunDir(out).read_metrics()
    train = [r for r in records if r["type"] == "train"]
    if loss == "sigmoid":  # policy == reference at step 1, so every margin is 0
        assert train[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-5)
        assert train[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert train[-1]["train_loss"] < train[0]["train_loss"]
    final = records[-1]
    assert final["type"] == "full_valid" and final["full_valid_mean_token_accuracy"] > 0.9
    assert {"rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy"} <= set(train[-1])


def test_dpo_reference_cache_gives_the_same_run(tiny_model_dir, preference_data, tmp_path, cli):
    """The cached reference log-probs match the ones computed on the fly.

    Not bit for bit: the cache computes them in other packed batches, so fp32 sums round
    differently (~1e-7), which eight steps at lr 1e-2 grow to ~1e-6 in the adapter weights."""
    cached, live = tmp_path / "cached", tmp_path / "live"
    env = {"TUNERY_HOME": str(tmp_path / "home")}
    assert cli(*dpo_args(tiny_model_dir, preference_data, cached), env=env).returncode == 0
    assert list((tmp_path / "home" / "cache" / "dpo-reference").glob("*.pt"))
    assert cli(*dpo_args(tiny_model_dir, preference_data, live, "dpo.cache_reference=false"), env=env).returncode == 0
    a, b = (load_file(p / "final" / "adapter_model.safetensors") for p in (cached, live))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


def test_dpo_rejects_chat_data(tiny_model_dir, chat_data, tmp_path, cli):
    result = cli(
        "train", "--method", "dpo", "--model", tiny_model_dir, "--data", chat_data[0], "--output", tmp_path / "x"
    )
    assert result.returncode == 1 and "DPO needs preference pairs" in result.stderr


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_dpo_from_an_sft_run_starts_from_it_and_uses_it_as_the_reference(
    adapter, tiny_model_dir, chat_data, preference_data, tmp_path, cli
):
    """`--model RUN_DIR`: no merge by hand. The policy starts from the SFT model (its log-probs are
    not the base's) and the reference is that same model (step-1 loss log 2, margin 0)."""
    sft = tmp_path / "sft"
    trained = cli(
        "train", "--model", tiny_model_dir, "--data", chat_data[0], "--output", sft, "--adapter", adapter,
        "max_steps=3", "batch_size=8", "learning_rate=1e-2", "lora.r=4",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    step1 = {}
    for start in ("base", "sft"):
        out = tmp_path / f"dpo-{start}"
        model = tiny_model_dir if start == "base" else sft
        result = cli(*dpo_args(model, preference_data, out, f"adapter={adapter}", "max_steps=1"))
        assert result.returncode == 0, result.stderr[-3000:]
        step1[start] = next(r for r in RunDir(out).read_metrics() if r["type"] == "train")
    assert step1["sft"]["train_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert step1["sft"]["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert abs(step1["sft"]["logps_chosen"] - step1["base"]["logps_chosen"]) > 0.5
