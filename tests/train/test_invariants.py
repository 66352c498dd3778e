"""Invariants of the training math, on a tiny random model.

* Packing: the per-token loss of packed rows equals the loss of each example on its own.
* Accumulation: one micro-batch of 8 examples gives the same gradients as 8 micro-batches of 1,
  because every micro-batch is normalised by the trained tokens of the whole step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunery.data.formats import ChatExample
from tunery.data.pack import SHARED_PREFIX, pack_rows, split_shared_prefix
from tunery.data.render import ChatTokenizer, render_chat
from tunery.train.attention import use_segment_attention, uses_segment_attention
from tunery.train.config import RunConfig
from tunery.train.losses import select_targets
from tunery.train.modeling import build_model, hidden_states, prefix_cache_batches, step_batches, tensor_batches
from tunery.train.plan import resolve
from tunery.train.sft import step_loss

QUESTIONS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Classify the ticket: my invoice is wrong.", "billing"),
    ("hello", "hello world, thanks"),
    ("Extract the fields as json", '{"name": "Ada", "age": 36}'),
    ("What is 2 + 2?", "4"),
    ("Please answer briefly: the quick brown fox?", "It jumps over the lazy dog."),
    ("system user assistant", "tool"),
    ("0 1 2 3 4 5 6 7 8 9", "= ? ! . , : ;"),
]


def _examples(tok) -> list:
    out = []
    for i, (q, a) in enumerate(QUESTIONS):
        messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if i % 3 == 0:  # multi-turn, so that more than the last turn is trained
            messages += [{"role": "user", "content": "and again?"}, {"role": "assistant", "content": a}]
        out.append(render_chat(ChatExample(messages=messages), tok))
    return out


def _plan(model_dir, **overrides):
    config = RunConfig(model=str(model_dir), data="unused.jsonl", seed=0, **overrides)
    return resolve(config, n_examples=8, longest=128, context_length=512, cuda_available=False, bf16_supported=False)


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    torch.manual_seed(0)
    plan = _plan(tiny_model_dir, adapter="full", micro_batch_tokens=100_000)
    model = build_model(plan, tiny_model_dir).eval()
    return tok, model, plan


def _token_nll(model, batch) -> torch.Tensor:
    hidden = hidden_states(model, batch)
    rows, targets = select_targets(hidden, batch["input_ids"], batch["loss_mask"])
    _, head = model.get_decoder(), model.get_output_embeddings()
    return F.cross_entropy(head(rows).float(), targets, reduction="none")


@torch.no_grad()
def test_packed_per_token_loss_equals_unpacked(setup):
    tok, model, plan = setup
    examples = _examples(tok)
    alone = [
        _token_nll(model, tensor_batches(pack_rows([e], 512, packing=False), plan, tok.pad_id)[0]) for e in examples
    ]

    capacity = sum(len(e.input_ids) for e in examples)
    rows = pack_rows(examples, capacity, packing=True)
    assert len(rows) == 1 and rows[0].examples == len(examples)
    packed = _token_nll(model, tensor_batches(rows, plan, tok.pad_id)[0])
    # Best-fit decreasing places the longest example first (ties by index).
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    expected = torch.cat([alone[i] for i in order])
    assert packed.shape == expected.shape
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_padding_and_several_rows_do_not_change_the_loss(setup):
    tok, model, plan = setup
    examples = _examples(tok)
    alone = sum(_token_nll(model, tensor_batches(pack_rows([e], 512), plan, tok.pad_id)[0]).sum() for e in examples)
    longest = max(len(e.input_ids) for e in examples)
    rows = pack_rows(examples, longest, packing=True)  # several rows of different lengths → padding
    batches = tensor_batches(rows, plan, tok.pad_id)
    assert len(rows) > 1 and any((b["loss_mask"].shape[1] > len(r)) for b in batches for r in rows)
    packed = sum(_token_nll(model, b).sum() for b in batches)
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-6)


def test_packing_without_block_diagonal_attention_would_differ(setup):
    """Guards the test above: one long causal row (one segment, no position reset) must differ."""
    tok, model, plan = setup
    examples = _examples(tok)
    rows = pack_rows(examples, 10_000, packing=True)
    batch = tensor_batches(rows, plan, tok.pad_id)[0]
    width = batch["input_ids"].shape[1]
    leaky = {**batch, "position_ids": torch.arange(width)[None], "segments": torch.zeros(1, width, dtype=torch.long)}
    with torch.no_grad():
        assert not torch.allclose(_token_nll(model, batch), _token_nll(model, leaky), atol=1e-3)


@torch.no_grad()
def test_per_example_attention_equals_the_dense_block_diagonal_mask(setup):
    """CPU training attends one example at a time (tunery/train/attention.py); transformers' SDPA
    with the block-diagonal mask it builds from the position ids must give the same losses."""
    tok, model, plan = setup
    assert uses_segment_attention(model)
    examples = _examples(tok)
    longest = max(len(e.input_ids) for e in examples)
    batches = tensor_batches(pack_rows(examples, longest, packing=True), plan, tok.pad_id)  # padded rows too
    per_example = [_token_nll(model, b) for b in batches]
    model.set_attn_implementation("sdpa")
    try:
        dense = [_token_nll(model, b) for b in batches]
    finally:
        use_segment_attention(model)
    for a, b in zip(per_example, dense, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_one_batch_of_8_equals_8_accumulation_steps_of_1(setup):
    tok, model, plan = setup
    examples = _examples(tok)
    rows = pack_rows(examples, 512, packing=False)

    model.zero_grad(set_to_none=True)
    one = tensor_batches(rows, plan, tok.pad_id)
    assert len(one) == 1
    loss_one, _, n_one = step_loss(model, one, plan, backward=True)
    grads_one = _grads(model)

    model.zero_grad(set_to_none=True)
    eight = [tensor_batches([r], plan, tok.pad_id)[0] for r in rows]
    loss_eight, _, n_eight = step_loss(model, eight, plan, backward=True)
    grads_eight = _grads(model)

    assert n_one == n_eight and len(eight) == 8
    assert loss_one == pytest.approx(loss_eight, rel=1e-6)
    for name in grads_one:
        torch.testing.assert_close(grads_eight[name], grads_one[name], atol=1e-6, rtol=1e-5)

    # The bug this prevents: averaging each micro-batch and then the micro-batches.
    model.zero_grad(set_to_none=True)
    for batch in eight:
        hidden = hidden_states(model, batch)
        rows_h, targets = select_targets(hidden, batch["input_ids"], batch["loss_mask"])
        (F.cross_entropy(model.get_output_embeddings()(rows_h), targets) / len(eight)).backward()
    naive = _grads(model)
    assert any(not torch.allclose(naive[n], grads_one[n], atol=1e-6, rtol=1e-4) for n in grads_one)
    model.zero_grad(set_to_none=True)


def test_shared_prefix_gives_the_same_loss_and_gradients_as_packing(tiny_model_dir):
    """A system prompt shared by every example is computed once; nothing else may change."""
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    system = {"role": "system", "content": "You label support tickets. Answer briefly, with one word, please."}
    examples = [
        render_chat(
            ChatExample(messages=[system, {"role": "user", "content": q}, {"role": "assistant", "content": a}]), tok
        )
        for q, a in QUESTIONS
    ]
    torch.manual_seed(0)
    plan = _plan(tiny_model_dir, micro_batch_tokens=150)  # LoRA, several micro-batches
    model = build_model(plan, tiny_model_dir)
    with torch.no_grad():  # make the adapter non-trivial so its gradients flow everywhere
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)

    def run(layout: str):
        p = plan.__class__(
            **{**plan.__dict__, "config": plan.config.model_copy(update={"share_prefix": layout != "packed"})}
        )
        if layout == "kv-cache":  # the GPU layout, run here on CPU
            prefix, suffixes = split_shared_prefix(examples)
            batches = prefix_cache_batches(prefix, suffixes, p, tok.pad_id)
        else:
            batches = step_batches(examples, p, tok.pad_id)
        model.zero_grad(set_to_none=True)
        loss, accuracy, n = step_loss(model, batches, p, backward=True)
        return batches, loss, n, _grads(model)

    packed_batches, packed_loss, packed_n, packed_grads = run("packed")
    assert not any((b["segments"] == SHARED_PREFIX).any() or "prefix_ids" in b for b in packed_batches)
    for layout in ("cpu", "kv-cache"):
        shared_batches, shared_loss, shared_n, shared_grads = run(layout)
        if layout == "cpu":  # each row holds the prefix once, then the suffixes that fit
            assert len(shared_batches) > 1 and all(
                (b["segments"][:, :16] == SHARED_PREFIX).all() for b in shared_batches
            )
            assert sum(b["input_ids"].numel() for b in shared_batches) < sum(
                b["input_ids"].numel() for b in packed_batches
            )
        else:
            assert all("prefix_ids" in b for b in shared_batches) and len(shared_batches) > 1
            assert shared_batches[0]["prefix_ids"].shape[1] >= 16
        assert shared_n == packed_n
        assert shared_loss == pytest.approx(packed_loss, rel=1e-6)
        assert shared_grads.keys() == packed_grads.keys() and any("layers.0." in n for n in shared_grads)
        for name in packed_grads:
            torch.testing.assert_close(shared_grads[name], packed_grads[name], atol=1e-6, rtol=1e-4)


@torch.no_grad()
def test_sliding_window_attention_is_the_same_packed_unpacked_and_in_the_models_own_forward(tmp_path):
    """Mistral-style layers attend to the last `sliding_window` tokens only; per-example attention
    must too, in packed rows and after a shared prefix, or training computes another function."""
    from builders import build_tiny_model
    from transformers import AutoModelForCausalLM

    model_dir = build_tiny_model(tmp_path / "mistral", arch="mistral", sliding_window=8)
    tok = ChatTokenizer.from_dir(model_dir)
    system = {"role": "system", "content": "You label support tickets. Answer briefly, with one word, please."}
    examples = [
        render_chat(
            ChatExample(messages=[system, {"role": "user", "content": q}, {"role": "assistant", "content": a}]), tok
        )
        for q, a in QUESTIONS[:4]
    ]
    assert min(len(e.input_ids) for e in examples) >= 32  # several windows long
    own = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()  # transformers' own sdpa
    expected = []
    for e in examples:
        ids = torch.tensor([e.input_ids])
        logits = own(ids).logits[0, :-1]
        keep = torch.tensor(e.loss_mask[1:]).bool()
        expected.append(F.cross_entropy(logits[keep], ids[0, 1:][keep], reduction="none"))

    plan = _plan(model_dir, adapter="full", micro_batch_tokens=100_000)
    model = build_model(plan, model_dir).eval()
    assert uses_segment_attention(model)
    alone = [
        _token_nll(model, tensor_batches(pack_rows([e], 512, packing=False), plan, tok.pad_id)[0]) for e in examples
    ]
    for a, b in zip(alone, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    rows = pack_rows(examples, 10_000, packing=True)
    assert len(rows) == 1 and rows[0].examples == len(examples)
    packed = _token_nll(model, tensor_batches(rows, plan, tok.pad_id)[0])
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    torch.testing.assert_close(packed, torch.cat([expected[i] for i in order]), atol=1e-5, rtol=0)

    shared = step_batches(examples, plan, tok.pad_id)  # the prompt prefix (> the window) once per row
    assert all((b["segments"][:, :16] == SHARED_PREFIX).all() for b in shared)
    got = torch.cat([_token_nll(model, b) for b in shared])
    torch.testing.assert_close(got.sort().values, torch.cat(expected).sort().values, atol=1e-5, rtol=0)


def test_lora_head_in_chunks_gives_the_loss_and_gradients_of_the_full_logits(tiny_model_dir):
    """With LoRA the head is frozen, and the step's loss goes through it in chunks of positions
    (losses.frozen_head_nll_sum): the same loss and adapter gradients as cross-entropy on all logits."""
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    torch.manual_seed(0)
    plan = _plan(tiny_model_dir, micro_batch_tokens=150)
    model = build_model(plan, tiny_model_dir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    batches = step_batches(_examples(tok), plan, tok.pad_id)
    n_targets = sum(int(b["loss_mask"][:, 1:].sum()) for b in batches)

    model.zero_grad(set_to_none=True)
    loss, _, _ = step_loss(model, batches, plan, backward=True)
    chunked = _grads(model)

    model.zero_grad(set_to_none=True)
    total = 0.0
    for batch in batches:
        nll = _token_nll(model, batch).sum()
        (nll / n_targets).backward()
        total += nll.item()
    full = _grads(model)
    assert len(batches) > 1 and any("lora_A" in n for n in chunked)
    assert loss == pytest.approx(total / n_targets, rel=1e-6)
    for name in full:
        torch.testing.assert_close(chunked[name], full[name], atol=1e-6, rtol=1e-4)
