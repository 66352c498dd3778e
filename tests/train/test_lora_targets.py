"""`lora.target_modules: auto` adapts every linear layer of the decoder, whatever the model names them.

Phi-3 fuses q/k/v into `qkv_proj` and gate/up into `gate_up_proj`; Qwen2 names them like Llama.
As with peft's `all-linear`, every `nn.Linear` of the decoder is adapted and the LM head is not.
"""

from __future__ import annotations

import pytest
import torch
from builders import build_tiny_model, write_chat_dataset

from tunery.train.config import RunConfig
from tunery.train.modeling import build_model
from tunery.train.prepare import prepare

EXPECTED = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_auto_targets_are_every_linear_layer_of_the_decoder(arch, tmp_path):
    model_dir = build_tiny_model(tmp_path / arch, arch=arch)
    data = write_chat_dataset(tmp_path / "train.jsonl", 12)
    prepared = prepare(RunConfig(model=str(model_dir), data=data, output=tmp_path / "run", device="cpu"))
    plan = prepared.make_plan(longest=64)
    assert sorted(plan.config.lora.target_modules) == sorted(EXPECTED[arch])
    assert "every linear layer of the decoder" in plan.reasons["lora.target_modules"]

    model = build_model(plan, model_dir)
    decoder = model.get_base_model().get_decoder()
    linear = [n for n, m in decoder.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n]
    bare = [n for n in linear if not hasattr(decoder.get_submodule(n.rsplit(".", 1)[0]), "lora_A")]
    assert not bare, f"linear layers without an adapter: {bare}"
    assert not hasattr(model.get_base_model().get_output_embeddings(), "lora_A")  # never the LM head
    from tunery.train.modeling import adapted_modules

    count, names = adapted_modules(model)
    assert count == 2 * len(EXPECTED[arch]) and sorted(names) == sorted(EXPECTED[arch])
