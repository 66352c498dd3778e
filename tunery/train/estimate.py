"""Before training: how many tokens a dataset trains, how many FLOPs that takes, how long and what it costs.

Torch-free on purpose (tokenizers, jinja2 and numpy only), so `tunery estimate` starts fast.

The compute model
-----------------
Count the multiply-adds of the weight matrices a token passes through; P of them cost 2·P FLOPs
forward (one multiply, one add each). Backward through a linear layer has two products: the
gradient with respect to its input (2·P, to carry the signal further down) and the gradient with
respect to its weight (2·P). So per token:

* **full fine-tuning**: 2·P forward + 4·P backward = **6·P** (Kaplan et al. 2020, §2.1);
* **LoRA**: the base weights are frozen and need no weight gradient, but the input gradient still
  has to flow through every frozen layer down to the lowest adapter, which sits in the first
  block; so 2·P forward + 2·P backward = **4·P**, plus **6·A** for the A adapter parameters,
  which are trained (forward, input and weight gradients). With rank 16 on every projection A is
  a few per cent of P;
* **DPO** (reference = the base with the adapter off, or a frozen copy): the policy costs as
  LoRA or full fine-tuning on both sequences of every pair (chosen and rejected), and the
  reference adds one forward pass, **2·P**, over the same sequences. tunery caches the reference
  log-probs (`dpo.cache_reference`), so that pass runs once, not once per epoch.

Each method's numbers (`flops_per_token` per adapter, `reference_flops_per_token`) are part of its
entry in tunery/train/methods.py.

Refinements over "k · params · tokens" (what this module chooses):

* P is split. The **LM head** (vocab × hidden weights) runs only on tokens that carry a loss,
  because tunery computes logits only where the loss mask is set; so it is charged per *trained*
  token, the transformer body per *computed* token. The input embedding is a table lookup and
  costs no FLOPs. For a 135M model with a 49k vocabulary the head is a fifth of the weights, so
  this matters when prompts are long and answers short.
* **Causal attention** scores and the weighted sum add 2·width·L² FLOPs forward per layer for a
  sequence of L tokens (each of the two products is L²/2 dot products of the attention width),
  and twice that backward whatever the method (they involve no weights). It is ~2 % at 100 tokens
  and ~30 % at 2,000 for SmolLM2. Packed examples never attend to each other, so L is the length
  of each example, not of the packed row.
* **Padding** is computed too: tokens through the body are the real tokens divided by
  (1 − padding fraction with packing).
* **A shared prompt prefix** (typically one system prompt in every example) is computed once per
  packed row, not once per example, when that is cheaper, as the trainer does (`share_prefix`,
  tunery/train/modeling.py `step_batches`). Each optimizer step (the plan's batch size) packs its
  own sequences into rows of max(max_seq_len, 1024) tokens, the CPU trainer's layout; each row
  holds the prefix once. For the bundled support tickets (a 121-token system prompt, ~36 tokens
  after it) this computes about a third of the tokens. Attention then counts the prefix once per
  row and each suffix's attention to the prefix and to itself.

Not counted: norms, activations, softmax, the optimizer step (all small next to the matmuls), and
the forward recomputation of gradient checkpointing (+2·P per token when it is on; tunery's auto
recipe turns it on only on GPUs for sequences of 2,048 tokens and more).

Time = FLOPs / (peak rate × utilisation). GPU peaks are the published dense bf16 tensor-core
numbers; this CPU's rate is measured with an fp32 matmul. Utilisation (MFU, the share of the
peak a real training step reaches) is an assumption stated in the output: 40 % is typical of
well-tuned GPU training of large models; small models reach less, because their matmuls are too
small to fill the chip.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from tunery.data import prices
from tunery.data.formats import FORMATS, Example, PreferenceExample, iter_jsonl, to_example
from tunery.data.pack import PrefixTracker, best_fit_decreasing, padding_fraction
from tunery.data.render import ChatTokenizer, TemplateError, render_chat
from tunery.errors import TuneryError
from tunery.train.config import RunConfig, describe_errors
from tunery.train.methods import ADAPTERS, METHODS, Method, method_for_format
from tunery.train.plan import Plan, resolve

MethodName = Literal[tuple(METHODS)]
AdapterName = Literal[ADAPTERS]

# Rows per micro-batch assumed for the padding statistics; rows are sorted by length before
# batching, so the number matters little.
ROWS_PER_MICRO_BATCH = 8


class InvalidDataError(TuneryError):
    """The file does not hold valid training data (exit 1, like `tunery validate`)."""

    exit_code = 1


class EstimateSettings(BaseModel):
    """What to estimate for. Bad values are rejected, never adjusted.

    Every "auto" resolves as `tunery train` resolves it on this CPU: `estimate` builds the run
    config and calls the recipe (`tunery.train.plan.resolve`), then reads the `Plan`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: MethodName | None = Field(None, description="None: the method that trains on the file's format")
    adapter: AdapterName = Field("lora", description="lora or full fine-tuning, as `tunery train --adapter`")
    epochs: Literal["auto"] | PositiveInt = Field("auto", description="auto = OpenAI's rule")
    max_seq_len: Literal["auto"] | PositiveInt = Field(
        "auto", description="auto = the longest example rounded up to 64, at most the model's context"
    )
    gpu_hour_price: float = Field(prices.DEFAULT_GPU_HOUR_PRICE, ge=0, description="USD per GPU-hour")
    utilisation: float = Field(prices.DEFAULT_UTILISATION, gt=0, le=1, description="share of peak FLOP/s reached")
    lora_rank: PositiveInt | None = Field(None, description="None: the recipe's rank (lora.r=auto)")
    calibration_seconds: float = Field(1.0, gt=0, le=30, description="length of the CPU matmul calibration")


