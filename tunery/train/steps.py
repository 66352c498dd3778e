"""Small steps the training loops share: no base class, each loop still reads top to bottom.

sft.py, dpo.py (and any new method's loop) call these at the same points of an optimizer step:

    epoch, index, chosen = step_examples(step, plan, len(train_set))   # choose the step's examples
    ... forward, loss, backward: the method's own ...
    grad_norm = clip_and_check(trainable, loss, plan, step)             # finite loss and gradient
    learning_rate = optimizer_step(optimizer, scheduler)
    record = train_record(step, plan, epoch, index, elapsed, start, {...})  # one metrics.jsonl line
    stopped = save_or_stop(prepared, plan, step, stop, ...)              # checkpoint; stop on a signal
"""

from __future__ import annotations

import math
from pathlib import Path

from tunery.train import distributed as dist
from tunery.train.modeling import epoch_order
from tunery.train.plan import Plan
from tunery.train.prepare import Prepared, TrainingFailed

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
    prepared: Prepared, plan: Plan, step: int, stop, model, optimizer, scheduler, elapsed: float, progress
) -> Path | None:
    """Checkpoint when one is due, at the end, or when a signal asks to stop.

    Returns the run directory when the loop must return now (a signal arrived before the last
    step), else None. With several processes every rank stops at the same step.
    """
    stopping = dist.any_rank(stop.signal is not None)  # a signal may reach the ranks at different steps
    if step % plan.config.save_every == 0 or stopping or step == plan.total_steps:
        prepared.save(step, model, optimizer, scheduler, elapsed)
    if stopping and step < plan.total_steps:
        if progress is not None:
            progress.close()
        return prepared.interrupted(step, stop.signal or "a signal to another rank")
    return None
