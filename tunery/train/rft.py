"""Reinforcement fine-tuning as GRPO (Shao et al. 2024), scored by an OpenAI grader object: one
explicit loop.

Per optimizer step:
1. take `batch_size` prompts and sample `group_size` (G) completions of each from the current
   policy (the adapter on, temperature 1), all in one batch: the prompts' common beginning (a
   system prompt, few-shot turns) computed once, the rest of each prompt once, and its KV cache
   shared by its G rows (`tunery.inference.generate_tokens`, the server's sampler);
2. grade every completion on a thread pool, so a slow python or model grader never serialises
   the step (`tunery.graders.grading`);
3. group-relative advantages: reward minus the group's mean (`losses.group_advantages`);
4. one policy-gradient step on the completion tokens, the loss summed and divided by the
   step's completion tokens, with an optional KL term to the base model (adapter disabled).

Choices, and why:
- No division by the group's reward std (`rft.scale_rewards=false`): Dr. GRPO (Liu et al. 2025,
  §3.1) shows it biases towards prompts that are almost always or almost never solved.
- Token-level normalisation over the whole step (DAPO, Yu et al. 2025, §3.3): each token weighs
  the same, so a long answer is neither favoured nor diluted, unlike GRPO's per-answer mean.
- One update per batch of rollouts, so the policy that sampled is the policy updated: PPO's ratio
  is exactly 1 and clipping never acts (GRPO with μ = 1, TRL's default `num_iterations=1`). Several
  clipped updates per batch reuse rollouts, which pays when sampling is cheap next to updates; on
  a CPU rollouts are most of the step, and stale samples add variance for little gain.
- KL off by default (`rft.kl_coef=0`): DAPO and Dr. GRPO drop it and TRL defaults to beta=0; a
  short LoRA run stays near the base, and no reference pass is needed. With kl_coef > 0 the
  reference is the base itself, the adapter disabled, as in DPO.

Groups whose G rewards are all equal teach nothing (advantage 0); their fraction is logged. The
sampling RNG is seeded from (seed, step), so a resumed run draws the same completions.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tunery.data.render import Rendered, render_prompt
from tunery.data.rft import RftExample, load_rft
from tunery.inference import generate_tokens
from tunery.train.config import RunConfig
from tunery.train.losses import group_advantages, grpo_token_losses, select_targets
from tunery.train.modeling import (
    StopRequest,
    autocast,
    backbone_and_head,
    build_model,
    build_optimizer,
    build_scheduler,
    epoch_order,
    hidden_states,
    seed_everything,
    step_batches,
)
from tunery.train.plan import Plan
from tunery.train.prepare import TrainingFailed, finish_run, prepare, start_or_resume
from tunery.train.report import Progress

EVAL_BATCH = 16  # held-out prompts per greedy generation batch


def load_data(config: RunConfig) -> tuple[list[RftExample], list[RftExample]]:
    """The training and held-out prompts, checked against the grader's {{item.x}} fields."""
    from tunery.graders.grading import item_fields
    from tunery.graders.objects import load_grader

    fields = item_fields(load_grader(config.rft.grader))
    train = load_rft(config.data, fields)
    validation = load_rft(config.validation, fields) if config.validation else []
    return train, validation


@dataclass
class Rollout:
    prompt: list[int]
    completion: list[int]  # sampled ids, ending in the stop token when the answer stopped
    text: str
    reward: float = 0.0
    error: str | None = None