# ---------------------------------------------------------------------------------------------
# The model's shape


@dataclass(frozen=True)
class ModelShape:
    """The parameter counts the FLOPs model needs, read from the model's files."""

    parameters: int  # every stored weight
    body_params: int  # weights every token multiplies through: the transformer blocks
    head_params: int  # the LM head (vocab × hidden): only tokens with a loss
    adapter_params: int  # LoRA A and B matrices at the assumed rank
    layers: int
    attention_width: int  # query heads × head dim: the width of the attention dot products
    context_length: int | None


def model_shape(parameters: int, config: dict, lora_rank: int) -> ModelShape:
    """Split `parameters` into body and head and size the adapter from a Hugging Face config.

    Assumes a decoder with the usual keys (Llama, Mistral, Qwen, SmolLM…). When a key is missing,
    every weight counts as body and the attention and adapter terms are left out.
    """
    hidden = config.get("hidden_size")
    vocab = config.get("vocab_size")
    layers = config.get("num_hidden_layers") or 0
    heads = config.get("num_attention_heads")
    if not (hidden and vocab and heads):
        return ModelShape(parameters, parameters, 0, 0, 0, 0, config.get("max_position_embeddings"))
    head_dim = config.get("head_dim") or hidden // heads
    kv_heads = config.get("num_key_value_heads") or heads
    embedding = vocab * hidden
    head = vocab * hidden
    # Tied: one stored matrix serves as both embedding and head. Untied: two.
    tied = config.get("tie_word_embeddings", False)
    body = parameters - embedding - (0 if tied else head)
    intermediate = config.get("intermediate_size") or 0
    q, kv = heads * head_dim, kv_heads * head_dim
    # (in, out) of each adapted projection; a rank-r adapter on it has r·(in + out) weights.
    projections = [(hidden, q), (hidden, kv), (hidden, kv), (q, hidden)]
    if intermediate:
        projections += [(hidden, intermediate), (hidden, intermediate), (intermediate, hidden)]
    adapter = layers * lora_rank * sum(i + o for i, o in projections)
    return ModelShape(
        parameters=parameters,
        body_params=max(body, 0),
        head_params=head,
        adapter_params=adapter,
        layers=layers,
        attention_width=q,
        context_length=config.get("max_position_embeddings"),
    )


