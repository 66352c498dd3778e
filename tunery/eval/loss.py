"""Loss and perplexity of the reference answers, computed with the model directly.

Each held-out item is rendered as one chat (`render_chat`) in which only the reference turn is
trained, so the mask marks exactly the reference's tokens and its end-of-turn token, the same
tokens SFT trains on. By render.py's convention `loss_mask[i] == 1` means token i is a target,
predicted from the logits at position i − 1.

Rows are laid out as generation lays them out (`tunery.inference.prefix_batch`): the prefix all
rows share is run once and cached, then padding, then the rest, so every reference ends at the
last column. Only the last K positions then need logits (`logits_to_keep`), which keeps a batch of
long few-shot prompts from materialising a (batch × length × vocabulary) tensor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


@dataclass(frozen=True)
class ReferenceBatch:
    """One batch of items laid out for a single forward pass that scores their reference turns."""

    chunk: list[int]  # the items' indices, in row order
    rows: list[list[int]]
    prefix: int  # tokens all rows share, run once and cached
    ids: object  # (rows, width) token ids, laid out as tunery.inference.prefix_batch lays them
    attention: object
    keep: int  # positions whose logits are needed
    targets: object  # (rows, keep - 1): the token each kept position predicts
    weights: object  # (rows, keep - 1): 1 where that token is part of the reference


def reference_batches(
    tok: ChatTokenizer, items: Sequence[HeldoutExample], *, batch_size: int = 8, device: str = "cpu"
) -> Iterator[ReferenceBatch]:
    """Items of similar length batched together, each batch ready for `reference_logits`."""
    import torch

    from tunery.inference import prefix_batch, shared_prefix_length

    rendered = [render_chat(item.conversation(), tok) for item in items]
    order = sorted(range(len(items)), key=lambda i: len(rendered[i].input_ids))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = [rendered[i].input_ids for i in chunk]
        masks = [rendered[i].loss_mask for i in chunk]
        width = max(len(r) for r in rows)
        # The position before a row's first target must produce logits, so it stays out of the cache.
        context = [row[: mask.index(1) - 1] for row, mask in zip(rows, masks, strict=True)]
        prefix = shared_prefix_length(context, keep=0)
        ids, attention = prefix_batch(rows, prefix, tok.pad_id, device)
        weights = torch.tensor([[0] * (width - len(m)) + m for m in masks], device=device)
        first_target = min(width - len(r) + len(c) + 1 for r, c in zip(rows, context, strict=True))
        keep = width - first_target + 1  # the logits at first_target - 1 predict the first target
        yield ReferenceBatch(
            chunk=chunk,
            rows=rows,
            prefix=prefix,
            ids=ids,
            attention=attention,
            keep=keep,
            targets=ids[:, width - keep + 1 :],
            weights=weights[:, width - keep + 1 :],
        )


def reference_logits(model, batch: ReferenceBatch, device: str = "cpu"):
    """(rows, keep - 1, vocabulary) fp32 logits, each predicting `batch.targets` (any adapter active)."""
    import torch

    from tunery.inference import prefill_prefix

    positions = (batch.attention.cumsum(dim=1) - 1).clamp(min=0)
    with torch.inference_mode():
        cache = prefill_prefix(model, batch.rows[0][: batch.prefix], len(batch.rows), device)
        logits = model(
            input_ids=batch.ids[:, batch.prefix :],
            attention_mask=batch.attention,
            position_ids=positions[:, batch.prefix :],
            cache=cache,
            logits_to_keep=batch.keep,
        ).logits
    return logits[:, :-1].float()


def reference_losses(
    model, tok: ChatTokenizer, items: Sequence[HeldoutExample], *, batch_size: int = 8, device: str = "cpu"
) -> list[ReferenceLoss]:
    """The summed loss of each item's reference turn under `model` (in eval mode, any adapter active).

    Batches are formed from items of similar length, and results come back in input order.
    """
    import torch.nn.functional as F

    results: list[ReferenceLoss | None] = [None] * len(items)
    for batch in reference_batches(tok, items, batch_size=batch_size, device=device):
        logits = reference_logits(model, batch, device)
        nll = F.cross_entropy(logits.transpose(1, 2), batch.targets, reduction="none")
        for row, i in enumerate(batch.chunk):
            weights = batch.weights[row]
            results[i] = ReferenceLoss(nll=float((nll[row] * weights).sum()), tokens=int(weights.sum()))
    return results  # type: ignore[return-value]
