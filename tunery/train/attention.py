"""Attention for packed rows that computes each example on its own (CPU training).

A packed row holds several examples, and each may attend only to itself. Given the per-example
position ids, transformers builds a dense block-diagonal mask and SDPA still scores every
query × key pair of the row, then throws the cross-example ones away: in a 1024-token row of
~200-token examples that is most of the attention work. Here each example is its own causal SDPA
call, so only the pairs that count are computed. Same result (the packing invariant test runs
through it), less work: see BENCHMARKS.md.

On a GPU a loop of small kernels per layer would cost more launches than it saves, so CUDA keeps
the dense mask (a varlen flash kernel is the GPU answer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "tunery_segments"


def segment_lengths(segments: torch.Tensor) -> list[list[int]]:
    """Per row, the lengths of its runs of equal segment ids (examples, then the padding block)."""
    return [torch.unique_consecutive(row, return_counts=True)[1].tolist() for row in segments.cpu()]


def segment_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention signature; `segment_lengths` in kwargs switches to one call per example.

    Without it (the shared-prefix layout runs rows on top of a KV cache) this is plain SDPA.
    """
    lengths = kwargs.pop("segment_lengths", None)
    if lengths is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    rows = []
    for b, row in enumerate(lengths):
        parts, start = [], 0
        for n in row:
            end = start + n
            parts.append(
                F.scaled_dot_product_attention(
                    query[b : b + 1, :, start:end],
                    key[b : b + 1, :, start:end],
                    value[b : b + 1, :, start:end],
                    dropout_p=dropout,
                    is_causal=True,
                    scale=scaling,
                    enable_gqa=key.shape[1] != query.shape[1],
                )
            )
            start = end
        rows.append(torch.cat(parts, dim=2))
    # [batch, heads, seq, dim] → [batch, seq, heads, dim], the layout transformers expects back.
    return torch.cat(rows).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, segment_attention)
# The dense mask is still built (cheap) for the fallback path, which needs it.
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_segment_attention(model) -> None:
    """Switch a (peft-wrapped) causal LM to per-example attention."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.set_attn_implementation(NAME)


def uses_segment_attention(model) -> bool:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.config._attn_implementation == NAME
