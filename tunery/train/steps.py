"""Small steps the training loops share: no base class, each loop still reads top to bottom.

sft.py, dpo.py (and any new method's loop) call these at the same points of an optimizer step:

    epoch, index, chosen = step_examples(step, plan, len(train_set))   # choose the step's examples
    ... forward, loss, backward: the method's own ...
    grad_norm = clip_and_check(trainable, loss, plan, step)             # finite loss and gradient
    learning_rate = optimizer_step(optimizer, scheduler)
    record = train_record(step, plan, epoch, index, elapsed, start, {...})  # one metrics.jsonl line
    ... validation pass, watch.observe(step, loss) ...                  # early stopping's watch
    stopped = save_or_stop(prepared, plan, step, stop, ..., watch)       # checkpoint; stop on a signal
    early = stop_early(prepared, plan, watch, step, ...)                 # patience spent: best weights back
"""

from __future__ import annotations

import math
from pathlib import Path

from tunery.train import distributed as dist
from tunery.train.early_stopping import EarlyStopping
from tunery.train.modeling import epoch_order
from tunery.train.plan import Plan
from tunery.train.prepare import Prepared, TrainingFailed, restore

VALID_SUBSET = 64  # examples in the periodic validation pass; the full set runs at the end


def step_examples(step: int, plan: Plan, n_examples: int) -> tuple[int, int, list[int]]:
    """(epoch, index of the step in its epoch, indices of the examples of optimizer step `step`).

    Each epoch visits the examples in its own seeded order, so a resumed run takes the same ones.
    """
    epoch, index = divmod(step, plan.steps_per_epoch)
    order = epoch_order(n_examples, plan.config.seed, epoch)
    size = plan.config.batch_size
    return epoch, index, order[index * size : (index + 1) * size]


def clip_and_check(trainable: list, loss: float, plan: Plan, step: int) -> float:
    """Clip the gradient norm (over every rank's shard) and return it.

    Raises:
        TrainingFailed: the loss or the gradient norm is NaN or infinite; the last checkpoint stays.
    """
    grad_norm = dist.clip_gradients(trainable, plan.config.max_grad_norm)
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise TrainingFailed(
            "nan_loss",
            f"step {step + 1}: the {'loss' if not math.isfinite(loss) else 'gradient norm'} is not finite "
            f"(loss={loss}, grad_norm={grad_norm}); the last good checkpoint is kept. "
            "Lower the learning rate or check the data.",
            step=step,
        )
    return grad_norm


def optimizer_step(optimizer, scheduler) -> float:
    """Apply the accumulated gradients and advance the schedule; returns the rate the step used."""
    learning_rate = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return learning_rate


def train_record(step: int, plan: Plan, epoch: int, index: int, elapsed: float, start_step: int, metrics: dict) -> dict:
    """The metrics.jsonl record of finished step `step`: its position, the method's `metrics`, time and ETA."""
    done = step - start_step  # steps this process ran: the ETA ignores time before a resume
    return {
        "type": "train",
        "step": step,
        "total_steps": plan.total_steps,
        "epoch": epoch + (index + 1) / plan.steps_per_epoch,
        **metrics,
        "elapsed_s": elapsed,
        "eta_s": elapsed / done * (plan.total_steps - step) if done > 0 else None,
    }


def save_or_stop(
    prepared: Prepared,
    plan: Plan,
    step: int,
    stop,
    model,
    optimizer,
    scheduler,
    elapsed: float,
    progress,
    watch: EarlyStopping | None = None,
) -> Path | None:
    """Checkpoint when one is due, at the end, when a signal asks to stop, or when early stopping's
    `watch` has just found a new best (final/ may have to be that step).

    Returns the run directory when the loop must return now (a signal arrived before the last
    step), else None. With several processes every rank stops at the same step.
    """
    stopping = dist.any_rank(stop.signal is not None)  # a signal may reach the ranks at different steps
    best = watch.best_step if watch is not None else None
    if step % plan.config.save_every == 0 or stopping or step == plan.total_steps or step == best:
        prepared.save(step, model, optimizer, scheduler, elapsed, protect=best)
    if stopping and step < plan.total_steps:
        if progress is not None:
            progress.close()
        return prepared.interrupted(step, stop.signal or "a signal to another rank")
    return None


def stop_early(
    prepared: Prepared, plan: Plan, watch: EarlyStopping | None, step: int, model, optimizer, progress
) -> dict | None:
    """End the run after `step` if early stopping's patience is spent (never at the last step).

    Loads the best step's checkpoint into `model` (for final/), logs an `early_stop` record and
    prints one line. Returns the stop's summary for `finish_run`, or None to go on.
    """
    if watch is None or not watch.should_stop or step >= plan.total_steps:
        return None
    summary = watch.summary(step, plan.total_steps)
    restore(model, optimizer, prepared.run.checkpoints / f"step-{watch.best_step:06d}")
    if dist.is_main():
        prepared.run.log({"type": "early_stop", "step": step, "early_stopping": summary})
        progress.message(summary["message"])
    return summary
