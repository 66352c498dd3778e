"""The loss functions, each checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tunery.train.losses import (
    chosen_nll,
    dpo_sigmoid_loss,
    frozen_head_nll_sum,
    ipo_loss,
    select_targets,
    sequence_logps,
    simpo_loss,
    token_nll_sum,
)


def test_select_targets_keeps_the_state_before_each_trained_token():
    """ids = [5, 6, 7, 8], mask = [0, 0, 1, 1]: tokens 7 and 8 are trained, predicted from the
    states at positions 1 and 2. So rows = hidden[1], hidden[2] and targets = [7, 8]."""
    hidden = torch.arange(4.0).reshape(1, 4, 1)
    rows, targets = select_targets(hidden, torch.tensor([[5, 6, 7, 8]]), torch.tensor([[0, 0, 1, 1]]))
    assert rows.flatten().tolist() == [1.0, 2.0] and targets.tolist() == [7, 8]


def test_token_nll_sum_by_hand():
    """Row 1: logits (0, 0, 0), target 0 → −log(1/3) = ln 3 = 1.098612; argmax 0 is correct.
    Row 2: logits (2, 0, 0), target 1 → −log(e⁰ / (e² + 2)) = ln(9.389056) = 2.239545; argmax 0 is wrong.
    Sum = 3.338157, correct = 1."""
    nll, correct = token_nll_sum(torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), torch.tensor([0, 1]))
    assert nll.item() == pytest.approx(3.338157, abs=1e-6)
    assert correct.item() == 1


def test_sequence_logps_by_hand():
    """Uniform logits over 4 tokens: every log-prob is −ln 4 = −1.386294.
    Segments [0, 0, 1] → sums (−2.772589, −1.386294), counts (2, 1)."""
    sums, counts = sequence_logps(torch.zeros(3, 4), torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1]), 2)
    assert sums.tolist() == pytest.approx([-2.772589, -1.386294], abs=1e-6)
    assert counts.tolist() == [2.0, 1.0]


def test_dpo_sigmoid_by_hand():
    """π_c = −1, π_r = −2, ref_c = ref_r = −1.5, β = 0.1.
    Chosen reward 0.1 × (−1 + 1.5) = 0.05; rejected 0.1 × (−2 + 1.5) = −0.05; margin 0.1.
    Loss = −log σ(0.1) = log(1 + e^−0.1) = log(1.904837) = 0.644397."""
    loss, chosen, rejected = dpo_sigmoid_loss(
        torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), beta=0.1
    )
    assert loss.item() == pytest.approx(0.644397, abs=1e-6)
    assert (chosen.item(), rejected.item()) == pytest.approx((0.05, -0.05))


def test_dpo_sigmoid_starts_at_log_2_when_policy_equals_reference():
    """Identical policy and reference: every margin is 0 and the loss is log 2 = 0.693147."""
    x = torch.tensor([-3.0, -7.0])
    loss, _, _ = dpo_sigmoid_loss(x, x - 1, x, x - 1, beta=0.5)
    assert loss.tolist() == pytest.approx([math.log(2)] * 2)


def test_ipo_by_hand():
    """Per-token averages π_c = −1, π_r = −2, ref_c = ref_r = −1.5, β = 0.25.
    h = (−1 + 1.5) − (−2 + 1.5) = 1; target 1/(2β) = 2; loss = (1 − 2)² = 1.
    Rewards β × log-ratio: 0.125 and −0.125."""
    loss, chosen, rejected = ipo_loss(
        torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), beta=0.25
    )
    assert loss.item() == pytest.approx(1.0)
    assert (chosen.item(), rejected.item()) == pytest.approx((0.125, -0.125))


def test_simpo_by_hand():
    """Average log-probs −0.5 (chosen) and −1.0 (rejected), β = 2, γ = 0.5.
    Rewards −1 and −2; logit = −1 − (−2) − 0.5 = 0.5; loss = log(1 + e^−0.5) = log(1.606531) = 0.474077."""
    loss, chosen, rejected = simpo_loss(torch.tensor([-0.5]), torch.tensor([-1.0]), beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)
    assert (chosen.item(), rejected.item()) == pytest.approx((-1.0, -2.0))


def test_rpo_chosen_nll_by_hand():
    """Chosen answers with summed log-probs −6 (3 tokens) and −2 (4 tokens), weight 0.5.
    Per-token NLL 2.0 and 0.5; weighted 1.0 and 0.25."""
    nll = chosen_nll(torch.tensor([-6.0, -2.0]), torch.tensor([3.0, 4.0]), weight=0.5)
    assert nll.tolist() == pytest.approx([1.0, 0.25])


def test_frozen_head_nll_sum_by_hand():
    """h = (1, 0), W = rows (1, 0), (0, 1), (0, 0): logits (1, 0, 0), target 0.
    NLL = ln(e + 2) − 1 = 0.551445; argmax 0 is correct.
    d NLL / d logits = softmax − one-hot = (e/(e+2) − 1, 1/(e+2), 1/(e+2)); with e/(e+2) = 0.576117
    and 1/(e+2) = 0.211942 that is (−0.423883, 0.211942, 0.211942);
    d NLL / d h = that × W = (−0.423883, 0.211942)."""
    h = torch.tensor([[1.0, 0.0]], requires_grad=True)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    nll, correct = frozen_head_nll_sum(h, w, torch.tensor([0]), chunk_elements=3)
    assert nll.item() == pytest.approx(0.551445, abs=1e-6)
    assert correct.item() == 1
    nll.backward()
    assert h.grad.tolist()[0] == pytest.approx([-0.423883, 0.211942], abs=1e-6)


@pytest.mark.parametrize("chunk_elements", [1, 7 * 50, 10_000])
def test_frozen_head_nll_sum_equals_the_full_logits_loss(chunk_elements):
    """Chunked (one position at a time, 7 at a time, all at once): the same loss, count and gradient
    as cross-entropy over the whole [n, vocab] logits, also scaled by a later division."""
    torch.manual_seed(0)
    hidden = torch.randn(19, 8, requires_grad=True)
    weight = torch.randn(50, 8)
    targets = torch.randint(0, 50, (19,))
    full_nll, full_correct = token_nll_sum(hidden @ weight.T, targets)
    (full_nll / 3).backward()
    full_grad, hidden.grad = hidden.grad.clone(), None

    nll, correct = frozen_head_nll_sum(hidden, weight, targets, chunk_elements=chunk_elements)
    (nll / 3).backward()
    assert nll.item() == pytest.approx(full_nll.item(), rel=1e-6)
    assert correct.item() == full_correct.item()
    torch.testing.assert_close(hidden.grad, full_grad, rtol=1e-5, atol=1e-6)


def test_frozen_head_nll_sum_refuses_a_trained_head_and_makes_no_gradient_without_grad():
    weight = torch.randn(5, 3, requires_grad=True)
    with pytest.raises(ValueError, match="token_nll_sum"):
        frozen_head_nll_sum(torch.randn(2, 3), weight, torch.tensor([0, 1]), chunk_elements=10)
    hidden = torch.randn(2, 3, requires_grad=True)
    with torch.no_grad():
        nll, _ = frozen_head_nll_sum(hidden, weight.detach(), torch.tensor([0, 1]), chunk_elements=10)
    assert not nll.requires_grad