# ---------------------------------------------------------------------------------------------
# The FLOPs model (pure functions; see the module docstring for the derivation)


@dataclass(frozen=True)
class EpochTokens:
    """What one epoch pushes through the model."""

    computed: float  # tokens through the transformer body, padding included
    trained: int  # tokens with a loss: where the LM head runs
    sum_squared_lengths: int  # Σ L² over the epoch's sequences, for the attention term


@dataclass(frozen=True)
class Flops:
    policy: float  # forward and backward of the model being trained, all epochs
    reference: float  # DPO's frozen reference forward passes

    @property
    def total(self) -> float:
        return self.policy + self.reference


# FLOPs per weight per token: forward 2, input gradient 2, weight gradient 2 (trained weights only).
# What the base weights cost depends on the method and adapter: `Method.flops_per_token`.
ADAPTER_FLOPS_PER_TOKEN = 6  # adapters are trained: all three products
ATTENTION_TRAIN_FACTOR = 3  # backward through the scores costs twice the forward, for every method


def _weight_multiply_adds(shape: ModelShape, epoch: EpochTokens) -> float:
    """Multiply-adds of the weight matrices in one epoch: the body on every token, the head on trained ones."""
    return shape.body_params * epoch.computed + shape.head_params * epoch.trained


def _attention_multiply_adds(shape: ModelShape, epoch: EpochTokens) -> float:
    """Multiply-adds of causal attention in one epoch: per layer, two products of L²/2 dot products each."""
    return shape.layers * shape.attention_width * epoch.sum_squared_lengths


def forward_flops(shape: ModelShape, epoch: EpochTokens) -> float:
    """One forward pass of the base model (no adapter) over one epoch's tokens."""
    return 2 * (_weight_multiply_adds(shape, epoch) + _attention_multiply_adds(shape, epoch))


def training_flops(
    method: Method,
    adapter: str,
    shape: ModelShape,
    epoch: EpochTokens,
    epochs: int,
    *,
    reference_cached: bool = True,
) -> Flops:
    """FLOPs of a whole training run.

    Args:
        method: the method's entry in tunery/train/methods.py (its FLOPs per token).
        adapter: "lora" or "full".
        shape: the model's parameter split (`model_shape`).
        epoch: tokens per epoch (for DPO, both sequences of every pair).
        epochs: passes over the data.
        reference_cached: methods with a reference only; its log-probs are computed once and reused.
    """
    adapter_tokens = 0 if adapter == "full" else shape.adapter_params * epoch.computed
    per_epoch = (
        method.flops_per_token[adapter] * _weight_multiply_adds(shape, epoch)
        + ADAPTER_FLOPS_PER_TOKEN * adapter_tokens
        + ATTENTION_TRAIN_FACTOR * 2 * _attention_multiply_adds(shape, epoch)
    )
    reference = 0.0
    if method.reference_flops_per_token:
        passes = 1 if reference_cached else epochs
        multiply_adds = _weight_multiply_adds(shape, epoch) + _attention_multiply_adds(shape, epoch)
        reference = passes * method.reference_flops_per_token * multiply_adds
    return Flops(policy=epochs * per_epoch, reference=reference)


def hours(flops: float, peak_flops_per_s: float, utilisation: float) -> float:
    """Wall-clock hours to do `flops` at `utilisation` of a device's peak rate."""
    return flops / (peak_flops_per_s * utilisation) / 3600


