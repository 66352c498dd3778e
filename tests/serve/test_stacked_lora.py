"""Mixed-adapter batches through stacked LoRA weights: every row gets exactly its own adapter."""

from __future__ import annotations

import pytest

from tunery.serve.stacked_lora import StackedLora, stackable

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ROWS = ["red", "green", None, "red", "blue"]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    """Three adapters unlike each other: ranks 4/8/2, different layers, rsLoRA, a per-layer rank."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=ALL_LINEAR, init_lora_weights=False), adapter_name="red"
    )
    model.add_adapter(
        "green",
        LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], use_rslora=True, init_lora_weights=False),
    )
    pattern = {"layers.0.mlp.down_proj": 6}
    model.add_adapter("blue", LoraConfig(r=2, target_modules=ALL_LINEAR, rank_pattern=pattern, init_lora_weights=False))
    return model.eval()


def alone(model, name, input_ids):
    """What peft itself computes for these rows with one adapter active (None: the base model)."""
    import torch

    with torch.inference_mode():
        if name is None:
            with model.disable_adapter():
                return model(input_ids).logits
        model.set_adapter(name)
        return model(input_ids).logits


def test_each_row_gets_its_own_adapter(model):
    import torch

    input_ids = torch.randint(3, 200, (len(ROWS), 9), generator=torch.Generator().manual_seed(1))
    expected = torch.cat([alone(model, name, input_ids[i : i + 1]) for i, name in enumerate(ROWS)])
    base = alone(model, None, input_ids)
    expected_green = alone(model, "green", input_ids[:2])
    for i, name in enumerate(ROWS):  # the adapters do change the output, so a mix-up would show
        assert (name is None) == torch.allclose(expected[i], base[i], atol=1e-4)
    stacked = StackedLora()
    with torch.inference_mode(), stacked.rows(model, ROWS):
        mixed = model(input_ids).logits
    torch.testing.assert_close(mixed, expected, atol=2e-5, rtol=1e-4)
    # Every layer's own forward back afterwards, and peft's adapters as they were.
    assert not any("forward" in vars(m) for m in model.modules())
    torch.testing.assert_close(alone(model, "green", input_ids[:2]), expected_green)


def test_generation_equals_peft_adapter_names(model):
    """Greedy decoding of a left-padded mixed batch: token for token what peft's own per-row path gives."""
    import torch

    prompts = [[5, 17, 42, 8], [9, 3, 77, 120, 6, 31], [44, 45], [5, 17, 42, 8], [60, 61, 62]]
    width = max(map(len, prompts))
    input_ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    options = dict(input_ids=input_ids, attention_mask=attention, max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        reference = model.generate(**options, adapter_names=[n or "__base__" for n in ROWS])
        with StackedLora().rows(model, ROWS):
            stacked = model.generate(**options)
        with model.disable_adapter():
            base = model.generate(**options)
    assert stacked.tolist() == reference.tolist()
    assert [reference[i].tolist() == base[i].tolist() for i in range(len(ROWS))] == [n is None for n in ROWS]


def test_stackable_leaves_dora_and_trained_biases_to_peft(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=ALL_LINEAR), adapter_name="plain")
    model.add_adapter("dora", LoraConfig(r=4, target_modules=ALL_LINEAR, use_dora=True))
    model.add_adapter("bias", LoraConfig(r=4, target_modules=["q_proj"], bias="lora_only"))
    model.add_adapter("saved", LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    assert [stackable(model, n) for n in ("plain", "dora", "bias", "saved")] == [True, False, False, False]


def test_cached_stacks_serve_each_adapter_set(model):
    """Sets of adapters come and go between batches; each batch still gets exactly its own."""
    import torch

    input_ids = torch.randint(3, 200, (2, 5), generator=torch.Generator().manual_seed(2))
    stacked = StackedLora(cache_size=1)
    for rows in [["green", "green"], ["blue", "red"], ["red", None], ["green", "green"], [None, None]]:
        if rows == [None, None]:
            stacked.forget()
        expected = torch.cat([alone(model, name, input_ids[i : i + 1]) for i, name in enumerate(rows)])
        with torch.inference_mode(), stacked.rows(model, rows):
            torch.testing.assert_close(model(input_ids).logits, expected, atol=2e-5, rtol=1e-4)
