"""Attention for packed rows that computes each example on its own (CPU training).

A packed row holds several examples, and each may attend only to itself. Given the per-example
position ids, transformers builds a dense block-diagonal mask and SDPA still scores every
query × key pair of the row, then throws the cross-example ones away: in a 1024-token row of
~200-token examples that is most of the attention work. Here each example is its own SDPA call,
so only the pairs that count are computed. Same result (the invariant tests run through it), less
work: see BENCHMARKS.md.

A row may also start with a prompt prefix that all its examples share (`pack_after_prefix`): the
prefix is computed once, and each example attends to it and to itself.

Layers with a sliding window (Mistral, Phi-3, Gemma's local layers) see only the last `window`
keys, here as in the model's own forward, so long examples train the function that is served.

On a GPU a loop of small kernels per layer would cost more launches than it saves, so CUDA keeps
the dense mask (a varlen flash kernel is the GPU answer) and the KV-cache prefix layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from tunery.data.pack import SHARED_PREFIX

NAME = "tunery_segments"

# Per row: (shared prefix length, lengths of the runs after it: examples, then any padding).
Layout = tuple[int, list[int]]


def row_layouts(segments: torch.Tensor) -> list[Layout]:
    """Each row's layout, from its per-token segment ids."""
    layouts = []
    for row in segments.cpu():
        ids, counts = torch.unique_consecutive(row, return_counts=True)
        runs = counts.tolist()
        prefix = runs.pop(0) if ids[0] == SHARED_PREFIX else 0
        layouts.append((prefix, runs))
    return layouts


def visible(queries: torch.Tensor, keys: torch.Tensor, window: int | None) -> torch.Tensor:
    """[n_q, n_k] which keys each query sees, from their positions: causal, within `window` if set.

    transformers' sliding window (Mistral, Phi-3, Gemma's local layers): a query at position q sees
    the keys at positions q - window < k <= q (masking_utils.sliding_window_overlay).
    """
    seen = keys[None, :] <= queries[:, None]
    if window is not None:
        seen &= keys[None, :] > queries[:, None] - window
    return seen


def segment_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention signature; `row_layouts` in kwargs switches to one call per example.

    Without it (generation, or rows on top of a KV cache) this is transformers' own SDPA. A layer
    with a sliding window (kwargs["sliding_window"], None on global layers) masks every key further
    back than the window, as the model's own forward does.
    """
    layouts: list[Layout] | None = kwargs.pop("row_layouts", None)
    if layouts is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    gqa = key.shape[1] != query.shape[1]
    window = kwargs.get("sliding_window")
    device = query.device

    def attend(q, k, v, q_pos, k_pos):
        if window is None or q_pos[-1] - k_pos[0] < window:  # nothing out of the window: plain causal
            if len(q_pos) == len(k_pos):
                how = {"is_causal": True}
            else:
                how = {"attn_mask": visible(q_pos, k_pos, None)}
        else:
            how = {"attn_mask": visible(q_pos, k_pos, window)}
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, enable_gqa=gqa, **how)

    rows = []
    for b, (prefix, runs) in enumerate(layouts):
        q, k, v = query[b : b + 1], key[b : b + 1], value[b : b + 1]
        prefix_pos = torch.arange(prefix, device=device)
        parts = [attend(q[:, :, :prefix], k[:, :, :prefix], v[:, :, :prefix], prefix_pos, prefix_pos)] if prefix else []
        start = prefix
        for n in runs:
            end = start + n
            # Positions within the example: a suffix after the shared prefix continues it.
            own = torch.arange(prefix, prefix + n, device=device)
            if prefix:
                # All of the prefix, then causal within the example: row i sees keys ≤ prefix + i.
                keys = torch.cat([k[:, :, :prefix], k[:, :, start:end]], dim=2)
                values = torch.cat([v[:, :, :prefix], v[:, :, start:end]], dim=2)
                parts.append(attend(q[:, :, start:end], keys, values, own, torch.cat([prefix_pos, own])))
            else:
                parts.append(attend(q[:, :, start:end], k[:, :, start:end], v[:, :, start:end], own, own))
            start = end
        rows.append(torch.cat(parts, dim=2))
    # [batch, heads, seq, dim] → [batch, seq, heads, dim], the layout transformers expects back.
    return torch.cat(rows).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, segment_attention)
# The dense mask is still built (cheap) for the fallback path, which needs it.
AttentionMaskInterface.register(NAME, sdpa_mask)


def per_example_attention(device: str) -> bool:
    """Whether training on `device` uses this module (CPU) or the dense mask (GPU)."""
    return device == "cpu"


def use_segment_attention(model) -> None:
    """Switch a (peft-wrapped) causal LM to per-example attention."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.set_attn_implementation(NAME)


def uses_segment_attention(model) -> bool:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.config._attn_implementation == NAME
