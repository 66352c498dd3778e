"""Reference loss: the batched, left-padded, last-K-logits computation equals the plain one."""

from __future__ import annotations

import math

import pytest

from tunery.data.render import render_chat
from tunery.eval.heldout import load_heldout
from tunery.eval.loss import reference_losses
from tunery.inference import Generator


def plain_loss(model, tok, item) -> tuple[float, int]:
    """One unpadded sequence, full logits: Σ over masked i of −log p(token i | tokens < i)."""
    import torch

    rendered = render_chat(item.conversation(), tok)
    ids = torch.tensor([rendered.input_ids])
    with torch.inference_mode():
        logprobs = model(input_ids=ids).logits[0].log_softmax(-1)
    total = -sum(float(logprobs[i - 1, ids[0, i]]) for i, m in enumerate(rendered.loss_mask) if m)
    return total, sum(rendered.loss_mask)


def test_batched_loss_equals_the_plain_per_example_loss(tiny_model_dir, ticket_files):
    generator = Generator(tiny_model_dir)
    items = load_heldout(ticket_files["heldout"])
    lengths = {len(render_chat(i.conversation(), generator.tokenizer).input_ids) for i in items}
    assert len(lengths) > 1  # the batches really are padded
    batched = reference_losses(generator.model, generator.tokenizer, items, batch_size=3)
    for item, got in zip(items, batched, strict=True):
        nll, tokens = plain_loss(generator.model, generator.tokenizer, item)
        assert got.tokens == tokens
        assert got.nll == pytest.approx(nll, rel=1e-4)


def test_only_the_reference_turn_and_its_end_token_count(tiny_model_dir, ticket_files):
    """ "billing" is 4 tokens for the tiny tokenizer (b, ill, in, g) plus <|im_end|>: 5 targets."""
    generator = Generator(tiny_model_dir)
    item = next(i for i in load_heldout(ticket_files["heldout"]) if i.reference == "billing")
    (loss,) = reference_losses(generator.model, generator.tokenizer, [item])
    assert loss.tokens == 5
    # An untrained model is close to uniform over the 400-token vocabulary: about ln 400 ≈ 6.0 nats.
    assert loss.mean == pytest.approx(math.log(400), abs=0.3)


def test_loss_follows_the_active_adapter(tiny_model_dir, ticket_files, tuned_run):
    generator = Generator(tiny_model_dir)
    generator.add_adapter("tuned", tuned_run / "final")
    items = load_heldout(ticket_files["heldout"])
    with generator.use_adapter(None):
        base = reference_losses(generator.model, generator.tokenizer, items)
    with generator.use_adapter("tuned"):
        tuned = reference_losses(generator.model, generator.tokenizer, items)
    assert all(t.mean < 0.1 < b.mean for t, b in zip(tuned, base, strict=True))
