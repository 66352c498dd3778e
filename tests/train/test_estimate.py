"""`tunery estimate`: the FLOPs math worked by hand, the auto rules, and the real CLI on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunery.train.estimate import (
    EpochTokens,
    ModelShape,
    forward_flops,
    hours,
    model_shape,
    months_since,
    training_flops,
)
from tunery.train.methods import METHODS
from tunery.train.plan import auto_epochs, auto_max_seq_len

TICKETS = [
    ("My invoice shows the wrong amount.", "billing"),
    ("The app crashes when I open settings.", "bug"),
    ("How do I export my data?", "how-to"),
    ("I was charged twice this month.", "billing"),
    ("Please add a dark mode.", "feature"),
    ("Login fails with error 500.", "bug"),
    ("Can I change my email?", "how-to"),
    ("Refund my last payment please.", "billing"),
    ("Add keyboard shortcuts.", "feature"),
    ("Search returns nothing.", "bug"),
    ("Where is my API key?", "how-to"),
    ("Support Slack, please.", "feature"),
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def chat_file(tmp_path) -> Path:
    return write_jsonl(
        tmp_path / "tickets.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Label the ticket."},
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": label},
                ]
            }
            for text, label in TICKETS
        ],
    )


@pytest.fixture
def preference_file(tmp_path) -> Path:
    return write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {
                "input": {"messages": [{"role": "user", "content": text}]},
                "preferred_output": [{"role": "assistant", "content": label}],
                "non_preferred_output": [{"role": "assistant", "content": "I am not sure."}],
            }
            for text, label in TICKETS[:10]
        ],
    )


# --- the math, by hand ---------------------------------------------------------------------

# A made-up model: 100 body weights, a 10-weight head, a 2-weight adapter, 2 layers of width 4.
SHAPE = ModelShape(
    parameters=120, body_params=100, head_params=10, adapter_params=2, layers=2, attention_width=4, context_length=64
)
# One epoch: 50 tokens computed, 5 of them trained, two sequences of 3 and 4 tokens (Σ L² = 25).
EPOCH = EpochTokens(computed=50, trained=5, sum_squared_lengths=25)
# Weight multiply-adds: 100·50 + 10·5 = 5050. Attention multiply-adds: 2 layers · 4 · 25 = 200.


def test_full_fine_tuning_is_six_flops_per_weight_per_token():
    # per epoch 6·5050 + 6·200 = 31,500; two epochs
    flops = training_flops(METHODS["sft"], "full", SHAPE, EPOCH, epochs=2)
    assert flops.policy == 63_000
    assert flops.reference == 0


def test_lora_is_four_flops_per_frozen_weight_plus_six_per_adapter_weight():
    # per epoch 4·5050 + 6·(2·50) + 6·200 = 20,200 + 600 + 1,200 = 22,000; two epochs
    assert training_flops(METHODS["sft"], "lora", SHAPE, EPOCH, epochs=2).total == 44_000


def test_dpo_adds_one_reference_forward_or_one_per_epoch_when_not_cached():
    # policy as LoRA (44,000); the reference forward is 2·(5050 + 200) = 10,500 per pass
    assert forward_flops(SHAPE, EPOCH) == 10_500
    cached = training_flops(METHODS["dpo"], "lora", SHAPE, EPOCH, epochs=2)
    assert (cached.policy, cached.reference) == (44_000, 10_500)
    assert training_flops(METHODS["dpo"], "lora", SHAPE, EPOCH, epochs=2, reference_cached=False).reference == 21_000


def test_hours_at_a_stated_utilisation():
    # 3.6e15 FLOPs at 50 % of 1e12 FLOP/s = 7,200 s = 2 h
    assert hours(3.6e15, 1e12, 0.5) == pytest.approx(2.0)


def test_model_shape_splits_body_head_and_sizes_the_adapter():
    # hidden 8, vocab 10, 2 layers, 2 heads of 4, 1 KV head, MLP 16, tied embeddings.
    # Per layer: q 64 + k 32 + v 32 + o 64 + gate/up/down 3·128 + two norms 16 = 592.
    # Parameters: 2·592 + final norm 8 + embedding 80 = 1,272; the head reuses the embedding.
    config = dict(
        hidden_size=8,
        vocab_size=10,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=16,
        tie_word_embeddings=True,
    )
    shape = model_shape(1272, config, lora_rank=2)
    assert (shape.body_params, shape.head_params, shape.attention_width) == (1192, 80, 8)
    # rank 2 · Σ(in + out) = 2 · (16 + 12 + 12 + 16 + 24 + 24 + 24) = 256 per layer, 2 layers
    assert shape.adapter_params == 512
    untied = model_shape(1272 + 80, {**config, "tie_word_embeddings": False}, lora_rank=2)
    assert (untied.body_params, untied.head_params) == (1192, 80)


def test_model_shape_matches_the_real_tiny_model_and_peft(tiny_model_dir):
    """Our count of LoRA weights equals what peft actually creates on the same model."""
    import torch  # noqa: F401  (the test may use torch; the command may not)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunery.models import describe_model
    from tunery.train.plan import LORA_TARGETS

    config = json.loads((tiny_model_dir / "config.json").read_text())
    shape = model_shape(describe_model("tiny", tiny_model_dir).parameters, config, lora_rank=4)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    embedding = model.get_input_embeddings().weight.numel()
    assert shape.body_params + embedding == sum(p.numel() for p in model.parameters())
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=list(LORA_TARGETS)))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shape.adapter_params == trainable


def test_shared_prefix_layout_by_hand():
    from tunery.train.estimate import shared_prefix_layout

    # A 20-token prefix; steps of 2 sequences; rows of 64 tokens leave 44 for suffixes.
    # Step 1: suffixes 10 and 5, one row: 15 + 20 computed; attention 20² + (2·20·10 + 10²) + (2·20·5 + 5²)
    # = 400 + 500 + 225 = 1125. Step 2: suffixes 20 and 2, one row: 22 + 20; 400 + 1200 + 84 = 1684.
    assert shared_prefix_layout([30, 25, 40, 22], prefix=20, per_step=2, row_capacity=64) == (77, 2809)
    # Rows of 40 leave 20: step 2's suffixes (20, 2) need two rows, so its prefix is computed twice.
    assert shared_prefix_layout([30, 25, 40, 22], prefix=20, per_step=2, row_capacity=40) == (35 + 62, 1125 + 2084)


@pytest.mark.parametrize(
    "n, epochs",
    [(1, 25), (5, 20), (10, 10), (12, 8), (33, 3), (34, 3), (100, 3), (8333, 3), (8334, 2), (30_000, 1)],
)
def test_auto_epochs_follows_openai(n, epochs):
    # 3 epochs, unless examples × 3 falls below 100 (then 100 // n, at most 25)
    # or above 25,000 (then 25,000 // n, at least 1)
    assert auto_epochs(n) == epochs


def test_months_since_the_prices_were_checked():
    from datetime import date

    assert months_since("2025-08", today=date(2025, 8, 31)) == 0
    assert months_since("2025-08", today=date(2026, 11, 1)) == 15


@pytest.mark.parametrize(
    "longest, context, expected", [(1, 512, 64), (64, 512, 64), (65, 512, 128), (600, 512, 512), (600, None, 640)]
)
def test_auto_max_seq_len_rounds_up_to_64_within_the_context(longest, context, expected):
    assert auto_max_seq_len(longest, context) == expected


# --- the real CLI ---------------------------------------------------------------------------


def run_json(cli, *args) -> dict:
    result = cli("estimate", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_reports_tokens_flops_time_and_cost(cli, chat_file, tiny_model_dir):
    from tunery.data.formats import load_examples
    from tunery.data.pack import padding_fraction, split_shared_prefix
    from tunery.data.render import ChatTokenizer, render_chat

    out = run_json(cli, chat_file, "--model", tiny_model_dir)

    tok = ChatTokenizer.from_dir(tiny_model_dir)
    rendered = [render_chat(e, tok) for e in load_examples(chat_file)]
    assert (out["format"], out["method"], out["examples"], out["sequences"]) == ("chat", "sft", 12, 12)
    assert (out["epochs"], out["epochs_rule"]) == (8, "auto")  # 100 // 12
    assert out["tokens_per_epoch"] == sum(len(r.input_ids) for r in rendered)
    assert out["trained_tokens_per_epoch"] == sum(r.trained_tokens for r in rendered)
    assert out["trained_tokens_total"] == 8 * out["trained_tokens_per_epoch"]
    assert out["max_seq_len"] == auto_max_seq_len(max(len(r.input_ids) for r in rendered), 512)
    assert out["truncated_sequences"] == 0
    assert 0 <= out["padding"]["packed"] <= out["padding"]["unpacked"] < 1
    # "<|im_start|>system\nLabel the ticket.<|im_end|>\n<|im_start|>user\n" is 16 tokens, just worth sharing
    prefix, _ = split_shared_prefix(rendered)
    assert out["layout"]["kind"] == "shared prefix"
    assert out["layout"]["shared_prefix_tokens"] == len(prefix) == 16
    assert out["computed_tokens_total"] / out["epochs"] < out["layout"]["packed_computed_per_epoch"]
    lengths = [len(r.input_ids) for r in rendered]
    for packing, key in ((False, "unpacked"), (True, "packed")):
        assert out["padding"][key] == pytest.approx(padding_fraction(lengths, out["max_seq_len"], 8, packing=packing))

    hardware = {h["name"]: h for h in out["hardware"]}
    assert set(hardware) == {"this CPU", "A100", "H100", "H200"}
    assert out["cpu_gflops_measured"] > 0
    h100 = hardware["H100"]
    assert h100["hours"] == pytest.approx(out["flops"]["total"] / (989e12 * 0.4) / 3600)
    assert h100["usd"] == pytest.approx(h100["hours"] * 2.0)
    assert hardware["this CPU"]["usd"] is None

    from tunery.data.prices import HOSTED_PRICES, LAST_CHECKED

    assert out["hosted"]["last_checked"] == LAST_CHECKED
    assert out["hosted"]["months_since_checked"] == months_since(LAST_CHECKED)
    mini = next(p for p in out["hosted"]["prices"] if p["model"] == "gpt-4o-mini")
    assert mini["billed_tokens"] == out["tokens_total"]
    assert mini["usd"] == pytest.approx(out["tokens_total"] / 1e6 * 3.00)
    assert len(out["hosted"]["prices"]) == len(HOSTED_PRICES)


def test_cli_counts_a_shared_system_prompt_once_per_row(cli, tmp_path, tiny_model_dir):
    """As the trainer does (share_prefix): the prompt all examples start with is computed once per row."""
    from tunery.data.formats import load_examples
    from tunery.data.pack import split_shared_prefix
    from tunery.data.render import ChatTokenizer, render_chat
    from tunery.train.estimate import shared_prefix_layout
    from tunery.train.plan import auto_batch_size

    system = "Label the ticket as billing, bug, how-to or feature. " * 4
    rows = [
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": t},
                {"role": "assistant", "content": a},
            ]
        }
        for t, a in TICKETS
    ]
    path = write_jsonl(tmp_path / "shared.jsonl", rows)
    out = run_json(cli, path, "--model", tiny_model_dir)

    tok = ChatTokenizer.from_dir(tiny_model_dir)
    rendered = [render_chat(e, tok) for e in load_examples(path)]
    prefix, _ = split_shared_prefix(rendered)
    assert len(prefix) > 40  # the system prompt and the user header
    assert out["layout"]["kind"] == "shared prefix"
    assert out["layout"]["shared_prefix_tokens"] == len(prefix)
    lengths = [len(r.input_ids) for r in rendered]
    computed, _ = shared_prefix_layout(lengths, len(prefix), auto_batch_size(12), max(out["max_seq_len"], 1024))
    assert out["computed_tokens_total"] == computed * out["epochs"]
    assert computed < out["tokens_per_epoch"] <= out["layout"]["packed_computed_per_epoch"]
    assert any("prompt every example starts with" in a for a in out["assumptions"])


def test_cli_options_change_the_estimate(cli, chat_file, tiny_model_dir):
    lora = run_json(cli, chat_file, "--model", tiny_model_dir, "--epochs", "2")
    options = "--epochs 2 --method full --max-seq-len 16 --gpu-hour-price 3.5 --utilisation 0.25".split()
    full = run_json(cli, chat_file, "--model", tiny_model_dir, *options)
    assert (lora["epochs"], lora["epochs_rule"]) == (2, "fixed")
    assert full["flops"]["weights_flops_per_param_token"] == 6 and full["flops"]["adapter_params"] == 0
    assert full["max_seq_len"] == 16 and full["truncated_sequences"] > 0
    # No answer token survives 16 tokens of system prompt and question: training drops them.
    assert full["untrained_sequences"] == full["sequences"] and lora["untrained_sequences"] == 0
    table = cli("estimate", chat_file, "--model", tiny_model_dir, "--max-seq-len", "16")
    assert "no_trained_token" in table.stdout and "dropped" in table.stdout
    assert full["tokens_per_epoch"] < lora["tokens_per_epoch"]
    a100 = next(h for h in full["hardware"] if h["name"] == "A100")
    assert a100["utilisation"] == 0.25
    assert a100["usd"] == pytest.approx(a100["hours"] * 3.5)


def test_cli_preference_data_costs_two_sequences_per_pair(cli, preference_file, tiny_model_dir):
    out = run_json(cli, preference_file, "--model", tiny_model_dir)
    assert (out["format"], out["method"], out["examples"], out["sequences"]) == ("preference", "dpo", 10, 20)
    assert 0 < out["flops"]["reference"] < out["flops"]["policy"]


def test_cli_table_output(cli, chat_file, tiny_model_dir):
    result = cli("estimate", chat_file, "--model", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    for text in ("Tokens", "trained", "FLOPs", "H200", "gpt-4o-mini", "last checked", "without packing"):
        assert text in result.stdout


def test_estimate_never_imports_torch(chat_file, tiny_model_dir):
    code = (
        "import sys; from tunery.cli import main; "
        f"rc = main(['estimate', {str(chat_file)!r}, '--model', {str(tiny_model_dir)!r}, '--json']); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules); "
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc or (1 if heavy else 0))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr


def test_invalid_data_exits_1_and_points_to_validate(cli, tmp_path, tiny_model_dir, chat_file):
    bad = tmp_path / "bad.jsonl"
    lines = chat_file.read_text().splitlines()
    lines[3] = '{"messages": [{"role": "user", "content": "no answer"}]}'
    lines[5] = '{"messages": ['
    bad.write_text("\n".join(lines) + "\n")
    result = cli("estimate", bad, "--model", tiny_model_dir)
    assert result.returncode == 1
    assert "2 validation errors" in result.stderr
    assert f"tunery validate {bad}" in result.stderr
    assert "line 4" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.jsonl"], "missing.jsonl"),
        (["{chat}", "--epochs", "0"], "positive integer"),
        (["{chat}", "--utilisation", "1.5"], "--utilisation"),
        (["{chat}", "--method", "dpo"], "preference"),
        (["{chat}", "--max-seq-len", "100000"], "context"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(cli, chat_file, tiny_model_dir, tmp_path, args, message):
    args = [str(chat_file) if a == "{chat}" else str(tmp_path / a) if a.endswith(".jsonl") else a for a in args]
    result = cli("estimate", *args, "--model", tiny_model_dir)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_model_without_safetensors_is_refused_by_name(cli, chat_file, tmp_path, tiny_model_dir):
    import shutil

    model = tmp_path / "bin-only"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").rename(model / "pytorch_model.bin")  # what older checkpoints hold
    result = cli("estimate", chat_file, "--model", model)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no *.safetensors weights" in result.stderr and str(model) in result.stderr
