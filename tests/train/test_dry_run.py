"""`tunery train --dry-run` and `tunery.dry_run`: the plan, memory and time, with nothing written."""

from __future__ import annotations

import pytest
from builders import run_cli

import tunery
from tunery.train.config import load_config
from tunery.train.dry_run import FP32, training_memory
from tunery.train.estimate import model_shape
from tunery.train.plan import resolve


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_model_dir, chat_data, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train", "--model", tiny_model_dir, "--data", chat_data[0], "--output", out, "--dry-run", "batch_size=8",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "18 (6 per epoch)" in result.stderr  # 48 examples / 8, 3 epochs by OpenAI's rule
    assert "peak memory (estimate)" in result.stderr and "time on this CPU (estimate)" in result.stderr
    assert result.stdout.strip() == "dry run: 18 steps planned, nothing trained or written"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_dry_run_refuses_resume_and_bad_data(tiny_model_dir, chat_data, tmp_path):
    result = run_cli("train", "--resume", tmp_path, "--dry-run")
    assert result.returncode == 2 and "--dry-run plans a new run" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "hi"}\n')
    result = run_cli("train", "--model", tiny_model_dir, "--data", bad, "--dry-run")
    assert result.returncode == 1 and "bad.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_api_dry_run_matches_what_training_resolves(tiny_model_dir, chat_data):
    planned = tunery.dry_run(model=str(tiny_model_dir), data=chat_data[0], max_steps=4, lora={"r": 4})
    plan = planned.plan
    assert plan.total_steps == 4 and plan.config.lora.r == 4 and plan.config.unresolved() == []
    assert planned.trained_params == 2 * 4 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 128))  # layers × r × Σ(in+out)
    assert planned.memory.total > planned.memory.weights > 0
    assert set(planned.hours) == {"this CPU"} and planned.hours["this CPU"] > 0


def test_memory_adds_up_by_hand():
    config = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
              "num_hidden_layers": 2, "vocab_size": 100, "tie_word_embeddings": True}  # fmt: skip
    shape = model_shape(10_000, config, lora_rank=4)
    run = load_config(None, {"data": "x.jsonl", "micro_batch_tokens": 256, "gradient_checkpointing": False})
    plan = resolve(run, n_examples=8, longest=64, context_length=512, cuda_available=False, bf16_supported=False)
    memory = training_memory(shape, config, plan, trained_params=1000)
    per_token_layer = 4 * 64 + 64 + 2 * 32 + 4 * 128  # norms/outputs, q, k and v, the SwiGLU MLP
    assert memory.activations == 256 * per_token_layer * 2 * FP32
    assert memory.weights == 10_000 * FP32 and memory.trained_state == 1000 * 16  # grad, 2 moments, fp32 copy
    assert memory.logits == 2 * 256 * 100 * FP32 and memory.reference == 0  # LoRA SFT: the head in chunks
    full = resolve(run.model_copy(update={"adapter": "full"}), n_examples=8, longest=64, context_length=512,
                   cuda_available=False, bf16_supported=False)  # fmt: skip
    assert training_memory(shape, config, full, 1000).logits == 3 * 256 * 100 * FP32
    checkpointed = resolve(run.model_copy(update={"gradient_checkpointing": True}), n_examples=8, longest=64,
                           context_length=512, cuda_available=False, bf16_supported=False)  # fmt: skip
    assert training_memory(shape, config, checkpointed, 1000).activations == 256 * (64 * 2 + per_token_layer) * FP32


@pytest.mark.parametrize("bad", [{"lora": {"rank": 2}}, {"n_epochs": 0}])
def test_api_dry_run_rejects_bad_settings(bad, chat_data):
    with pytest.raises(tunery.errors.TuneryError):
        tunery.dry_run(data=chat_data[0], **bad)
