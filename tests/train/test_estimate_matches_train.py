"""`tunery estimate` prints the settings `tunery train` resolves: both go through plan.resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("task, method", [("support-tickets", "sft"), ("signoff-prefs", "dpo")])
def test_estimate_prints_what_train_resolves_on_the_bundled_tasks(task, method, cli, tiny_model_dir, tmp_path):
    data = EXAMPLES / task / "train.jsonl"
    estimated = cli("estimate", data, "--model", tiny_model_dir, "--method", method, "--json")
    assert estimated.returncode == 0, estimated.stderr
    e = json.loads(estimated.stdout)
    printed = cli("estimate", data, "--model", tiny_model_dir, "--method", method)
    assert printed.returncode == 0, printed.stderr

    run = tmp_path / "run"
    trained = cli("train", "--model", tiny_model_dir, "--data", data, "--method", method, "--output", run,
                  "max_steps=1", "final_eval=false")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    resolved = yaml.safe_load((run / "config.yaml").read_text())

    assert (e["method"], e["adapter"]) == (resolved["method"], resolved["adapter"])
    assert e["epochs"] == resolved["n_epochs"]
    assert e["batch_size"] == resolved["batch_size"]
    assert e["max_seq_len"] == resolved["max_seq_len"]
    assert e["lora_rank"] == resolved["lora"]["r"]
    assert e["micro_batch_tokens"] == resolved["micro_batch_tokens"]
    header = " ".join(printed.stdout.split())  # rich may wrap the line
    for text in (f"{e['epochs']} epochs", f"batch_size {e['batch_size']}", f"max_seq_len {e['max_seq_len']}"):
        assert text in header
