"""`tunery export --format gguf|ollama`: the GGUF is read back by transformers' own GGUF loader
(independent of tunery's writer: its own tensor-name map and Q/K un-permutation) and compared with
the merged model: logits, tokenizer, chat template and greedy answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from builders import run_cli

import tunery
from tunery.errors import TuneryError
from tunery.export_gguf import check_mappable, modelfile, ollama_template

PROMPTS = ["label: the sky is blue", "label: a red apple", "label: tax invoice wrong", "label: the dog barks"]
# Bounds on the largest logit difference, as a share of the merged model's logit range over the
# same positions: f16 rounding, and the blockwise 8- and 4-bit codes (measured on the untrained tiny
# model: f16 0.012%, q8_0 0.42%, q4_1 5.4%).
BOUNDS = {"f16": 0.001, "q8_0": 0.01, "q4_1": 0.1}


@pytest.fixture(scope="module")
def finished_run(tuned_run):
    return tuned_run  # conftest: a finished tiny LoRA run named labeller


@pytest.fixture(scope="module")
def merged(finished_run, tmp_path_factory):
    return tunery.export(finished_run.path, tmp_path_factory.mktemp("merged") / "m").path


def load_gguf(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def prompt_ids(tokenizer, text: str) -> torch.Tensor:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return torch.tensor([tokenizer(rendered, add_special_tokens=False).input_ids])


def greedy(model, tokenizer, text: str) -> list[int]:
    ids = prompt_ids(tokenizer, text)
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_1"])
def test_transformers_gguf_loader_reads_the_export_with_matching_logits(quant, finished_run, merged, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    exported = tunery.export(finished_run.path, tmp_path / "gguf", format="gguf", quant=quant)
    assert exported.path == tmp_path / "gguf" / f"labeller.{quant}.gguf" and exported.kind == "gguf"
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == [exported.path.name]  # nothing else left
    gguf_model, gguf_tok = load_gguf(exported.path)
    reference = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert gguf_tok.chat_template == tokenizer.chat_template
    with torch.no_grad():
        for text in PROMPTS:
            ids = prompt_ids(tokenizer, text)
            assert torch.equal(prompt_ids(gguf_tok, text), ids)  # same tokens, same template
            want, got = reference(ids).logits, gguf_model(ids).logits
            spread = (want.max() - want.min()).item()
            assert (got - want).abs().max().item() <= BOUNDS[quant] * spread
    answers = [(greedy(reference, tokenizer, t), greedy(gguf_model, gguf_tok, t)) for t in PROMPTS]
    same = sum(a == b for a, b in answers)
    # f16 and q8_0: every greedy answer the same; q4_1: at least half (4-bit codes may flip a near tie).
    assert same == len(PROMPTS) if quant != "q4_1" else same >= len(PROMPTS) // 2


def test_f16_export_is_the_merged_model_rounded_to_f16(finished_run, merged, tmp_path):
    """Exactly f16 rounding of the matrices (norms kept f32), nothing else: names, Q/K permutation
    and tied embeddings all map back."""
    from safetensors.torch import load_file

    path = tunery.export(finished_run.path, tmp_path / "gguf", format="gguf").path
    gguf_model, _ = load_gguf(path)
    weights = load_file(merged / "model.safetensors")
    state = gguf_model.state_dict()
    for name, value in weights.items():
        expected = value if value.ndim == 1 else value.half().float()
        torch.testing.assert_close(state[name], expected, atol=0, rtol=0, msg=name)


def test_ollama_export_writes_a_modelfile_and_prints_the_create_command(finished_run, tmp_path):
    out = tmp_path / "ollama"
    result = run_cli("export", finished_run.path, "--format", "ollama", "--quant", "q8_0", "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"ollama create labeller -f {out / 'Modelfile'}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "labeller.q8_0.gguf"]
    text = (out / "Modelfile").read_text()
    assert text.startswith('FROM ./labeller.q8_0.gguf\nTEMPLATE """{{- range .Messages }}<|im_start|>')
    assert 'PARAMETER stop "<|im_end|>"' in text and "SYSTEM" not in text  # the tiny template has no default


def test_modelfile_carries_a_template_default_system_prompt():
    template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Bob.<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    go, system, stops = ollama_template(template)
    assert system == "You are Bob." and "<|im_end|>" in stops
    assert 'SYSTEM """You are Bob."""' in modelfile("m.gguf", template, ["<|im_end|>"])
    llama3 = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{{ m['content'] }}{% endfor %}"
    assert ollama_template(llama3) is None  # not recognised: no TEMPLATE; Ollama reads the GGUF's own
    text = modelfile("m.gguf", llama3, ["<|eot_id|>"])
    assert "TEMPLATE" not in text and 'PARAMETER stop "<|eot_id|>"' in text


def test_unmappable_models_are_refused_by_name(tiny_model_dir, tmp_path):
    def variant(**changes) -> Path:
        model = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_model_dir, model)
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, **changes}))
        return model

    with pytest.raises(TuneryError, match="cannot write Qwen2ForCausalLM as GGUF: this writer maps LlamaForCausalLM"):
        check_mappable(variant(architectures=["Qwen2ForCausalLM"]))
    with pytest.raises(TuneryError, match="rope scaling 'llama3'"):
        check_mappable(variant(rope_parameters={"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5}))
    with pytest.raises(TuneryError, match="attention_bias=true"):
        check_mappable(variant(attention_bias=True))


def test_cli_refuses_a_quant_without_gguf_and_an_unknown_format(finished_run, tmp_path):
    result = run_cli("export", finished_run.path, "--merge", "--quant", "q8_0", "--output", tmp_path / "x")
    assert result.returncode == 2 and "--quant sets a GGUF's weight type" in result.stderr
    with pytest.raises(TuneryError, match="unknown --quant 'q2_k'"):
        tunery.export(finished_run.path, tmp_path / "y", format="gguf", quant="q2_k")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