def measure_cpu_gflops(seconds: float = 1.0, size: int = 1024) -> float:
    """This CPU's fp32 matmul rate in GFLOP/s: the best of repeated size × size products.

    The best rather than the mean, because other processes on a shared machine only ever slow a
    product down; numpy's BLAS uses every core, as torch does when training on CPU.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up: thread pool start and page faults
    best = math.inf
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


# ---------------------------------------------------------------------------------------------
# Reading and rendering the data


@dataclass(frozen=True)
class SequenceStats:
    """Per-sequence numbers kept while streaming the file (the token ids themselves are not kept)."""

    length: int  # after truncation
    trained: int
    truncated: int


def require_valid(path: Path) -> None:
    """Refuse to estimate from a file with validation errors; warnings are fine.

    Runs the validator without a tokenizer (a fast streaming pass); rendering comes after.

    Raises:
        InvalidDataError: the file has errors; the message names the first few and the codes.
        TuneryError: the file is missing, a directory or unreadable.
    """
    from tunery.data.rules import CODES
    from tunery.data.validate import validate_file

    report = validate_file(path, max_issues_per_code=3)
    if report.ok:
        return
    codes = ", ".join(f"{code} ×{n}" for code, n in report.issue_counts.items() if CODES[code] == "error")
    shown = [f"line {i.line}: {i.message}" if i.line else i.message for i in report.errors[:3]]
    more = report.error_count - len(shown)
    plural = "s" if report.error_count != 1 else ""
    raise InvalidDataError(
        f"{path} has {report.error_count} validation error{plural} ({codes}):\n  "
        + "\n  ".join(shown + ([f"… and {more} more"] if more > 0 else [])),
        hint=f"run `tunery validate {path}` for the full report, fix the file, then estimate again",
    )


def _stream_examples(path: Path) -> Iterator[Example]:
    """Stream the typed examples of a file that passed validation."""
    for line, obj in iter_jsonl(path):
        yield to_example(obj, line)


def render_sequences(
    path: Path, tok: ChatTokenizer, max_seq_len: int | None
) -> tuple[str, int, list[SequenceStats], int]:
    """Render every example (both answers of a preference pair) and keep its token counts.

    Returns (format, number of examples, one SequenceStats per sequence, length of the prompt
    prefix that every sequence shares and the trainer would compute once per row, or 0).
    """
    stats: list[SequenceStats] = []
    prefix = PrefixTracker()
    n = 0
    kind = "chat"
    for example in _stream_examples(path):
        n += 1
        if isinstance(example, PreferenceExample):
            kind = "preference"
            chats = [example.as_chat("chosen"), example.as_chat("rejected")]
        else:
            chats = [example]
        for chat in chats:
            try:
                r = render_chat(chat, tok, max_seq_len=max_seq_len)
            except TemplateError:
                raise
            except Exception as exc:  # jinja errors: the template cannot take this example
                raise InvalidDataError(
                    f"{path}:{chat.line}: the model's chat template cannot render this example "
                    f"({type(exc).__name__}: {exc})",
                    hint=f"run `tunery validate {path} --model MODEL` to see every example it rejects",
                ) from None
            stats.append(SequenceStats(len(r.input_ids), r.trained_tokens, r.truncated))
            prefix.add(r)
    return kind, n, stats, prefix.length()


def shared_prefix_layout(lengths: list[int], prefix: int, per_step: int, row_capacity: int) -> tuple[int, int]:
    """(tokens computed, Σ attention term) of one epoch when a shared prefix is computed once per row.

    Each optimizer step packs its `per_step` sequences (here taken in file order; training
    shuffles, which barely changes the sums) into rows of `row_capacity`: the prefix once, then
    whole suffixes by best-fit decreasing. The attention term is in units of `EpochTokens.
    sum_squared_lengths` (an L-token causal sequence counts L²): per row the prefix attending
    to itself, P², and per suffix of S tokens its attention to the prefix and to itself, 2·P·S + S².
    """
    room = row_capacity - prefix
    computed = attention = 0
    for start in range(0, len(lengths), per_step):
        suffixes = [n - prefix for n in lengths[start : start + per_step]]
        rows = len(best_fit_decreasing(suffixes, room))
        computed += sum(suffixes) + rows * prefix
        attention += rows * prefix * prefix + sum(2 * prefix * n + n * n for n in suffixes)
    return computed, attention


# ---------------------------------------------------------------------------------------------
# The estimate


@dataclass
class HardwareRow:
    name: str
    peak_tflops: float
    basis: str
    utilisation: float
    hours: float
    usd: float | None  # None: not priced (this CPU)


@dataclass
class HostedRow:
    provider: str
    model: str
    usd_per_million_tokens: float
    billed_tokens: int
    usd: float


@dataclass
class Estimate:
    file: str
    format: str
    model: str
    model_path: str
    parameters: int
    method: str
    adapter: str
    examples: int
    sequences: int
    epochs: int
    epochs_rule: str
    max_seq_len: int
    batch_size: int  # examples per optimizer step, as the run's plan resolves it
    lora_rank: int | None  # None: full fine-tuning
    micro_batch_tokens: int  # the packed rows' length
    longest: int  # tokens in the longest rendered sequence (at most the context)
    truncated_sequences: int
    truncated_tokens: int
    untrained_sequences: int  # max_seq_len cut every trained token away: training drops them
    tokens_per_epoch: int
    trained_tokens_per_epoch: int
    tokens_total: int
    trained_tokens_total: int
    computed_tokens_total: int
    # kind "packed", or "shared prefix" (the prompt all examples share, computed once per row);
    # shared_prefix_tokens; packed_computed_per_epoch (what packing alone would compute)
    layout: dict
    padding: dict
    flops: dict
    cpu_gflops_measured: float
    hardware: list[dict] = field(default_factory=list)  # HardwareRow as dicts
    gpu_hour_price: float = prices.DEFAULT_GPU_HOUR_PRICE
    hosted: dict = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def resolve_plan(
    path: Path, model_ref: str, method: Method, settings: EstimateSettings, *, n_examples: int, longest: int, context
) -> Plan:
    """The plan `tunery train` would resolve for these settings on this CPU (torch is not imported
    to look for a GPU; the GPU rows of the estimate use the same plan)."""
    values: dict = {"data": path, "model": model_ref, "method": method.name, "adapter": settings.adapter}
    values |= {"n_epochs": settings.epochs, "max_seq_len": settings.max_seq_len}
    if settings.lora_rank is not None:
        values["lora"] = {"r": settings.lora_rank}
    try:
        config = RunConfig.model_validate(values)
    except ValidationError as exc:
        raise TuneryError(describe_errors(exc, "estimate")) from None
    return resolve(
        config,
        n_examples=n_examples,
        longest=longest,
        context_length=context,
        cuda_available=False,
        bf16_supported=False,
    )


def estimate(path: str | Path, model_ref: str, settings: EstimateSettings | None = None) -> Estimate:
    """Count tokens, FLOPs, time and cost for training `model_ref` on the JSONL file at `path`.

    Raises:
        InvalidDataError: the file holds invalid data (exit 1).
        TuneryError: the file or model cannot be read, or a setting does not fit the model (exit 2).
    """
    from tunery.models import describe_model, resolve_model

    settings = settings or EstimateSettings()
    path = Path(path)
    require_valid(path)  # before the model: a broken file should not wait for a conversion
    model_dir = resolve_model(model_ref)
    info = describe_model(model_ref, model_dir)
    if not info.parameters:  # e.g. only pytorch_model.bin, which cannot be read without torch
        raise TuneryError(
            f"cannot size {model_ref}: {model_dir} holds no *.safetensors weights to count",
            hint="save the model with save_pretrained(..., safe_serialization=True), or use a .gguf or hub id",
        )
    config = json.loads((model_dir / "config.json").read_text())
    context = config.get("max_position_embeddings")

    if settings.max_seq_len != "auto" and context and settings.max_seq_len > context:
        raise TuneryError(
            f"--max-seq-len {settings.max_seq_len} is longer than {model_ref}'s context of {context} tokens",
            hint=f"pass --max-seq-len {context} or less, or leave it at auto",
        )
    tok = ChatTokenizer.from_dir(model_dir)
    # With auto, render up to the model's context; the capacity follows from the longest result.
    render_cap = context if settings.max_seq_len == "auto" else settings.max_seq_len
    kind, n_examples, seqs, prefix = render_sequences(path, tok, render_cap)

    method = METHODS[settings.method] if settings.method else method_for_format(kind)
    if method is None or method.data_format != kind:
        fitting = ", ".join(f"--method {m.name} for {m.data_format} data" for m in METHODS.values())
        raise TuneryError(
            f"--method {settings.method} trains on {method.data_format if method else 'other'} examples, "
            f"but {path} holds {kind} examples",
            hint=f"use {fitting}",
        )
    adapter = settings.adapter
    lengths = [s.length for s in seqs]
    plan = resolve_plan(path, model_ref, method, settings, n_examples=n_examples, longest=max(lengths), context=context)
    run = plan.config
    capacity, epochs = run.max_seq_len, run.n_epochs
    lora_rank = run.lora.r if adapter == "lora" else None
    shape = model_shape(info.parameters, config, lora_rank or 0)

    tokens = sum(lengths)
    trained = sum(s.trained for s in seqs)
    pad_unpacked = padding_fraction(lengths, capacity, ROWS_PER_MICRO_BATCH, packing=False)
    pad_packed = padding_fraction(lengths, capacity, ROWS_PER_MICRO_BATCH, packing=True)
    epoch = EpochTokens(
        computed=tokens / (1 - pad_packed),
        trained=trained,
        sum_squared_lengths=sum(n * n for n in lengths),
    )
    packed_computed = epoch.computed
    layout = "packed"
    if prefix:
        per_step = run.batch_size * FORMATS[kind].sequences
        computed, attention = shared_prefix_layout(lengths, prefix, per_step, run.micro_batch_tokens)
        if computed < epoch.computed:  # the trainer, too, takes the layout that computes less
            epoch = EpochTokens(computed=computed, trained=trained, sum_squared_lengths=attention)
            layout = "shared prefix"
    flops = training_flops(method, adapter, shape, epoch, epochs)

    cpu_gflops = measure_cpu_gflops(settings.calibration_seconds)
    return Estimate(
        file=str(path),
        format=kind,
        model=model_ref,
        model_path=str(model_dir),
        parameters=info.parameters,
        method=method.name,
        adapter=adapter,
        examples=n_examples,
        sequences=len(seqs),
        epochs=epochs,
        epochs_rule="auto" if settings.epochs == "auto" else "fixed",
        max_seq_len=capacity,
        batch_size=run.batch_size,
        lora_rank=lora_rank,
        micro_batch_tokens=run.micro_batch_tokens,
        longest=max(lengths),
        truncated_sequences=sum(1 for s in seqs if s.truncated),
        truncated_tokens=sum(s.truncated for s in seqs),
        untrained_sequences=sum(1 for s in seqs if s.truncated and not s.trained),
        tokens_per_epoch=tokens,
        trained_tokens_per_epoch=trained,
        tokens_total=tokens * epochs,
        trained_tokens_total=trained * epochs,
        computed_tokens_total=round(epoch.computed * epochs),
        layout={
            "kind": layout,
            "shared_prefix_tokens": prefix if layout == "shared prefix" else 0,
            "packed_computed_per_epoch": round(packed_computed),
        },
        padding={
            "capacity": capacity,
            "rows_per_micro_batch": ROWS_PER_MICRO_BATCH,
            "unpacked": pad_unpacked,
            "packed": pad_packed,
        },
        flops={
            "total": flops.total,
            "policy": flops.policy,
            "reference": flops.reference,
            "weights_flops_per_param_token": method.flops_per_token[adapter],
            "body_params": shape.body_params,
            "head_params": shape.head_params,
            "adapter_params": 0 if adapter == "full" else shape.adapter_params,
        },
        cpu_gflops_measured=cpu_gflops,
        hardware=[asdict(r) for r in hardware_rows(flops.total, cpu_gflops, settings)],
        gpu_hour_price=settings.gpu_hour_price,
        hosted=hosted_costs(tokens * epochs, model_ref),
        assumptions=assumptions(
            method, adapter, shape, settings, plan, shared_prefix=prefix if layout == "shared prefix" else 0
        ),
    )


def assumptions(
    method: Method, adapter: str, shape: ModelShape, settings: EstimateSettings, plan: Plan, shared_prefix: int = 0
) -> list[str]:
    """The choices behind the numbers, in words, printed with every estimate."""
    if adapter == "full":
        weights = "6 FLOPs per weight per token (forward, input and weight gradients)"
    else:
        weights = (
            "4 FLOPs per frozen weight per token (forward and input gradient), 6 per adapter weight "
            f"(rank {plan.config.lora.r}: {shape.adapter_params:,} weights)"
        )
    notes = [
        f"utilisation (MFU) {settings.utilisation:.0%} of each device's peak; small models reach less on GPUs",
        weights,
        "LM head only on trained tokens; causal attention within each example; packing padding computed",
        "no gradient checkpointing (it would add 2 FLOPs per weight per token)",
    ]
    if shared_prefix:
        notes.append(
            f"the {shared_prefix}-token prompt every example starts with is computed once per packed row of each "
            f"optimizer step ({plan.config.batch_size} examples, rows of {plan.config.micro_batch_tokens} tokens), "
            "as training does"
        )
    extra = ["two sequences per pair"] if FORMATS[method.data_format].sequences == 2 else []
    if method.reference_flops_per_token:
        extra.append("reference log-probs computed once and cached")
    if extra:
        notes.append(f"{method.name.upper()}: " + "; ".join(extra))
    if not shape.head_params:
        notes.append("config.json lacks the usual keys: every weight charged on every token, no attention term")
    return notes


def hardware_rows(flops: float, cpu_gflops: float, settings: EstimateSettings) -> list[HardwareRow]:
    """Time on this CPU (measured rate) and on each GPU (published peak), at the stated utilisation."""
    u = settings.utilisation
    rows = [HardwareRow("this CPU", cpu_gflops / 1000, "measured fp32", u, hours(flops, cpu_gflops * 1e9, u), None)]
    for name, peak in prices.GPU_PEAK_TFLOPS.items():
        h = hours(flops, peak * 1e12, u)
        rows.append(HardwareRow(name, peak, "bf16 dense peak", u, h, h * settings.gpu_hour_price))
    return rows


def hosted_costs(billed_tokens: int, model_ref: str) -> dict:
    """The hosted price table applied to `billed_tokens` (every token in the file × epochs)."""
    rows = [
        HostedRow(
            p.provider,
            p.model,
            p.usd_per_million_training_tokens,
            billed_tokens,
            billed_tokens / 1e6 * p.usd_per_million_training_tokens,
        )
        for p in prices.HOSTED_PRICES
    ]
    return {
        "last_checked": prices.LAST_CHECKED,
        "months_since_checked": months_since(prices.LAST_CHECKED),
        "source": prices.SOURCE,
        "note": f"billed tokens = tokens in the file × epochs, counted with {model_ref}'s tokenizer; "
        "the service counts with its own, so expect some difference",
        "prices": [asdict(r) for r in rows],
    }


def months_since(year_month: str, today: date | None = None) -> int:
    """Whole months from 'YYYY-MM' to today: how stale the price table is."""
    today = today or date.today()
    year, month = map(int, year_month.split("-"))
    return (today.year - year) * 12 + today.month - month