def sample_groups(
    model, tok, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float
) -> list[Rollout]:
    """`n` completions of each prompt from the current policy, in one batch; the prompts' common
    prefix is run once, each prompt once, and its KV cache shared by its n rows
    (`tunery.inference.generate_tokens`)."""
    rows = generate_tokens(
        model, tok, prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, device=str(model.device)
    )
    return [
        Rollout(prompts[k // n], ids, tok.decode([t for t in ids if t not in tok.stop_ids]))
        for k, ids in enumerate(rows)
    ]


def rollout_sequences(rollouts: list[Rollout], max_seq_len: int | None) -> list[Rendered]:
    """Prompt + completion, with only the completion trained (what the policy chose)."""
    out = []
    for r in rollouts:
        ids = r.prompt + r.completion
        mask = [0] * len(r.prompt) + [1] * len(r.completion)
        if max_seq_len and len(ids) > max_seq_len:
            ids, mask = ids[:max_seq_len], mask[:max_seq_len]
        out.append(Rendered(input_ids=ids, loss_mask=mask))
    return out


def token_logps(model, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the batch's trained tokens and the sequence each belongs to, under the
    distribution the rollouts were sampled from: the logits divided by the sampling temperature
    (as TRL's GRPOTrainer and verl do), so the gradient is the policy gradient of that policy."""
    _, head = backbone_and_head(model)
    hidden = hidden_states(model, batch)
    rows, targets = select_targets(hidden, batch["input_ids"], batch["loss_mask"])
    logits = head(rows).float() / temperature
    logps = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    segment = batch["segments"][:, 1:][batch["loss_mask"][:, 1:].bool()]
    return logps, segment


def policy_step(model, batches, advantages: torch.Tensor, n_tokens: int, plan: Plan) -> dict:
    """Forward, loss and backward over one step's rollouts; the loss divided by all their tokens."""
    kl_coef, temperature = plan.config.rft.kl_coef, plan.config.rft.temperature
    total_loss, total_kl = 0.0, 0.0
    for batch in batches:
        ref_logps = None
        if kl_coef > 0:
            with torch.no_grad(), model.disable_adapter(), autocast(plan):
                ref_logps, _ = token_logps(model, batch, temperature)
        with autocast(plan):
            logps, segment = token_logps(model, batch, temperature)
            losses, kl = grpo_token_losses(logps, advantages[segment], ref_logps, kl_coef)
        (losses.sum() / n_tokens).backward()
        total_loss += losses.sum().item()
        total_kl += kl.sum().item()
    return {"loss": total_loss / n_tokens, "kl": total_kl / n_tokens}


@torch.no_grad()
def held_out_pass_rate(model, tok, examples: list[RftExample], grading, plan: Plan) -> dict:
    """Greedy answers to the held-out prompts, graded: pass rate and mean reward."""
    cfg = plan.config.rft
    model.eval()
    prompts = [render_prompt(e.prompt(), tok, tools=e.tools) for e in examples]
    texts = []
    for start in range(0, len(prompts), EVAL_BATCH):
        rows = generate_tokens(
            model, tok, prompts[start : start + EVAL_BATCH], max_new_tokens=cfg.max_new_tokens, device=str(model.device)
        )
        texts += [tok.decode([t for t in ids if t not in tok.stop_ids]) for ids in rows]
    model.train()
    results = grading.grade_many(texts, [e.item for e in examples])
    threshold = pass_threshold(plan, grading)
    rewards = [r.reward for r in results]
    return {
        "valid_mean_reward": sum(rewards) / len(rewards),
        "valid_pass_rate": sum(r >= threshold for r in rewards) / len(rewards),
        "valid_grader_errors": sum(not r.ok for r in results),
        "valid_samples": len(rewards),
        # per prompt, in file order: a paired bootstrap of the margin over the base needs them
        "valid_passed": [int(r >= threshold) for r in rewards],
    }


def pass_threshold(plan: Plan, grading) -> float:
    from tunery.graders.grading import pass_threshold as grader_threshold

    chosen = plan.config.rft.pass_threshold
    return grader_threshold(grading.grader) if chosen is None else chosen


def train(config: RunConfig, *, resume_dir: Path | None = None) -> Path:
    """Run (or resume) reinforcement fine-tuning and return the run directory.

    Raises:
        TrainingFailed: bad data or grader, or a loss or gradient that is not finite.
    """
    from tunery.graders.grading import Grading
    from tunery.graders.objects import load_grader

    prepared = prepare(config, resume_dir=resume_dir)
    run, tok = prepared.run, prepared.tokenizer
    prompts = [render_prompt(e.prompt(), tok, tools=e.tools) for e in prepared.train]
    plan = prepared.make_plan(longest=max(len(p) for p in prompts) + 128)
    cfg, rft = plan.config, plan.config.rft
    held_out = prepared.validation[: rft.eval_samples]

    seed_everything(cfg.seed)
    torch.set_num_threads(plan.threads)
    model = build_model(plan, prepared.model_dir)
    if rft.kl_coef > 0 and cfg.adapter == "full":
        raise TrainingFailed("config", "rft.kl_coef > 0 needs the base as reference: use adapter=lora")
    optimizer = build_optimizer(model, plan)
    scheduler = build_scheduler(optimizer, plan)
    state = start_or_resume(prepared, plan, model, optimizer, scheduler, facts_model=model)
    step, started, elapsed_before = state["step"], time.monotonic(), state.get("elapsed_s", 0.0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()

    grading = Grading(load_grader(cfg.rft.grader), workers=rft.grader_workers)
    with contextlib.closing(grading):
        grading.check()
        threshold = pass_threshold(plan, grading)
        if held_out and step == 0:
            base = held_out_pass_rate(model, tok, held_out, grading, plan)
            run.log({"type": "valid", "step": 0, **base})
            print(f"step 0 (base model): held-out pass rate {base['valid_pass_rate']:.3f}", flush=True)
        progress = Progress(plan.total_steps, step)
        with StopRequest() as stop:
            while step < plan.total_steps:
                epoch, index = divmod(step, plan.steps_per_epoch)
                order = epoch_order(len(prompts), cfg.seed, epoch)
                chosen = order[index * cfg.batch_size : (index + 1) * cfg.batch_size]

                # 1. Rollouts, from a generator seeded by (seed, step): the same after a resume.
                t0 = time.monotonic()
                torch.manual_seed(cfg.seed * 1_000_003 + step)
                model.eval()
                rollouts = sample_groups(
                    model, tok, [prompts[i] for i in chosen], rft.group_size, rft.max_new_tokens, rft.temperature
                )
                model.train()
                t_rollout = time.monotonic() - t0

                # 2. Grades, concurrently.
                items = [prepared.train[i].item for i in chosen for _ in range(rft.group_size)]
                results = grading.grade_many([r.text for r in rollouts], items)
                t_grade = time.monotonic() - t0 - t_rollout
                rewards = torch.tensor([g.reward for g in results], dtype=torch.float32).view(len(chosen), -1)

                # 3. Group-relative advantages.
                advantages = group_advantages(rewards, scale=rft.scale_rewards).flatten()
                zero_variance = float((rewards.std(dim=1) == 0).float().mean()) if rft.group_size > 1 else 1.0

                # 4. One policy-gradient step over every completion token of the step. Without a KL
                # term an answer whose advantage is 0 adds exactly 0 to the gradient, so only the
                # others are run forward and backward (a step whose groups all tied runs none); the
                # loss is still divided by all the step's tokens. AdamW then steps on zero gradients
                # where nothing ran, as it would after a backward: its moments decay, its count goes on.
                sequences = rollout_sequences(rollouts, cfg.max_seq_len)
                n_tokens = sum(s.trained_tokens for s in sequences)
                learned = [i for i, a in enumerate(advantages.tolist()) if a != 0 or rft.kl_coef > 0]
                metrics = {"loss": 0.0, "kl": 0.0}
                if n_tokens and learned:
                    batches = step_batches([sequences[i] for i in learned], plan, tok.pad_id)
                    metrics = policy_step(model, batches, advantages[learned].to(cfg.device), n_tokens, plan)
                for p in trainable:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm or float("inf")).item()
                if not (math.isfinite(metrics["loss"]) and math.isfinite(grad_norm)):
                    raise TrainingFailed(
                        "nan_loss",
                        f"step {step + 1}: the loss or gradient norm is not finite (loss={metrics['loss']}, "
                        f"grad_norm={grad_norm}); the last good checkpoint is kept. Lower the learning rate.",
                        step=step,
                    )
                learning_rate = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1

                elapsed = elapsed_before + time.monotonic() - started
                completion_tokens = sum(len(r.completion) for r in rollouts)
                reward_list = rewards.flatten().tolist()
                record = {
                    "type": "train",
                    "step": step,
                    "total_steps": plan.total_steps,
                    "epoch": epoch + (index + 1) / plan.steps_per_epoch,
                    "train_loss": metrics["loss"],
                    "reward_mean": sum(reward_list) / len(reward_list),
                    "reward_std": float(rewards.flatten().std()) if len(reward_list) > 1 else 0.0,
                    "pass_rate": sum(r >= threshold for r in reward_list) / len(reward_list),
                    "zero_variance_fraction": zero_variance,
                    "kl": metrics["kl"],
                    "completion_length": completion_tokens / len(rollouts),
                    "stopped_fraction": sum(bool(r.completion) and r.completion[-1] in tok.stop_ids for r in rollouts)
                    / len(rollouts),
                    "grader_errors": sum(not g.ok for g in results),
                    "rollout_tokens_per_second": completion_tokens / max(t_rollout, 1e-9),
                    "rollout_s": t_rollout,
                    "grade_s": t_grade,
                    "tokens_per_second": completion_tokens / max(time.monotonic() - t0, 1e-9),
                    "learning_rate": learning_rate,
                    "grad_norm": grad_norm,
                    "elapsed_s": elapsed,
                    "eta_s": elapsed / (step - state["step"]) * (plan.total_steps - step),
                }
                run.log(record)
                progress.update(
                    step,
                    f"reward {record['reward_mean']:.3f} pass {record['pass_rate']:.2f} "
                    f"zero-var {zero_variance:.2f} len {record['completion_length']:.0f}",
                )
                if step == 1 and state["step"] == 0 and record["reward_mean"] == 0 and not any(reward_list):
                    progress.message(no_signal_warning(len(reward_list)))
                errors = [g for g in results if not g.ok]
                if errors:
                    progress.message(
                        f"step {step}: {len(errors)} grader error(s), rewarded 0; first: {errors[0].details}"
                    )

                if held_out and (step % cfg.eval_every == 0 or step == plan.total_steps):
                    valid = held_out_pass_rate(model, tok, held_out, grading, plan)
                    run.log({"type": "valid", "step": step, **valid})
                    progress.message(
                        f"step {step}: held-out pass rate {valid['valid_pass_rate']:.3f}, "
                        f"mean reward {valid['valid_mean_reward']:.3f}"
                    )
                if step % cfg.save_every == 0 or stop.signal or step == plan.total_steps:
                    prepared.save(step, model, optimizer, scheduler, elapsed)
                if stop.signal and step < plan.total_steps:
                    progress.close()
                    return prepared.interrupted(step, stop.signal)
        progress.close()
    return finish_run(prepared, plan, model, {})


def no_signal_warning(n: int) -> str:
    return (
        f"warning: all {n} sampled answers of the first step scored 0. RL only reinforces answers the "
        "model already gives sometimes; if the base never succeeds (check with `tunery grade`), "
        "teach the format first with supervised fine-tuning, or make the grader give partial credit."
    )
