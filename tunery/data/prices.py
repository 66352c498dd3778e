"""Prices `tunery estimate` compares against: hosted fine-tuning per token, self-hosted per GPU-hour.

These are plain numbers, as last checked on the date below, and they go stale: edit this table
when prices change (and update LAST_CHECKED). Nothing else in tunery depends on them.
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
