"""The `auto` recipe: turn every "auto" in a RunConfig into a concrete value, with a reason.

The recipe targets small tasks (hundreds to thousands of examples) on small models, where the
failure modes are too few optimizer steps and too timid a learning rate:

* epochs: OpenAI's rule (3, clamped so examples × epochs lies in [100, 25 000]);
* batch size: about n/40 examples, a power of two in [4, 32], so that a few hundred examples
  still give ~100 optimizer steps over the run;
* learning rate: each method's base rate per adapter, from its entry in tunery/train/methods.py
  (SFT: LoRA 1e-3, full fine-tuning 2e-5; DPO 10× lower); `learning_rate_multiplier` scales it;
* LoRA: rank 16, alpha 32 (scale 2), on every linear layer of the decoder (not the LM head), read
  from the model itself as peft's `all-linear` does: adapting all projections beats attention-only
  at the same rank (QLoRA, Dettmers et al. 2023, §4), and fused ones (Phi-3's `qkv_proj`) are
  projections too;
* cosine decay to zero after 5 % linear warmup;
* early stopping with a validation file (SFT, DPO): stop after 3 validation passes (of about 10)
  without a lower loss and publish the best step, since easy tasks stop improving long before the
  last epoch (docs/training.md);
* device and precision per machine: bf16 autocast with fp32 master weights where the hardware computes
  bf16 natively (GPUs that support it; CPUs with AVX512-BF16 or AMX, 1.3-1.6x faster there), fp32
  elsewhere (emulated bf16 is slower than fp32); no gradient checkpointing on CPU (checkpointing only
  adds recompute where memory is ample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tunery.hardware import cpu_threads
from tunery.train.config import RunConfig
from tunery.train.methods import METHODS

# Why each DPO setting has its default; printed with the resolved config when the user left it alone.
# The measurements are on the bundled examples/signoff-prefs task (docs/dpo.md).
DPO_DEFAULT_REASONS = {
    "beta": "the DPO paper's value (Rafailov et al. 2023): a moderate pull towards the reference",
    "loss": "sigmoid DPO, the paper's loss; ipo and simpo are opt-in variants",
    "simpo_gamma": "SimPO's target margin (Meng et al. 2024); used only with loss=simpo",
    "cache_reference": "the reference never changes, so its log-probs are computed once and cached",
    "nll_weight": "RPO (Pang et al. 2024): plain DPO ranked the pairs but changed 0 of 40 greedy answers "
    "on signoff-prefs (17 of 40 broke at 3x the rate); with the chosen answer's NLL, 40 of 40 changed, intact",
}
# Validation passes without a lower loss before early stopping ends a run (about 10 passes per run).
EARLY_STOPPING_PATIENCE = 3
# Logits a frozen LM head computes at once (losses.frozen_head_nll_sum): 8M fp32 values, 32 MiB,
# ~170 positions of a 49k vocabulary. Enough rows that each chunk's GEMMs run at full speed.
HEAD_CHUNK_ELEMENTS = 1 << 23
RFT_GROUP_SIZE, RFT_GROUP_SIZE_CPU = 8, 4
RFT_MAX_NEW_TOKENS, RFT_MAX_NEW_TOKENS_CPU = 128, 32
RFT_EVAL_SAMPLES = 100
# Llama's linear layers: the auto targets when the caller does not pass the model's own.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def auto_epochs(n_examples: int) -> int:
    """Epochs under OpenAI's `n_epochs="auto"`: 3, moved so examples × epochs lands near [100, 25000].

    This is the rule of OpenAI's data-preparation cookbook, floor division included: when
    n × 3 is below 100 it takes `100 // n` epochs (at most 25), above 25,000 `25000 // n` (at
    least 1). So 30 examples give 3 epochs (90 < 100), exactly as OpenAI would pick.

    Raises:
        ValueError: n_examples < 1 (there is nothing to train on).
    """
    if n_examples < 1:
        raise ValueError(f"auto_epochs needs at least one example, got {n_examples}")
    target, low, high = 3, 100, 25_000
    if n_examples * target < low:
        return min(25, low // n_examples)
    if n_examples * target > high:
        return max(1, high // n_examples)
    return target


DEFAULT_CONTEXT = 2048  # what max_seq_len=auto caps at when the model states no context length


def auto_max_seq_len(longest: int, context_length: int | None) -> int:
    """The longest example rounded up to a multiple of 64 (at least 64), at most the model's context."""
    return min(context_length or DEFAULT_CONTEXT, max(64, math.ceil(longest / 64) * 64))


