"""Building blocks the training loops share: model + adapter, optimizer, schedule, batches.

Composition, not inheritance: transformers gives the model, peft the adapter, torch the
optimizer. The loops in sft.py and dpo.py call these and keep the loop itself in plain sight.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
from pathlib import Path

import numpy as np
import torch

from tunery.data.pack import (
    SHARED_PREFIX,
    Row,
    micro_batches,
    pack_after_prefix,
    pack_rows,
    padded,
    split_shared_prefix,
)
from tunery.data.render import Rendered
from tunery.train.attention import per_example_attention, row_layouts, use_segment_attention, uses_segment_attention
from tunery.train.plan import HEAD_CHUNK_ELEMENTS, Plan


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_for_training(plan: Plan, model_dir: Path, *, device: str | None = None):
    """The base model as every training forward needs it: fp32, no KV cache, per-example attention on CPU.

    The policy and any frozen model scored beside it (DPO's reference) are built here, so both
    see packed rows and shared-prefix rows the same way.
    """
    from tunery.models import load_model

    config = plan.config
    model = load_model(model_dir, dtype=torch.float32, device=device or config.device)
    model.config.use_cache = False  # the KV cache is for generation; it only costs memory here
    if per_example_attention(config.device):
        use_segment_attention(model)
    return model


def build_frozen_model(plan: Plan, model_dir: Path):
    """A model built exactly like the policy's base, in eval mode and without gradients."""
    return load_for_training(plan, model_dir).eval().requires_grad_(False)


def build_model(plan: Plan, model_dir: Path, *, device: str | None = None):
    """Load the base model on the chosen device and wrap it with a LoRA adapter if asked.

    Weights stay fp32 (master weights); bf16 comes from autocast in `autocast(plan)`.
    `device` overrides the config's: FSDP loads on the CPU and moves each shard to the GPU.
    """
    from peft import LoraConfig, get_peft_model

    config = plan.config
    model = load_for_training(plan, model_dir, device=device)
    if config.adapter == "lora":
        lora = LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=list(config.lora.target_modules),
            use_dora=config.lora.use_dora,
            use_rslora=config.lora.use_rslora,
            task_type="CAUSAL_LM",
            bias="none",
        )
        model = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.adapter == "lora":
            model.enable_input_require_grads()
    return model


def backbone_and_head(model):
    """The transformer body (hidden states out) and the LM head, through any peft wrapper."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder(), inner.get_output_embeddings()


class TokenLoss(torch.nn.Module):
    """One micro-batch's forward: decoder body → trained positions only → LM head → summed NLL.

    A module rather than a function so that FSDP can shard it as its root: FSDP2 gathers a
    group's weights around a module's forward, and the body's embeddings and the LM head (tied
    in most small models) must be gathered and reduced together.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from tunery.train.losses import frozen_head_nll_sum, select_targets, token_nll_sum

        _, head = backbone_and_head(self.model)
        hidden = hidden_states(self.model, batch)
        rows, targets = select_targets(hidden, batch["input_ids"], batch["loss_mask"])
        # A plain frozen head (LoRA, unless it adapts the head too): never all the logits at once
        if type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad:
            return frozen_head_nll_sum(rows, head.weight, targets, chunk_elements=HEAD_CHUNK_ELEMENTS)
        return token_nll_sum(head(rows), targets)


