"""Evaluate one model (a base, or a base plus an adapter) on held-out examples.

The steps are the same for every system `compare` runs, so they live in `evaluate_items`:
generate every answer (batched, greedy, grouped by prompt length), grade them, compute the loss of
the references, and put each metric with its bootstrap interval into an `EvalReport`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tunery.eval.heldout import HeldoutExample, default_max_new_tokens, load_heldout
from tunery.eval.report import EvalReport, ExampleResult, LossSummary, Score
from tunery.eval.response_format import ResponseFormat, load_response_format
from tunery.eval.stats import bootstrap_ci
from tunery.eval.target import TUNED, attach_tuned, base_model_dir, find_tuned
from tunery.graders import Grader, resolve_graders
from tunery.graders.regex import is_regex_reference

Log = Callable[[str], None]
# progress(what, done, total): `what` answers of `total` generated so far ("tuned: 40/100").
ProgressFn = Callable[[str, int, int], None]
# Prompts in a batch share their prefix (see tunery.inference), and decoding costs about the same
# per step for 16 rows as for 8 on a CPU, so bigger batches are faster until memory says stop.
DEFAULT_BATCH_SIZE = 16


def resolve_device(device: str) -> str:
    """`auto` → cuda when a GPU is visible, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def reference_budget(generator, items: Sequence[HeldoutExample]) -> int:
    """The default max_new_tokens for these references (see `default_max_new_tokens`)."""
    return default_max_new_tokens([generator.tokenizer.count(item.reference) for item in items])