def auto_batch_size(n_examples: int) -> int:
    return int(min(32, max(4, 2 ** round(math.log2(max(n_examples, 1) / 40)))))


@dataclass
class Plan:
    """A fully resolved config plus the facts derived from the data and the machine."""

    config: RunConfig
    reasons: dict[str, str] = field(default_factory=dict)
    steps_per_epoch: int = 0
    total_steps: int = 0
    warmup_steps: int = 0
    threads: int = 1


def resolve(
    config: RunConfig,
    *,
    n_examples: int,
    longest: int,
    context_length: int | None,
    cuda_available: bool,
    bf16_supported: bool,
    linear_layers: list[str] | None = None,
) -> Plan:
    """Resolve every "auto" field. Values the user set are kept exactly as given.

    Args:
        linear_layers: the model's decoder linear layers (`models.decoder_linear_layers`), the
            auto LoRA targets; None means Llama's names.
    """
    why: dict[str, str] = {}
    values: dict = {}

    def pick(name: str, value, reason: str):
        values[name] = value
        why[name] = reason

    device = config.device
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
        pick("device", device, "a CUDA device is available" if cuda_available else "no CUDA device")
    if config.precision == "auto":
        if bf16_supported:
            where = "a GPU that supports it" if device == "cuda" else "this CPU's native bf16 (AVX512-BF16/AMX)"
            pick("precision", "bf16", f"bf16 autocast on {where}; fp32 master weights")
        elif device == "cuda":
            pick("precision", "fp32", "this GPU has no bf16")
        else:
            pick("precision", "fp32", "this CPU has no native bf16 (AVX512-BF16/AMX): emulated bf16 is slower")

    max_seq_len = config.max_seq_len
    if max_seq_len == "auto":
        cap = context_length or DEFAULT_CONTEXT
        max_seq_len = auto_max_seq_len(longest, context_length)
        pick(
            "max_seq_len",
            max_seq_len,
            f"longest example ({longest} tokens) rounded up to 64, at most the context ({cap})",
        )
    if config.gradient_checkpointing == "auto":
        on = device == "cuda" and max_seq_len >= 2048
        pick("gradient_checkpointing", on, "long sequences on GPU" if on else "not worth the recompute here")
    if config.compile == "auto":
        pick("compile", False, "compile time does not pay back on short runs")
    if config.micro_batch_tokens == "auto":
        # On CPU, small micro-batches cost no throughput and keep padding and live memory low
        # (bench/train_throughput.py: 1024 vs 4096 tokens gave +32 % tokens/CPU-s at 0.68× peak RSS).
        tokens = 16384 if device == "cuda" else 1024
        pick("micro_batch_tokens", max(tokens, max_seq_len), f"{'GPU' if device == 'cuda' else 'CPU'} default")

    n_epochs = config.n_epochs
    if n_epochs == "auto":
        n_epochs = auto_epochs(n_examples)
        pick("n_epochs", n_epochs, f"OpenAI's rule for {n_examples} examples")
    method = METHODS[config.method]
    batch_size = config.batch_size
    if batch_size == "auto" and method.batch_size:
        batch_size = min(method.batch_size, max(1, n_examples))
        pick("batch_size", batch_size, method.batch_size_reason)
    if batch_size == "auto":
        batch_size = min(auto_batch_size(n_examples), max(1, n_examples))
        pick("batch_size", batch_size, "about n/40 examples, a power of two in [4, 32]")
    if config.learning_rate == "auto":
        base = method.base_lr[config.adapter]
        multiplier = config.learning_rate_multiplier or 1.0
        pick(
            "learning_rate",
            base * multiplier,
            f"{config.method}/{config.adapter} base {base:g}" + (f" × {multiplier:g}" if multiplier != 1 else ""),
        )
        values["learning_rate_multiplier"] = None  # folded into learning_rate above

    recipe = method.hook("recipe")
    if recipe is not None:  # the autos of the method's own block, e.g. rft.group_size
        values[method.config_section] = recipe(config, why, device)

    lora = config.lora.model_dump()
    if config.adapter == "lora":
        if lora["r"] == "auto":
            lora["r"] = 16
            why["lora.r"] = "rank 16 is ample for tasks of this size"
        if lora["alpha"] == "auto":
            lora["alpha"] = 2 * lora["r"]
            why["lora.alpha"] = (
                f"2 × r (scale 2√r = {2 * math.sqrt(lora['r']):.3g} with rsLoRA)"
                if lora["use_rslora"]
                else "2 × r (scale 2)"
            )
        if lora["target_modules"] == "auto":
            lora["target_modules"] = list(linear_layers or LORA_TARGETS)
            why["lora.target_modules"] = "every linear layer of the decoder, not the LM head (as peft's all-linear)"
    values["lora"] = lora

    replay, reason = resolve_replay(config)
    if reason is not None:
        pick("replay", replay, reason)

    if config.select == "auto":
        best = config.validation is not None
        pick(
            "select",
            "best" if best else "last",
            "score every checkpoint on the validation file and keep the best"
            if best
            else "no validation file to score checkpoints on",
        )

    if config.early_stopping == "auto":
        on = method.early_stopping and config.validation is not None
        pick(
            "early_stopping",
            EARLY_STOPPING_PATIENCE if on else "off",
            f"after {EARLY_STOPPING_PATIENCE} validation passes without a lower loss, stop; final/ is the best step"
            if on
            else "no validation file to watch"
            if method.early_stopping
            else f"{config.method}'s held-out check is no loss",
        )

    steps_per_epoch = math.ceil(n_examples / batch_size)
    total_steps = steps_per_epoch * n_epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    if config.eval_every == "auto":
        if device == "cpu" and method.evals_per_run_cpu:
            pick("eval_every", max(1, total_steps // method.evals_per_run_cpu), method.evals_reason_cpu)
        else:
            pick("eval_every", max(1, total_steps // method.evals_per_run), method.evals_reason)
    if config.save_every == "auto":
        pick("save_every", max(1, total_steps // 5), "about 5 checkpoints per run")

    sections = {"lora", method.config_section}  # nested blocks: updated field by field
    resolved = config.model_copy(update={k: v for k, v in values.items() if k not in sections})
    for name in sections & set(values):
        resolved = resolved.model_copy(update={name: getattr(config, name).model_copy(update=values[name])})
    resolved = RunConfig.model_validate(resolved.model_dump())  # re-check the combined values
    return Plan(
        config=resolved,
        reasons=why,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        threads=cpu_threads(),
    )


# What `replay: auto` picks, and why. Replay would be on by default if it halved forgetting with the
# task's exact match within a point. Measured on the bundled support-ticket task (docs/evaluation.md,
# "Replay, measured"), replay=0.2 more than halved it, but exact match moved +4 tickets of 60 with one
# draw of replay answers and -2 with another: not shown to stay within a point, so opt-in.
REPLAY_AUTO = "none"
REPLAY_AUTO_REASON = (
    "opt-in: on the bundled task replay=0.2 cut forgetting (KL from the base 0.54 → 0.22 nats/token), but "
    "exact match went 0.417 → 0.483 with one draw of replay answers and → 0.383 with another, so it is not "
    "shown to stay within the point auto allows (docs/evaluation.md); set replay=0.2 to mix in the base "
    "model's own answers"
)


def resolve_replay(config: RunConfig) -> tuple[float | str, str | None]:
    """The replay fraction (a float, or "none") and why; the reason is None when the user set it to none."""
    if config.replay == "none":
        return "none", None
    if config.replay == "auto":
        if not METHODS[config.method].replay:
            return (
                "none",
                f"{config.method.upper()} trains on {METHODS[config.method].data_format} data, not chat examples",
            )
        return REPLAY_AUTO, REPLAY_AUTO_REASON
    return config.replay, (
        f"{config.replay:g} × the examples per epoch are the base model's own greedy answers to general prompts "
        "(self-distillation against forgetting; tunery/data/replay.jsonl, apart from the forgetting measure's set)"
    )


def resolve_dpo(config: RunConfig, why: dict[str, str], device: str) -> dict:
    """DPO's block has no "auto" values, but every default the user left alone is printed with its reason."""
    for key in DPO_DEFAULT_REASONS.keys() - config.dpo.model_fields_set:
        why[f"dpo.{key}"] = DPO_DEFAULT_REASONS[key]
    if "reference" not in config.dpo.model_fields_set:
        why["dpo.reference"] = "the model training starts from: " + (
            "the same weights with the adapter off" if config.adapter == "lora" else "a frozen copy of it"
        )
    return config.dpo.model_dump()


def resolve_rft(config: RunConfig, why: dict[str, str], device: str) -> dict:
    """The `auto` recipe for reinforcement fine-tuning (GRPO); each value with its reason.

    Rollouts are most of a step, and far dearer on a CPU, so there the recipe samples fewer and
    shorter answers (G = 4, at most 32 new tokens): a run on a small task takes minutes, not hours
    (docs/rft.md measures one).
    """
    rft = config.rft.model_dump()
    cpu = device == "cpu"
    if rft["group_size"] == "auto":
        multiplier = config.rft.compute_multiplier or 1.0
        base = RFT_GROUP_SIZE_CPU if cpu else RFT_GROUP_SIZE
        rft["group_size"] = max(2, round(base * multiplier))
        why["rft.group_size"] = (
            f"{base} completions per prompt"
            + (
                " on a CPU, where sampling is most of a step: a task the base solves 1 time in 4 still gives "
                "2 groups in 3 a success to learn from"
                if cpu
                else " (TRL's default): a task the base solves 1 time in 8 still gives most groups a success to learn from"
            )
            + (f"; x {multiplier:g} compute_multiplier" if multiplier != 1 else "")
        )
        rft["compute_multiplier"] = None  # folded into group_size
    if rft["max_new_tokens"] == "auto":
        rft["max_new_tokens"] = RFT_MAX_NEW_TOKENS_CPU if cpu else RFT_MAX_NEW_TOKENS
        why["rft.max_new_tokens"] = (
            "a short answer (a label, a number, a sentence): on a CPU every token of the longest answer in a "
            "batch is paid by all of them; longer answers are cut (and graded); raise it for tasks with working"
            if cpu
            else "room for a short working and the answer; longer answers are cut (and graded)"
        )
    if rft["temperature"] == "auto":
        rft["temperature"] = 1.0
        why["rft.temperature"] = "sampling the policy itself, so the policy gradient is unbiased"
    if rft["kl_coef"] == "auto":
        rft["kl_coef"] = 0.0
        why["rft.kl_coef"] = (
            "off: short LoRA runs stay close to the base, and no reference pass is needed "
            "(DAPO, Yu et al. 2025; Dr. GRPO, Liu et al. 2025; TRL's default beta=0)"
        )
    if rft["eval_samples"] == "auto":
        rft["eval_samples"] = RFT_EVAL_SAMPLES
        why["rft.eval_samples"] = f"up to {RFT_EVAL_SAMPLES} held-out prompts per greedy evaluation"
    return rft
