"""Losses as pure functions of tensors.

Supervised losses return *sums*, never means: the training loop divides by the number of trained
tokens in the whole optimizer step, so gradient accumulation gives the same gradients as one big
batch (the 2024 gradient-accumulation bug came from averaging per micro-batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def select_targets(hidden: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor):
    """Hidden states that predict trained tokens, and those tokens.

    Position t predicts token t+1, so the state at t is kept when token t+1 is trained. Only these
    rows ever reach the LM head: in chat data most tokens are prompt, and the vocabulary
    projection is the largest single matmul of a small model.

    Args:
        hidden: [batch, seq, dim] final hidden states.
        input_ids, loss_mask: [batch, seq]; loss_mask[b, t] = 1 when token t is a target.
    Returns:
        ([n, dim] hidden rows, [n] target ids) for the n trained tokens.
    """
    keep = loss_mask[:, 1:].bool()
    return hidden[:, :-1][keep], input_ids[:, 1:][keep]


def token_nll_sum(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood and the number of argmax-correct tokens.

    Args:
        logits: [n, vocab] for n trained tokens (any dtype; computed in fp32).
        targets: [n] token ids.
    Returns:
        (sum of cross-entropy, count of tokens whose argmax equals the target)
    """
    logits = logits.float()
    nll = F.cross_entropy(logits, targets, reduction="sum")
    correct = (logits.argmax(-1) == targets).sum()
    return nll, correct


class _FrozenHeadNLL(torch.autograd.Function):
    """Forward of `frozen_head_nll_sum`; the gradient w.r.t. `hidden` is made in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, with_grad):
        nll = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad = torch.empty_like(hidden) if with_grad else None  # none in validation (no_grad)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start : start + chunk], targets[start : start + chunk]
            logits = F.linear(h, weight).float()
            correct += (logits.argmax(-1) == t).sum()
            lse = torch.logsumexp(logits, dim=-1)
            nll += (lse - logits.gather(-1, t[:, None]).squeeze(-1)).sum()
            if grad is not None:
                # d(Σ nll)/d logits = softmax − one-hot; then through the head: × W
                probs = logits.sub_(lse[:, None]).exp_()
                probs[torch.arange(len(t), device=t.device), t] -= 1.0
                grad[start : start + chunk] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(correct)
        return nll, correct

    @staticmethod
    def backward(ctx, grad_nll, _grad_correct):
        (grad,) = ctx.saved_tensors
        return grad * grad_nll, None, None, None, None


def frozen_head_nll_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk_elements: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_nll_sum(hidden @ weight.T, targets)` for a frozen LM head, without all the logits at once.

    The fused linear cross-entropy of Liger Kernel (Hsu et al. 2024, arXiv:2410.10989, §3.3): the
    trained positions go through the head a chunk at a time, and each chunk's logits give its share
    of the loss and, at once, the loss's gradient w.r.t. its hidden rows ((softmax − one-hot) × W).
    Only that [n, dim] gradient is kept for backward, instead of the [n, vocab] log-probabilities
    and the two [n, vocab] gradients that cross-entropy's backward makes; the FLOPs are the same.
    The head's weight gets no gradient: it must not require one (LoRA, where the head is frozen).

    Args:
        hidden: [n, dim] hidden rows at the trained positions; weight: [vocab, dim] (no bias).
        targets: [n] token ids. chunk_elements: logits computed at once (positions × vocab).
    Returns:
        (sum of cross-entropy, count of tokens whose argmax equals the target), as token_nll_sum.
    """
    if weight.requires_grad:
        raise ValueError(
            "frozen_head_nll_sum gives the head's weight no gradient; use token_nll_sum for a trained head"
        )
    chunk = max(1, chunk_elements // weight.shape[0])
    return _FrozenHeadNLL.apply(hidden, weight, targets, chunk, torch.is_grad_enabled() and hidden.requires_grad)


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, segment: torch.Tensor, n_segments: int):
    """Sum of target log-probabilities per sequence (for DPO), and the token count per sequence.

    Args:
        logits: [n, vocab] at the n trained positions; targets: [n] ids;
        segment: [n] index of the sequence each position belongs to.
    Returns:
        ([n_segments] summed log-probs, [n_segments] token counts)
    """
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    sums = torch.zeros(n_segments, dtype=logp.dtype, device=logp.device).index_add_(0, segment, logp)
    counts = torch.zeros(n_segments, dtype=logp.dtype, device=logp.device).index_add_(0, segment, torch.ones_like(logp))
    return sums, counts