def evaluate_items(
    generator,
    items: Sequence[HeldoutExample],
    graders: Sequence[Grader],
    *,
    system: str,
    model: str,
    data: str,
    adapter: str | None = None,
    adapter_label: str | None = None,
    skipped: dict[str, str] | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    with_loss: bool = True,
    log: Log | None = None,
    response_format: ResponseFormat | None = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Generate, grade and score one system on `items` (whose prompts are already final).

    Args:
        generator: a loaded `tunery.inference.Generator`.
        adapter: the generator's adapter to use, or None for its base model.
        model, data, adapter_label: how the report names what was evaluated.
        response_format: constrain every answer to it, as the server does.
    """
    from tunery.eval.loss import reference_losses

    started = time.perf_counter()
    max_new_tokens = max_new_tokens or reference_budget(generator, items)
    say = log or (lambda message: None)
    constrained = f", constrained to {response_format.path}" if response_format else ""
    say(
        f"{system}: generating {len(items)} answers (max {max_new_tokens} new tokens, batches of {batch_size}"
        f"{constrained})"
    )
    if progress is not None:
        progress(system, 0, len(items))
    completions = generator.generate(
        [item.prompt for item in items],
        adapter=adapter,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        tools=[item.tools for item in items],
        grammar=response_format.grammar if response_format else None,
        on_progress=(lambda done, total: progress(system, done, total)) if progress else None,
    )
    outputs = [c.text.strip() for c in completions]
    prompts = [item.prompt for item in items]
    references = [item.reference for item in items]
    scores = {
        g.name: g.score_items([item.item or {} for item in items], outputs)
        if g.score_items
        else g.score(prompts, outputs, references)
        for g in graders
    }

    losses = [None] * len(items)
    # A /PATTERN/ reference is no text to score a loss on (regex.py); everything else is.
    # An RFT prompt has no reference at all.
    scored = [
        i
        for i, item in enumerate(items)
        if item.reference and not ("regex" in scores and is_regex_reference(item.reference))
    ]
    if with_loss and scored:
        say(f"{system}: loss on {len(scored)} references")
        with generator.use_adapter(adapter):
            found = reference_losses(
                generator.model,
                generator.tokenizer,
                [items[i] for i in scored],
                batch_size=batch_size,
                device=generator.device,
            )
        for i, value in zip(scored, found, strict=True):
            losses[i] = value

    examples = [
        ExampleResult(
            where=item.where,
            prompt=item.prompt,
            reference=item.reference,
            output=outputs[i],
            scores={name: values[i] for name, values in scores.items()},
            loss=losses[i].mean if losses[i] else None,
            prompt_tokens=completions[i].prompt_tokens,
            output_tokens=len(completions[i].token_ids),
            finish_reason=completions[i].finish_reason,
        )
        for i, item in enumerate(items)
    ]
    return EvalReport(
        system=system,
        model=model,
        adapter=adapter_label,
        data=data,
        n=len(items),
        graders=[g.name for g in graders],
        skipped=dict(skipped or {}),
        metrics={name: Score.of(bootstrap_ci(values)) for name, values in scores.items()},
        loss=_loss_summary([value for value in losses if value is not None]),
        max_new_tokens=max_new_tokens,
        prompt_tokens_per_request=_mean([c.prompt_tokens for c in completions]),
        output_tokens_per_request=_mean([len(c.token_ids) for c in completions]),
        hit_length_limit=sum(c.finish_reason == "length" for c in completions),
        response_format=response_format.path if response_format else None,
        seconds=round(time.perf_counter() - started, 2),
        examples=examples,
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _loss_summary(losses) -> LossSummary | None:
    losses = [value for value in losses if value.tokens]
    if not losses:
        return None
    # Per-token mean over all references (each example weighted by its token count), as training reports it.
    interval = bootstrap_ci([value.mean for value in losses], weights=[value.tokens for value in losses])
    return LossSummary(
        loss=interval.estimate,
        low=interval.low,
        high=interval.high,
        perplexity=math.exp(interval.estimate),
        tokens=sum(value.tokens for value in losses),
        examples=len(losses),
    )


def load_generator(model: str | None, tuned_path: str | Path | None, *, device: str = "auto"):
    """The generator and adapter name for one system: the base model, or the tuned model.

    Returns (generator, adapter name or None, model directory, TunedModel or None). A fully
    fine-tuned model is loaded on its own; an adapter is attached to its base.
    """
    from tunery.inference import Generator

    tuned = find_tuned(tuned_path) if tuned_path else None
    device = resolve_device(device)
    base = (
        None if tuned is not None and tuned.kind == "full" else Generator(base_model_dir(model, tuned), device=device)
    )
    if tuned is None:
        return base, None, base.model_dir, None
    generator, adapter = attach_tuned(base, tuned, device=device)
    return generator, adapter, generator.model_dir, tuned


def evaluate(
    data: str | Path | Sequence[HeldoutExample],
    *,
    model: str | None = None,
    adapter: str | Path | None = None,
    graders: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int | None = None,
    with_loss: bool = True,
    device: str = "auto",
    log: Log | None = None,
    response_format: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Evaluate a model, or a model plus a fine-tuned adapter, on held-out examples.

    Args:
        data: a held-out JSONL file (chat or preference), or items from `load_heldout`.
        model: the base model reference; may be omitted when `adapter` records its base.
        adapter: a run directory (its final/ is used), an adapter directory, or a fully
            fine-tuned model directory.
        graders: grader names or `module:function` specs; None chooses from the references.
        max_new_tokens: None derives it from the longest reference.
        response_format: a JSON schema or OpenAI response_format file; the answers are constrained to
            it, and the report's `without_format` keeps the metrics of unconstrained answers beside them.

    Raises:
        TuneryError: bad data, unknown or unfitting graders, or models that cannot be found.
    """
    from tunery.graders import is_object_spec

    prompts_allowed = any(is_object_spec(name) for name in graders or [])
    items = list(data) if not isinstance(data, (str, Path)) else load_heldout(data, prompts_allowed=prompts_allowed)
    fmt = load_response_format(response_format) if response_format is not None else None
    chosen, skipped = resolve_graders(graders, [i.reference for i in items], [i.where for i in items])
    generator, adapter_name, base, tuned = load_generator(model, adapter, device=device)
    common = dict(
        system=TUNED if tuned else "model",
        model=str(model or base),
        data=str(data) if isinstance(data, (str, Path)) else "(items)",
        adapter=adapter_name,
        adapter_label=str(tuned.path) if tuned else None,
        skipped=skipped,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        log=log,
        progress=progress,
    )
    report = evaluate_items(generator, items, chosen, with_loss=with_loss, **common)
    if fmt is None:
        return report
    # The loss scores the references, not the answers: the same with or without the format.
    constrained = evaluate_items(generator, items, chosen, with_loss=False, response_format=fmt, **common)
    return constrained.model_copy(update={"loss": report.loss, "without_format": report.metrics})
