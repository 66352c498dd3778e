"""`tunery train --dry-run`: the plan a run would follow, its peak memory and its time, without
loading the weights, training or writing anything.

The plan is `tunery.train.plan.resolve` on the real data, as training resolves it. The time is
`tunery estimate`'s FLOP count at its measured CPU rate (or the GPUs' published peaks), cut to
`max_steps` when set. The memory is the sum of the tensors training holds at its peak, below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tunery.data.formats import FORMATS
from tunery.hardware import cpu_native_bf16
from tunery.models import decoder_linear_layers, describe_model, resolve_model
from tunery.train.config import RunConfig
from tunery.train.estimate import Estimate, EstimateSettings, ModelShape, estimate, model_shape
from tunery.train.methods import METHODS
from tunery.train.plan import HEAD_CHUNK_ELEMENTS, Plan, resolve

FP32 = 4
ADAMW_STATE = 2 * FP32  # first and second moments per trained parameter
GIB = 1024**3


@dataclass(frozen=True)
class Memory:
    """Bytes training holds at its peak (the backward of the first micro-batch)."""

    weights: int  # the model's fp32 master weights
    trained_state: int  # gradients and AdamW moments of the trained parameters (+ their fp32 copy for LoRA)
    activations: int  # tensors the forward saves for backward, one micro-batch
    logits: int  # LM-head output, its log-softmax and its gradient, one micro-batch (one chunk: LoRA SFT)
    reference: int  # full DPO: the frozen reference copy

    @property
    def total(self) -> int:
        return self.weights + self.trained_state + self.activations + self.logits + self.reference

    def describe(self) -> str:
        parts = {"weights": self.weights, "optimizer": self.trained_state, "activations": self.activations,
                 "logits": self.logits, "reference": self.reference}  # fmt: skip
        shown = ", ".join(f"{name} {value / GIB:.2f}" for name, value in parts.items() if value)
        return f"{self.total / GIB:.2f} GiB ({shown})"


def training_memory(shape: ModelShape, config: dict, plan: Plan, trained_params: int) -> Memory:
    """Peak training memory of a decoder with fp32 master weights (precision=bf16 autocasts the
    matmuls; the saved activations then take half, which is ignored here, so bf16 runs read high).

    Per token and layer the backward needs the block's inputs and intermediates: the two norm
    inputs and the attention output (3h), q, k and v, the output projection's input (h), and in
    the SwiGLU MLP gate, up, act(gate) and their product (4 × intermediate). Attention itself is
    SDPA, which keeps no seq × seq matrix. With gradient checkpointing only each layer's input is
    kept, plus one layer recomputed. Assumes a Llama-style config (hidden_size, intermediate_size,
    heads, kv heads).
    """
    run = plan.config
    hidden = config.get("hidden_size", 0)
    heads = config.get("num_attention_heads") or 1
    head_dim = config.get("head_dim") or hidden // heads
    q, kv = heads * head_dim, (config.get("num_key_value_heads") or heads) * head_dim
    per_token_layer = 4 * hidden + q + 2 * kv + 4 * config.get("intermediate_size", 0)
    tokens = int(run.micro_batch_tokens)
    method = METHODS[run.method]
    tokens *= FORMATS[method.data_format].sequences  # a pair's chosen and rejected go through together
    if run.gradient_checkpointing:
        activations = tokens * (hidden * shape.layers + per_token_layer) * FP32
    else:
        activations = tokens * per_token_layer * shape.layers * FP32
    vocab = config.get("vocab_size", 0)
    lora = run.adapter == "lora"
    logits = 3 * tokens * vocab  # the LM head's output, its log-softmax and its gradient
    if lora and method.head_in_chunks:  # a frozen head runs in chunks: one chunk's logits and exp
        logits = 2 * min(tokens * vocab, HEAD_CHUNK_ELEMENTS)
    return Memory(
        weights=shape.parameters * FP32,
        trained_state=trained_params * (FP32 + ADAMW_STATE + (FP32 if lora else 0)),
        activations=activations,
        logits=logits * FP32,
        reference=shape.parameters * FP32
        if method.reference_flops_per_token and not lora and run.dpo.reference not in ("none",)
        else 0,
    )


@dataclass(frozen=True)
class DryRun:
    """What `tunery.train` would do with this config."""

    plan: Plan
    memory: Memory
    trained_params: int
    estimate: Estimate
    hours: dict[str, float]  # device → estimated wall-clock hours for the planned steps


def plan_run(config: RunConfig) -> DryRun:
    """Resolve `config` against its data and this machine, and size the run.

    Raises:
        TuneryError: the data has errors, or the model cannot be found.
    """
    import torch

    model_dir = resolve_model(config.model)
    info = describe_model(config.model, model_dir)
    model_config = json.loads((model_dir / "config.json").read_text())
    lora_rank = config.lora.r if config.lora.r != "auto" else None
    settings = EstimateSettings(
        method=config.method,
        adapter=config.adapter,
        epochs=config.n_epochs,
        max_seq_len=config.max_seq_len,
        **({"lora_rank": lora_rank} if lora_rank else {}),
    )
    sized = estimate(config.data, config.model, settings)
    cuda = torch.cuda.is_available()
    plan = resolve(
        config,
        n_examples=sized.examples,
        longest=sized.longest,
        context_length=info.context_length,
        cuda_available=cuda,
        bf16_supported=torch.cuda.is_bf16_supported() if cuda else cpu_native_bf16(),
        linear_layers=decoder_linear_layers(model_dir),
    )
    shape = model_shape(info.parameters, model_config, plan.config.lora.r if plan.config.adapter == "lora" else 0)
    trained = shape.adapter_params if plan.config.adapter == "lora" else shape.parameters
    share = plan.total_steps / max(1, plan.steps_per_epoch * sized.epochs)  # max_steps cuts the run short
    rows = {row["name"]: row["hours"] * share for row in sized.hardware}
    hours = {"this CPU": rows["this CPU"]} if plan.config.device == "cpu" else rows
    return DryRun(plan, training_memory(shape, model_config, plan, trained), trained, sized, hours)
