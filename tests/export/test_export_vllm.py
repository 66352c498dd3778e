"""`tunery export --format vllm`: the layout vLLM loads, checked with transformers and peft (vLLM
itself is not installed here), the printed `vllm serve` command, and adapters vLLM would refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunery.errors import TuneryError
from tunery.export import (
    lora_module_of,
    portable_config,
    portable_tokenizer_config,
    vllm_adapter_problems,
    vllm_max_lora_rank,
)

IDS = torch.tensor([[1, 20, 30, 40, 50, 2]])
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, chat_data, tmp_path_factory):
    from builders import run_cli

    out = tmp_path_factory.mktemp("runs") / "support-bot"
    result = run_cli(
        "train", "--model", tiny_model_dir, "--data", chat_data[0], "--output", out,
        "n_epochs=1", "batch_size=8", "lora.r=4", "seed=3", "final_eval=false",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def adapted_logits(base_dir: Path, adapter_dir: Path) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)(IDS).logits


def test_max_lora_rank_is_the_smallest_value_vllm_accepts():
    assert [vllm_max_lora_rank(r) for r in (1, 2, 8, 9, 16, 17, 300, 512)] == [1, 8, 8, 16, 16, 32, 320, 512]
    with pytest.raises(TuneryError, match="512"):
        vllm_max_lora_rank(513)


def test_lora_module_names_come_from_peft_tensor_names():
    assert lora_module_of("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") == "q_proj"
    assert lora_module_of("base_model.model.model.embed_tokens.lora_embedding_B") == "embed_tokens"
    assert lora_module_of("base_model.model.lm_head.modules_to_save.default.weight") is None


def test_adapter_problems_name_each_thing_vllm_refuses():
    fine = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "bias": "none", "modules_to_save": None}
    q = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert vllm_adapter_problems(fine, [q]) == []
    problems = vllm_adapter_problems(
        {**fine, "modules_to_save": ["lm_head"], "use_dora": True, "r": 600, "rank_pattern": {"q_proj": 8}},
        [q, "base_model.model.lm_head.lora_B.weight", "base_model.model.lm_head.modules_to_save.default.weight"],
    )
    assert len(problems) == 6
    assert "modules_to_save" in problems[0] and "DoRA" in problems[1] and "rank_pattern" in problems[2]
    assert "600" in problems[3] and "not LoRA matrices" in problems[4] and "lm_head" in problems[5]


def test_portable_config_adds_the_transformers_4_spellings():
    v5 = {"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}, "dtype": "bfloat16", "x": 1}
    assert portable_config(v5) == {**v5, "rope_theta": 100000.0, "torch_dtype": "bfloat16"}
    scaled = {"rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0}}
    assert portable_config(scaled)["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}
    v4 = {"rope_theta": 1e4, "torch_dtype": "float32"}
    assert portable_config(v4) == v4
    tok = portable_tokenizer_config({"tokenizer_class": "TokenizersBackend", "eos_token": "</s>"}, "T")
    assert tok == {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "chat_template": "T"}


def test_adapter_export_is_a_base_and_a_standard_peft_adapter(finished_run, tiny_model_dir, tmp_path, cli):
    from transformers import AutoConfig, AutoTokenizer

    out = tmp_path / "exported"
    result = cli("export", finished_run, "--format", "vllm", "--output", out)
    assert result.returncode == 0, result.stderr
    base, adapter = out / "base", out / "adapter"
    command = f"vllm serve {base} --enable-lora --lora-modules support-bot={adapter} --max-lora-rank 8"
    assert command in result.stdout.splitlines()[-1]

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["modules_to_save"] is None and config["bias"] == "none" and not config["use_dora"]
    assert config["base_model_name_or_path"] == str(base)
    assert set(config["target_modules"]) == set(PROJECTIONS)
    # The exported pair computes exactly what the run's own adapter on its own base computes.
    torch.testing.assert_close(
        adapted_logits(base, adapter), adapted_logits(tiny_model_dir, finished_run / "final"), atol=0, rtol=0
    )
    # What transformers 4.x (vLLM's) reads: rope_theta at the top, the fast tokenizer's old name,
    # the chat template inline; and the weights hard-linked rather than copied.
    base_config = json.loads((base / "config.json").read_text())
    assert base_config["rope_theta"] == base_config["rope_parameters"]["rope_theta"]
    assert base_config["torch_dtype"] == base_config["dtype"]
    assert AutoConfig.from_pretrained(base).rope_parameters == base_config["rope_parameters"]
    tokenizer_config = json.loads((base / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    rendered = AutoTokenizer.from_pretrained(base).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert json.loads((base / "generation_config.json").read_text())["eos_token_id"] == 2  # <|im_end|>
    assert (base / "model.safetensors").stat().st_ino == (tiny_model_dir / "model.safetensors").stat().st_ino


def test_merged_export_is_one_model_directory(finished_run, tiny_model_dir, tmp_path, cli):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    result = cli("export", finished_run, "--format", "vllm", "--merge", "--name", "bot", "--output", out)
    assert result.returncode == 0, result.stderr
    assert f"vllm serve {out} --served-model-name bot" in result.stdout.splitlines()[-1]
    for name in MODEL_FILES:
        assert (out / name).is_file(), name
    assert "chat_template" in json.loads((out / "tokenizer_config.json").read_text())
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out)(IDS).logits
    torch.testing.assert_close(merged, adapted_logits(tiny_model_dir, finished_run / "final"), atol=1e-5, rtol=1e-5)


def test_an_adapter_vllm_cannot_load_is_refused_with_the_reason_and_the_fix(tiny_model_dir, tmp_path, cli):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "odd-adapter"
    lora = LoraConfig(r=4, target_modules=["q_proj", "lm_head"], modules_to_save=["embed_tokens"])
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora).save_pretrained(adapter)

    result = cli("export", adapter, "--format", "vllm", "--output", tmp_path / "out")
    assert result.returncode == 2
    assert "vLLM cannot serve" in result.stderr and "modules_to_save" in result.stderr and "lm_head" in result.stderr
    assert "--merge" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    # The fix it names works: merged, vLLM needs no adapter support at all.
    merged = cli("export", adapter, "--format", "vllm", "--merge", "--output", tmp_path / "out")
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
