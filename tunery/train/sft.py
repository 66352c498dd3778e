"""Supervised fine-tuning (full or LoRA): one explicit loop.

Per optimizer step: take `batch_size` examples, pack them into rows, split the rows into
micro-batches, and for each micro-batch run forward → masked loss → backward. The loss of every
micro-batch is divided by the trained tokens of the *whole step*, so accumulation over any
number of micro-batches gives the gradient of one big batch. Then clip, step, schedule, log.

Data-parallel (`--nproc N`, torchrun): each process takes every N-th of the step's examples, the
trained tokens are counted over all processes before the loss is normalised, and the gradients
are summed after accumulation; so N processes compute the step a single one would. Rank 0 logs
and checkpoints (see tunery/train/distributed.py). With `distributed.strategy=fsdp` the model is
sharded over the processes, which sum the gradients in backward instead; the loop is the same.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from tunery.data.render import Rendered, render_chat
from tunery.train import distributed as dist
from tunery.train.config import RunConfig
from tunery.train.early_stopping import EarlyStopping
from tunery.train.modeling import (
    StopRequest,
    TokenLoss,
    autocast,
    build_model,
    build_optimizer,
    build_scheduler,
    seed_everything,
    step_batches,
)
from tunery.train.plan import Plan
from tunery.train.prepare import Prepared, drop_untrained, finish_run, prepare, start_or_resume
from tunery.train.replay import mix_replay
from tunery.train.report import Progress
from tunery.train.steps import (
    VALID_SUBSET,
    clip_and_check,
    optimizer_step,
    save_or_stop,
    step_examples,
    stop_early,
    train_record,
)


def count_targets(batches: list[dict[str, torch.Tensor]]) -> int:
    return sum(int(b["loss_mask"][:, 1:].sum()) for b in batches)


def step_loss(
    model, batches: list[dict[str, torch.Tensor]], plan: Plan, *, backward: bool, n_targets: int | None = None
) -> tuple[float, float, int]:
    """Forward (and backward) over the micro-batches of one step.

    Args:
        n_targets: the trained tokens to normalise by: those of the whole step on all ranks
            (default: those in `batches`).
    Returns (loss per trained token, token accuracy, trained tokens): sums over `batches` divided
    by `n_targets`, so the ranks' values add up to the step's.
    """
    n_targets = count_targets(batches) if n_targets is None else int(n_targets)
    if n_targets == 0:
        return 0.0, 0.0, 0
    forward = model if isinstance(model, TokenLoss) else TokenLoss(model)
    total_nll, total_correct = 0.0, 0
    for batch in batches:
        with autocast(plan):
            nll, correct = forward(batch)
        if backward:
            (nll / n_targets).backward()  # normalised by the whole step's trained tokens
        total_nll += nll.item()
        total_correct += int(correct)
    return total_nll / n_targets, total_correct / n_targets, n_targets


@torch.no_grad()
def validation_loss(model, examples: list[Rendered], plan: Plan, pad_id: int) -> tuple[float, float]:
    """Token-weighted loss and accuracy over `examples`, in eval mode; each rank takes its share.

    NaN (with a warning) when no example has a trained token: a loss over nothing is no value, not 0.
    """
    if not examples:
        return math.nan, math.nan
    model.eval()
    mine = dist.shard(examples)
    batches = [b for i in range(0, len(mine), 64) for b in step_batches(mine[i : i + 64], plan, pad_id)]
    if plan.config.distributed.strategy == "fsdp":
        batches = dist.same_batch_count(batches)
    (n_targets,) = dist.all_sum(count_targets(batches))
    if n_targets == 0:
        if dist.is_main():
            print(
                f"warning: no validation example has a trained token (max_seq_len={plan.config.max_seq_len} "
                "cuts every answer away); no validation loss is reported. Raise max_seq_len or shorten the prompts.",
                file=sys.stderr,
                flush=True,
            )
        model.train()
        return math.nan, math.nan
    loss, accuracy, _ = step_loss(model, batches, plan, backward=False, n_targets=n_targets)
    model.train()
    return dist.all_sum(loss, accuracy)


def render_all(prepared: Prepared, max_seq_len: int | None) -> tuple[list[Rendered], list[Rendered]]:
    tok = prepared.tokenizer
    train = [render_chat(e, tok, max_seq_len) for e in prepared.train]
    valid = [render_chat(e, tok, max_seq_len) for e in prepared.validation]
    return train, valid


def train(config: RunConfig, *, resume_dir: Path | None = None) -> Path:
    """Run (or resume) supervised fine-tuning and return the run directory.

    Raises:
        TrainingFailed: NaN/inf loss, out of memory, or bad data; status.json says which.
    """
    prepared = prepare(config, resume_dir=resume_dir)
    mix_replay(prepared)  # the base model's own answers, with replay=<fraction>
    run, tok = prepared.run, prepared.tokenizer
    train_set, valid_set = render_all(prepared, None)
    longest = max(len(r.input_ids) for r in train_set)
    plan = prepared.make_plan(longest=longest)
    cfg = plan.config
    train_set, valid_set = render_all(prepared, cfg.max_seq_len)
    if drop_untrained(prepared, train_set, valid_set, trains=lambda r: any(r.loss_mask[1:])):
        plan = prepared.make_plan(longest=longest)  # steps and auto batch size for the examples left
        cfg = plan.config

    seed_everything(cfg.seed)
    torch.set_num_threads(plan.threads)
    sharded = cfg.distributed.strategy == "fsdp"
    model = build_model(plan, prepared.model_dir, device="cpu" if sharded else None)
    forward = TokenLoss(model)  # the step's forward; FSDP's root
    if sharded:
        dist.shard_model(forward)  # onto the GPU a layer at a time: the whole model need only fit in RAM
    optimizer = build_optimizer(model, plan)
    scheduler = build_scheduler(optimizer, plan)
    state = start_or_resume(prepared, plan, model, optimizer, scheduler, facts_model=model)
    step, started = state["step"], time.monotonic()
    elapsed_before = state.get("elapsed_s", 0.0)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not sharded:
        dist.broadcast_parameters(trainable)  # every rank starts from rank 0's weights
    main = dist.is_main()  # only rank 0 writes metrics and prints progress
    watch = EarlyStopping.for_plan(plan, run.read_metrics(), upto=step)  # resumed: replays the passes so far
    early = None

    progress = Progress(plan.total_steps, step, run=run) if main else None
    with StopRequest() as stop:
        while step < plan.total_steps:
            epoch, index, indices = step_examples(step, plan, len(train_set))
            chosen = [train_set[i] for i in indices]
            mine = dist.shard(chosen)  # this rank's share of the step; all of it with one process
            batches = step_batches(mine, plan, tok.pad_id)
            if sharded:
                batches = dist.same_batch_count(batches)

            t0 = time.monotonic()
            (n_targets,) = dist.all_sum(count_targets(batches))  # the whole step's, over all ranks
            loss, accuracy, _ = step_loss(forward, batches, plan, backward=True, n_targets=n_targets)
            if not sharded:  # FSDP summed them already, in backward
                dist.sum_gradients(trainable)
            real_tokens = sum(len(e.input_ids) for e in mine)  # the examples' tokens, no padding
            loss, accuracy, real_tokens = dist.all_sum(loss, accuracy, real_tokens)
            grad_norm = clip_and_check(trainable, loss, plan, step)
            learning_rate = optimizer_step(optimizer, scheduler)
            step += 1

            logged = {
                "train_loss": loss,
                "train_mean_token_accuracy": accuracy,
                "learning_rate": learning_rate,
                "grad_norm": grad_norm,
                # What hosted fine-tuning bills (OpenAI's trained_tokens): every token of the step's
                # examples, prompt included; the loss is taken on the loss_tokens among them.
                "tokens": int(real_tokens),
                "loss_tokens": int(n_targets),
                "tokens_per_second": real_tokens / max(time.monotonic() - t0, 1e-9),
            }
            elapsed = elapsed_before + time.monotonic() - started
            record = train_record(step, plan, epoch, index, elapsed, state["step"], logged)
            if main:
                run.log(record)
                progress.update(step, f"loss {loss:.4f} acc {accuracy:.3f} {record['tokens_per_second']:.0f} tok/s")

            if valid_set and (step % cfg.eval_every == 0 or step == plan.total_steps):
                v_loss, v_acc = validation_loss(forward, valid_set[:VALID_SUBSET], plan, tok.pad_id)
                if main and not math.isnan(v_loss):
                    run.log({"type": "valid", "step": step, "valid_loss": v_loss, "valid_mean_token_accuracy": v_acc})
                    progress.message(f"step {step}: validation loss {v_loss:.4f}, token accuracy {v_acc:.3f}")
                if watch is not None:
                    watch.observe(step, v_loss)  # every rank: the loss is summed over all of them
            stopped = save_or_stop(prepared, plan, step, stop, model, optimizer, scheduler, elapsed, progress, watch)
            if stopped is not None:
                return stopped
            early = stop_early(prepared, plan, watch, step, model, optimizer, progress)
            if early is not None:
                break
    if main:
        progress.close()

    final = {}
    if valid_set:
        v_loss, v_acc = validation_loss(forward, valid_set, plan, tok.pad_id)
        final = {"full_valid_loss": v_loss, "full_valid_mean_token_accuracy": v_acc} if not math.isnan(v_loss) else {}
        if main and final:
            run.log({"type": "full_valid", "step": step, **final})
    return finish_run(prepared, plan, model, final, early_stopping=early)
