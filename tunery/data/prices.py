"""The reference numbers behind `tunery estimate`'s time and cost: prices and GPU peak rates.

Plain, editable numbers. Prices are as last checked on the date below and go stale: edit the
table when they change (and update LAST_CHECKED). Kept apart from the estimate's code, and free
of imports, so the CLI can show these defaults in `--help` without loading anything.
"""

from __future__ import annotations

from dataclasses import dataclass

# The date these prices were last compared with the source. It is printed next to every cost.
LAST_CHECKED = "2025-08"
SOURCE = "https://openai.com/api/pricing/ (fine-tuning, training price)"


@dataclass(frozen=True)
class HostedPrice:
    """What a hosted service charges to fine-tune one of its models.

    OpenAI bills every token in the training file (prompts included, not only the trained
    answers) once per epoch, counted with its own tokenizer.
    """

    provider: str
    model: str
    usd_per_million_training_tokens: float


HOSTED_PRICES: tuple[HostedPrice, ...] = (
    HostedPrice("OpenAI", "gpt-4.1-nano", 1.50),
    HostedPrice("OpenAI", "gpt-4o-mini", 3.00),
    HostedPrice("OpenAI", "gpt-4.1-mini", 5.00),
    HostedPrice("OpenAI", "gpt-4.1", 25.00),
    HostedPrice("OpenAI", "gpt-4o", 25.00),
)

# A round on-demand cloud price for one data-centre GPU, used when --gpu-hour-price is not given.
# Real prices vary several-fold by provider, GPU and commitment; pass your own.
DEFAULT_GPU_HOUR_PRICE = 2.00

# Dense bf16 tensor-core peaks from the vendor data sheets (SXM parts, without sparsity), TFLOP/s.
GPU_PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0, "H200": 989.0}

# Model FLOPs utilisation assumed for every device: the share of the peak a training step reaches.
# ~40 % is typical of well-tuned training of large models on GPUs; a 135M model reaches less on a
# GPU (its matmuls are too small to fill the chip). On this 2-core CPU, LoRA steps of SmolLM2 ran
# at 30-38 % of the concurrently measured fp32 matmul rate.
DEFAULT_UTILISATION = 0.40