def adapted_modules(model) -> tuple[int, list[str]]:
    """How many modules carry a LoRA adapter, and their distinct names in model order."""
    names = [name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")]
    return len(names), list(dict.fromkeys(names))


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def build_optimizer(model, plan: Plan) -> torch.optim.Optimizer:
    """AdamW on the trainable parameters; no weight decay on norms and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": plan.config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=plan.config.learning_rate, betas=(0.9, 0.999), eps=1e-8)


def lr_factor(step: int, plan: Plan) -> float:
    """Multiplier on the peak learning rate at `step`: linear warmup, then the chosen decay to 0."""
    warmup, total = plan.warmup_steps, max(plan.total_steps, 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if plan.config.lr_scheduler == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if plan.config.lr_scheduler == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer, plan: Plan) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, plan))


def autocast(plan: Plan):
    if plan.config.precision == "bf16":
        return torch.autocast(device_type=plan.config.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def tensor_batches(rows: list[Row], plan: Plan, pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Rows → padded micro-batches as tensors on the training device."""
    out = []
    for batch in micro_batches(rows, plan.config.micro_batch_tokens):
        arrays = padded(batch, pad_id)
        out.append({k: torch.tensor(v, device=plan.config.device) for k, v in arrays.items()})
    return out


def step_batches(examples: list[Rendered], plan: Plan, pad_id: int) -> list[dict[str, torch.Tensor]]:
    """The micro-batches for one step's examples, in whichever layout computes fewer positions.

    Packed: examples side by side in rows, each attending only to itself. Shared prefix: when
    every example starts with the same long prompt (a system prompt), it is computed once per row
    and the rest of each example attends to it. Both give the same loss and gradients.
    """
    cfg = plan.config
    if not examples:  # a rank's share of a short last step can be empty
        return []
    per_example = per_example_attention(cfg.device)
    # Per-example attention makes a row's length free of attention cost: fill whole micro-batches.
    capacity = max(cfg.max_seq_len, cfg.micro_batch_tokens) if per_example else cfg.max_seq_len
    packed = tensor_batches(pack_rows(examples, capacity, packing=cfg.packing), plan, pad_id)
    # Gradient checkpointing turns the KV cache off, which the GPU prefix layout needs.
    split = split_shared_prefix(examples) if cfg.share_prefix and not cfg.gradient_checkpointing else None
    if split is None:
        return packed
    prefix, suffixes = split
    if per_example:
        shared = tensor_batches(pack_after_prefix(prefix, suffixes, capacity), plan, pad_id)
    else:
        shared = prefix_cache_batches(prefix, suffixes, plan, pad_id)
    return shared if _positions(shared) < _positions(packed) else packed


def prefix_cache_batches(prefix: list[int], suffixes: list[Row], plan: Plan, pad_id: int) -> list[dict]:
    """The GPU prefix layout: the prefix runs once per micro-batch, its KV cache under padded suffix rows."""
    batches = tensor_batches(suffixes, plan, pad_id)
    for batch in batches:
        batch["prefix_ids"] = torch.tensor([prefix], device=plan.config.device)
        batch["attention_mask"] = (batch["segments"] >= 0).long()
    return batches


def _positions(batches: list[dict[str, torch.Tensor]]) -> int:
    """Token positions a layout computes: padded rows plus each micro-batch's prefix."""
    return sum(b["input_ids"].numel() + (b["prefix_ids"].shape[1] if "prefix_ids" in b else 0) for b in batches)


def hidden_states(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Final hidden states for a packed batch, or for suffixes after a shared prefix.

    Packed: no attention mask is passed on purpose. From the per-example position ids,
    transformers builds a block-diagonal causal mask, so packed examples never attend to one
    another (see tunery/data/pack.py and the packing invariant test). On CPU, attention runs
    one example at a time instead, after the row's shared prefix if it has one
    (tunery/train/attention.py).

    Shared prefix on GPU: the prefix runs once; its KV cache (still part of the autograd graph, so the
    prefix's weights get their gradients) is repeated for every row, and the rows run on top of it.
    """
    body, _ = backbone_and_head(model)
    if "prefix_ids" not in batch:
        if uses_segment_attention(model):
            extra = {"row_layouts": row_layouts(batch["segments"])}
        elif (batch["segments"] == SHARED_PREFIX).any():
            raise ValueError("rows with a shared prefix need per-example attention (use_segment_attention)")
        else:
            extra = {}
        return body(input_ids=batch["input_ids"], position_ids=batch["position_ids"], **extra).last_hidden_state
    rows, prefix = batch["input_ids"].shape[0], batch["prefix_ids"].shape[1]
    cache = body(input_ids=batch["prefix_ids"], use_cache=True).cache
    cache.batch_repeat_interleave(rows)
    mask = torch.cat([batch["attention_mask"].new_ones(rows, prefix), batch["attention_mask"]], dim=1)
    return body(
        input_ids=batch["input_ids"],
        position_ids=batch["position_ids"],
        attention_mask=mask,
        cache=cache,
        use_cache=True,
    ).last_hidden_state


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order for one epoch: a pure function of (seed, epoch), so resume needs no state."""
    return random.Random(seed * 1_000_003 + epoch).sample(range(n), n)


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, checkpoints and exits cleanly."""

    def __init__(self):
        self.signal: str | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
