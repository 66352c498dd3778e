"""OpenAI job fields → `tunery train` config keys, checked against the real RunConfig."""

from __future__ import annotations

from pathlib import Path

from tunery.jobs.run_config import build_run_config
from tunery.train.config import RunConfig


def test_supervised_auto_values_pass_through_and_numbers_map_by_name():
    method = {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 0.5},
            "tunery": {"adapter": "lora", "lora": {"r": 8}, "max_steps": 10},
        },
    }
    config = build_run_config(
        method=method, seed=7, model="tiny", data=Path("/d/train"), validation=None, output=Path("/runs/j")
    )
    assert config == {
        "model": "tiny",
        "data": "/d/train",
        "output": "/runs/j",
        "method": "sft",
        "seed": 7,
        "n_epochs": 3,
        "batch_size": "auto",
        "keep_checkpoints": 3,  # as many as the job lists, so none is rotated away unseen
        "learning_rate_multiplier": 0.5,
        "adapter": "lora",
        "lora": {"r": 8},
        "max_steps": 10,
    }
    RunConfig.model_validate(config)


def test_dpo_beta_goes_into_the_dpo_block_and_auto_leaves_defaults():
    method = {
        "type": "dpo",
        "dpo": {
            "hyperparameters": {"n_epochs": "auto", "batch_size": 4, "learning_rate_multiplier": "auto", "beta": 0.25},
            "tunery": {"dpo": {"loss": "ipo"}},
        },
    }
    config = build_run_config(
        method=method, seed=1, model="m", data=Path("/p"), validation=Path("/v"), output=Path("/o")
    )
    assert config["method"] == "dpo" and config["dpo"] == {"beta": 0.25, "loss": "ipo"}
    assert "learning_rate_multiplier" not in config and config["validation"] == "/v"
    assert RunConfig.model_validate(config).dpo.beta == 0.25