def dpo_sigmoid_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al. 2023, eq. 7): -log σ(β[(π_c - ref_c) - (π_r - ref_r)]).

    Inputs are summed response log-probs per pair, shape [pairs].
    Returns (per-pair losses, chosen rewards β(π_c - ref_c), rejected rewards β(π_r - ref_r)).
    """
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    return -F.logsigmoid(chosen - rejected), chosen.detach(), rejected.detach()


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IPO (Azar et al. 2023, eq. 17): (h - 1/(2β))², h = (π_c - ref_c) - (π_r - ref_r).

    Here the log-ratios are per-token averages, as in the paper's reference implementation,
    so the target margin 1/(2β) does not depend on the response length. Callers pass averages.
    Returns (per-pair losses, chosen rewards, rejected rewards), rewards as β × log-ratio.
    """
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    loss = (chosen - rejected - 1.0 / (2.0 * beta)) ** 2
    return loss, (beta * chosen).detach(), (beta * rejected).detach()


def simpo_loss(
    policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, beta: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimPO (Meng et al. 2024, eq. 6), reference-free: -log σ(β·avg_c - β·avg_r - γ).

    Inputs are per-token *average* response log-probs (length-normalised), shape [pairs].
    Returns (per-pair losses, chosen rewards β·avg_c, rejected rewards β·avg_r).
    """
    chosen = beta * policy_chosen_avg
    rejected = beta * policy_rejected_avg
    return -F.logsigmoid(chosen - rejected - gamma), chosen.detach(), rejected.detach()


def chosen_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor, weight: float) -> torch.Tensor:
    """RPO's extra term (Pang et al. 2024, eq. 3): weight × the chosen answer's NLL per token.

    Added to a preference loss, it keeps the likelihood of the preferred answer from falling
    while the margin grows, which is how DPO alone can learn to rank pairs yet derail generation.
    Inputs: summed chosen log-probs and chosen answer lengths, shape [pairs]. Returns [pairs].
    """
    return -weight * policy_chosen / chosen_tokens


def group_advantages(rewards: torch.Tensor, *, scale: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-relative advantages (Shao et al. 2024, §4.1.2): reward minus its group's mean.

    Args:
        rewards: [prompts, G] rewards of G completions per prompt.
        scale: also divide by the group's standard deviation, as the original GRPO does. Off by
            default: Dr. GRPO (Liu et al. 2025, §3.1) shows the division up-weights prompts that
            are nearly always or nearly never solved (small std), a difficulty bias, and removing it
            loses no accuracy. A group with zero variance gets advantage 0 either way.
    Returns:
        [prompts, G] advantages; each group's sum to 0.
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def grpo_token_losses(
    logps: torch.Tensor, advantages: torch.Tensor, ref_logps: torch.Tensor | None = None, kl_coef: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token GRPO loss for one on-policy update, and the per-token KL estimate.

    loss_t = -A · exp(logp_t - sg(logp_t)) + β · KL_t. The ratio exp(logp - sg(logp)) is 1 in
    value and has the gradient of logp, so the loss's gradient is the policy gradient -A ∇logp:
    with one update per batch of rollouts, PPO's clipped ratio (Schulman et al. 2017) never
    leaves 1 and clipping does nothing (see tunery/train/rft.py on why one update). KL_t is the
    unbiased, always-positive k3 estimator exp(ref - logp) - (ref - logp) - 1 (Schulman 2020),
    as GRPO uses it (Shao et al. 2024, eq. 4).

    Args:
        logps: [n] log-probs of the n sampled completion tokens under the policy.
        advantages: [n] the advantage of each token's completion.
        ref_logps: [n] log-probs under the reference (base) model, or None when kl_coef is 0.
    Returns:
        ([n] losses, [n] KL estimates, zeros without a reference). Sum and divide by the step's
        completion tokens (DAPO's token-level normalisation, Yu et al. 2025), so that every
        token weighs the same whether its answer is long or short.
    """
    losses = -advantages * torch.exp(logps - logps.detach())
    if ref_logps is None or kl_coef == 0.0:
        return losses, torch.zeros_like(logps).detach()
    delta = ref_logps - logps
    kl = torch.exp(delta) - delta - 1.0
    return losses + kl_coef * kl, kl.detach()
