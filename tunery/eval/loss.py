"""Loss and perplexity of the reference answers, computed with the model directly.

Each held-out item is rendered as one chat (`render_chat`) in which only the reference turn is
trained, so the mask marks exactly the reference's tokens and its end-of-turn token, the same
tokens SFT trains on. By render.py's convention `loss_mask[i] == 1` means token i is a target,
predicted from the logits at position i − 1.

Rows are left-padded so that every reference ends at the last column; then only the last K
positions need logits (`logits_to_keep`), which keeps a batch of long few-shot prompts from
materialising a (batch × length × vocabulary) tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunery.data.render import ChatTokenizer, render_chat
from tunery.eval.heldout import HeldoutExample


@dataclass(frozen=True)
class ReferenceLoss:
    nll: float  # summed negative log-likelihood of the reference tokens, in nats
    tokens: int  # how many tokens that is

    @property
    def mean(self) -> float:
        return self.nll / self.tokens if self.tokens else float("nan")


def reference_losses(
    model, tok: ChatTokenizer, items: Sequence[HeldoutExample], *, batch_size: int = 8, device: str = "cpu"
) -> list[ReferenceLoss]:
    """The summed loss of each item's reference turn under `model` (in eval mode, any adapter active).

    Batches are formed from items of similar length, and results come back in input order.
    """
    import torch
    import torch.nn.functional as F

    rendered = [render_chat(item.conversation(), tok) for item in items]
    order = sorted(range(len(items)), key=lambda i: len(rendered[i].input_ids))
    results: list[ReferenceLoss | None] = [None] * len(items)
    for start in range(0, len(order), batch_size):
        batch = [rendered[i] for i in order[start : start + batch_size]]
        width = max(len(r.input_ids) for r in batch)
        ids = torch.tensor([[tok.pad_id] * (width - len(r.input_ids)) + r.input_ids for r in batch], device=device)
        mask = torch.tensor([[0] * (width - len(r.loss_mask)) + r.loss_mask for r in batch], device=device)
        attention = torch.tensor(
            [[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in batch], device=device
        )
        # Left padding shifts absolute positions; give each row its own, starting at 0.
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
        first_target = min(r.loss_mask.index(1) + width - len(r.loss_mask) for r in batch if 1 in r.loss_mask)
        keep = width - first_target + 1  # the logits at first_target - 1 predict the first target
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=attention, position_ids=positions, logits_to_keep=keep).logits
        targets, weights = ids[:, width - keep + 1 :], mask[:, width - keep + 1 :]
        nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, reduction="none")
        for row, i in enumerate(order[start : start + batch_size]):
            results[i] = ReferenceLoss(nll=float((nll[row] * weights[row]).sum()), tokens=int(weights[row].sum()))
    return results  # type: ignore[return-value]
