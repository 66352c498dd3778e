"""`lora.use_dora` and `lora.use_rslora` reach peft, train, save, resume and merge (tiny model)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

import tunery
from tunery.train.config import load_config
from tunery.train.modeling import build_model
from tunery.train.plan import resolve

IDS = torch.tensor([[1, 20, 30, 40, 50, 2]])


def built(tiny_model_dir, **lora):
    config = load_config(None, {"model": str(tiny_model_dir), "data": "x.jsonl", "lora": {"r": 4, **lora}})
    plan = resolve(config, n_examples=8, longest=32, context_length=512, cuda_available=False, bf16_supported=False)
    return build_model(plan, tiny_model_dir, device="cpu")


def test_rslora_scales_by_alpha_over_sqrt_rank(tiny_model_dir):
    q_plain = built(tiny_model_dir).base_model.model.model.layers[0].self_attn.q_proj
    q_rs = built(tiny_model_dir, use_rslora=True).base_model.model.model.layers[0].self_attn.q_proj
    assert q_plain.scaling["default"] == 8 / 4  # alpha auto = 2r = 8
    assert q_rs.scaling["default"] == pytest.approx(8 / math.sqrt(4))


def test_dora_adds_a_trainable_magnitude_per_output_row(tiny_model_dir):
    model = built(tiny_model_dir, use_dora=True)
    magnitudes = {n: p for n, p in model.named_parameters() if "lora_magnitude_vector" in n}
    q = next(p for n, p in magnitudes.items() if "layers.0.self_attn.q_proj" in n)
    assert q.requires_grad and q.shape == (64,)  # one magnitude per output feature of q_proj
    assert len(magnitudes) == 2 * 7  # 2 layers × 7 projections


def test_a_dora_run_saves_the_magnitudes_and_merges_to_the_same_model(tiny_model_dir, chat_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = tunery.train(
        model=str(tiny_model_dir), data=chat_data[0], output=tmp_path / "dora", n_epochs=1, batch_size=16,
        lora={"r": 4, "use_dora": True, "use_rslora": True}, final_eval=False,
    )  # fmt: skip
    assert run.succeeded
    adapter_config = json.loads((run.final / "adapter_config.json").read_text())
    assert adapter_config["use_dora"] is True and adapter_config["use_rslora"] is True
    with safe_open(str(run.final / "adapter_model.safetensors"), "pt") as fh:
        saved = [k for k in fh.keys() if "lora_magnitude_vector" in k]
    assert len(saved) == 14
    merged = tunery.export(run.path, tmp_path / "merged").path
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run.final)(IDS)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(IDS)
        plain = AutoModelForCausalLM.from_pretrained(merged)(IDS)
    assert not torch.allclose(adapted.logits, base.logits, atol=1e-4)  # training moved the model
    torch.testing.assert_close(plain.logits, adapted.logits, atol=1e-4, rtol=1e-4)
