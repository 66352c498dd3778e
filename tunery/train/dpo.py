"""Preference tuning (DPO, IPO, SimPO) from chosen/rejected pairs: one explicit loop.

Per optimizer step: take `batch_size` pairs, group them into micro-batches that hold whole pairs,
and for each micro-batch run ONE forward pass over chosen and rejected answers together
(packed, per-example attention), sum the answer log-probs per sequence, compute the pair losses
against the reference log-probs, and backward. Each pair's loss is divided by the pairs in the
whole step, so accumulation is exact.

The reference model is the model training starts from: with LoRA, the adapter is disabled for
the reference pass (no second copy in memory); with full fine-tuning, or a reference the user
names (`dpo.reference=PATH`), one frozen model built like the policy. Started from an earlier run
(`--model runs/sft`), that is the earlier run's model (a LoRA run merged into its base once and
cached, tunery.models), so SFT then DPO needs no manual merge. Reference log-probs are by default
computed once up front and cached on disk (keyed by the reference's weights and every pair's
tokens), so the frozen model is freed before training, and later epochs and re-runs skip the
reference forward entirely.

Data-parallel (`--nproc N`, torchrun): each process takes every N-th of the step's pairs, every
pair loss is still divided by the pairs of the whole step, and the gradients and metrics are
summed over the processes; so N processes compute the step a single one would, as SFT's loop does
(tunery/train/sft.py). The reference cache is filled by all processes (each scores its share of
the pairs, then the shares are summed) and written once, by rank 0. Rank 0 logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import torch

from tunery.data.formats import PreferenceExample
from tunery.data.render import ChatTokenizer, Rendered, render_chat
from tunery.home import tunery_home
from tunery.models import weights_hash
from tunery.train import distributed as dist
from tunery.train.config import RunConfig
from tunery.train.early_stopping import EarlyStopping
from tunery.train.losses import (
    chosen_nll,
    dpo_sigmoid_loss,
    ipo_loss,
    select_targets,
    sequence_logps,
    simpo_loss,
)
from tunery.train.modeling import (
    StopRequest,
    autocast,
    backbone_and_head,
    build_frozen_model,
    build_model,
    build_optimizer,
    build_scheduler,
    hidden_states,
    seed_everything,
    step_batches,
)
from tunery.train.plan import Plan
from tunery.train.prepare import drop_untrained, finish_run, prepare, start_or_resume
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

Pair = tuple[Rendered, Rendered]


def render_pairs(examples: list[PreferenceExample], tok: ChatTokenizer, max_seq_len: int | None) -> list[Pair]:
    """Each pair as two conversations sharing the prompt; only the answer is trained in each."""
    return [
        (render_chat(e.as_chat("chosen"), tok, max_seq_len), render_chat(e.as_chat("rejected"), tok, max_seq_len))
        for e in examples
    ]


def pair_groups(indices: list[int], pairs: list[Pair], max_tokens: int) -> list[list[int]]:
    """Split a step's pairs into micro-batches of whole pairs (the loss needs both answers)."""
    groups, current, size = [], [], 0
    for i in indices:
        cost = len(pairs[i][0].input_ids) + len(pairs[i][1].input_ids)
        if current and size + cost > max_tokens:
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += cost
    return groups + [current] if current else groups


def pair_batches(group: list[int], pairs: list[Pair], plan: Plan, pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Chosen answers are sequences 0..k-1, rejected ones k..2k-1, packed (or sharing a prefix) together."""
    sequences = [pairs[i][0] for i in group] + [pairs[i][1] for i in group]
    return step_batches(sequences, plan, pad_id)


def answer_logps(model, batches: list[dict[str, torch.Tensor]], n_sequences: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer log-probs and answer lengths for every sequence in the batches."""
    _, head = backbone_and_head(model)
    sums, counts = 0.0, 0.0
    for batch in batches:
        hidden = hidden_states(model, batch)
        rows, targets = select_targets(hidden, batch["input_ids"], batch["loss_mask"])
        segment = batch["segments"][:, 1:][batch["loss_mask"][:, 1:].bool()]
        s, c = sequence_logps(head(rows), targets, segment, n_sequences)
        sums, counts = sums + s, counts + c
    return sums, counts


def pair_losses(plan: Plan, policy: tuple, reference: tuple | None):
    """The configured preference loss for k pairs. `policy`/`reference`: (sums [2k], counts [2k])."""
    cfg = plan.config.dpo
    sums, counts = policy
    k = sums.shape[0] // 2
    if cfg.loss == "simpo":
        avg = sums / counts
        losses, chosen, rejected = simpo_loss(avg[:k], avg[k:], cfg.beta, cfg.simpo_gamma)
    elif cfg.loss == "ipo":  # IPO compares per-token averages
        ref_sums, ref_counts = reference
        losses, chosen, rejected = ipo_loss(
            sums[:k] / counts[:k],
            sums[k:] / counts[k:],
            ref_sums[:k] / ref_counts[:k],
            ref_sums[k:] / ref_counts[k:],
            cfg.beta,
        )
    else:
        ref_sums, _ = reference
        losses, chosen, rejected = dpo_sigmoid_loss(sums[:k], sums[k:], ref_sums[:k], ref_sums[k:], cfg.beta)
    if cfg.nll_weight:
        losses = losses + chosen_nll(sums[:k], counts[:k], cfg.nll_weight)
    return losses, chosen, rejected


def reference_model(plan: Plan, model_dir: Path):
    """The frozen model that scores the reference log-probs, or None for the policy with its adapter off.

    An explicit `dpo.reference`, or the base for a full fine-tune (whose policy has no adapter to
    switch off). Loaded from disk and built like the policy (tunery/train/modeling.py), never
    copied from it: the copy would be of whatever the policy holds at that moment.
    """
    from tunery.models import resolve_model

    cfg = plan.config
    if not needs_reference(plan):
        return None
    if cfg.dpo.reference not in ("auto", "none"):
        return build_frozen_model(plan, resolve_model(cfg.dpo.reference))
    return build_frozen_model(plan, model_dir) if cfg.adapter == "full" else None


def needs_reference(plan: Plan) -> bool:
    return plan.config.dpo.loss != "simpo" and plan.config.dpo.reference != "none"


def reference_cache_key(plan: Plan, model_dir: Path, pairs: list[Pair]) -> str:
    """What the cached log-probs depend on: the reference's weights, and every pair's tokens and mask.

    The tokens come from the tokenizer, the chat template, the data and `max_seq_len`, so hashing
    them covers all four; the weights are the explicit reference's own when there is one.
    """
    from tunery.models import resolve_model

    cfg = plan.config
    explicit = cfg.dpo.reference not in ("auto", "none")
    digest = hashlib.sha256()
    digest.update(weights_hash(resolve_model(cfg.dpo.reference) if explicit else model_dir).encode())
    digest.update(f"|{cfg.precision}|{cfg.device}|".encode())
    for chosen, rejected in pairs:
        for sequence in (chosen, rejected):
            digest.update(repr((sequence.input_ids, sequence.loss_mask)).encode())
    return digest.hexdigest()[:24]


class Reference:
    """Reference log-probs for a list of pairs: from the cache, a frozen model, or the base with the adapter off.

    With `cache` on, all of them are computed up front and stored under
    $TUNERY_HOME/cache/dpo-reference; the frozen model is then no longer needed and not kept.
    """

    def __init__(self, plan: Plan, policy, frozen, pairs: list[Pair], pad_id: int, *, model_dir: Path, cache: bool):
        self.plan, self.policy, self.frozen, self.pad_id, self.cache = plan, policy, frozen, pad_id, None
        self.cache = self._cached(pairs, reference_cache_key(plan, model_dir, pairs)) if cache else None
        if self.cache is not None:
            self.frozen = None  # freed once the caller drops its reference too

    def _context(self):
        if self.frozen is not None:
            return self.frozen, contextlib.nullcontext()
        return self.policy, self.policy.disable_adapter()

    @torch.no_grad()
    def compute(self, group: list[int], pairs: list[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache is not None:
            sums, counts = self.cache
            index = torch.tensor(group, device=sums.device)
            return torch.cat([sums[index, 0], sums[index, 1]]), torch.cat([counts[index, 0], counts[index, 1]])
        model, context = self._context()
        was_training = model.training
        model.eval()
        with context, autocast(self.plan):
            out = answer_logps(model, pair_batches(group, pairs, self.plan, self.pad_id), 2 * len(group))
        model.train(was_training)
        return out

    def _cached(self, pairs: list[Pair], key: str):
        """All reference log-probs, computed once and stored under $TUNERY_HOME/cache/dpo-reference.

        With several processes each scores its share of the micro-batches and the shares are summed
        (the other rows are exact zeros), so every rank holds the values one process computes, bit
        for bit; rank 0 alone writes the file.
        """
        device = self.plan.config.device
        path = tunery_home() / "cache" / "dpo-reference" / f"{key}.pt"
        if not dist.any_rank(not path.is_file()):  # all ranks load it, or all compute it together
            saved = torch.load(path, weights_only=True)
            return saved["sums"].to(device), saved["counts"].to(device)
        sums = torch.zeros(len(pairs), 2, dtype=torch.float64)
        counts = torch.zeros(len(pairs), 2, dtype=torch.float64)
        for group in dist.shard(pair_groups(list(range(len(pairs))), pairs, self.plan.config.micro_batch_tokens)):
            s, c = self.compute(group, pairs)
            k = len(group)
            sums[group, 0], sums[group, 1] = s[:k].double().cpu(), s[k:].double().cpu()
            counts[group, 0], counts[group, 1] = c[:k].double().cpu(), c[k:].double().cpu()
        dist.sum_tensors(sums, counts)
        if dist.is_main():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            torch.save({"sums": sums, "counts": counts}, tmp)
            tmp.replace(path)
        return sums.to(device), counts.to(device)


def preference_step(
    model, groups, pairs, reference: Reference | None, plan: Plan, pad_id: int, *, backward: bool, n_pairs: int
) -> dict:
    """Forward (and backward) over the micro-batches `groups` of one step.

    Args:
        n_pairs: the pairs to average over: those of the whole step on all ranks.
    Returns the metrics summed over `groups` and divided by `n_pairs`, so the ranks' values add up
    to the step's (`summed`).
    """
    totals = {"loss": 0.0, "chosen": 0.0, "rejected": 0.0, "correct": 0, "logps_chosen": 0.0, "logps_rejected": 0.0}
    for group in groups:
        ref = reference.compute(group, pairs) if reference is not None else None
        with autocast(plan):
            policy = answer_logps(model, pair_batches(group, pairs, plan, pad_id), 2 * len(group))
            losses, chosen, rejected = pair_losses(plan, policy, ref)
        if backward:
            (losses.sum() / n_pairs).backward()  # normalised by the whole step's pairs
        totals["loss"] += losses.sum().item()
        totals["chosen"] += chosen.sum().item()
        totals["rejected"] += rejected.sum().item()
        totals["correct"] += int((chosen > rejected).sum())
        k = len(group)
        totals["logps_chosen"] += policy[0][:k].sum().item()
        totals["logps_rejected"] += policy[0][k:].sum().item()
    return {
        "loss": totals["loss"] / n_pairs,
        "rewards_chosen": totals["chosen"] / n_pairs,
        "rewards_rejected": totals["rejected"] / n_pairs,
        "reward_margin": (totals["chosen"] - totals["rejected"]) / n_pairs,
        "reward_accuracy": totals["correct"] / n_pairs,
        # The policy's own summed answer log-probs (TRL's logps/chosen): where training started from.
        "logps_chosen": totals["logps_chosen"] / n_pairs,
        "logps_rejected": totals["logps_rejected"] / n_pairs,
    }


def summed(metrics: dict) -> dict:
    """The step's metrics from every rank's share of them (the identity with one process)."""
    return dict(zip(metrics, dist.all_sum(*metrics.values()), strict=True))


@torch.no_grad()
def validate(model, pairs: list[Pair], reference: Reference | None, plan: Plan, pad_id: int) -> dict:
    """The metrics averaged over `pairs`, in eval mode; each rank takes its share."""
    model.eval()
    groups = pair_groups(dist.shard(range(len(pairs))), pairs, plan.config.micro_batch_tokens)
    metrics = preference_step(model, groups, pairs, reference, plan, pad_id, backward=False, n_pairs=len(pairs))
    model.train()
    return summed(metrics)


def train(config: RunConfig, *, resume_dir: Path | None = None) -> Path:
    """Run (or resume) preference tuning and return the run directory."""
    prepared = prepare(config, resume_dir=resume_dir)
    run, tok = prepared.run, prepared.tokenizer
    unbounded = render_pairs(prepared.train, tok, None)
    longest = max(max(len(c.input_ids), len(r.input_ids)) for c, r in unbounded)
    plan = prepared.make_plan(longest=longest)
    cfg = plan.config
    train_pairs = render_pairs(prepared.train, tok, cfg.max_seq_len)
    valid_pairs = render_pairs(prepared.validation, tok, cfg.max_seq_len)
    if drop_untrained(
        prepared, train_pairs, valid_pairs, trains=lambda p: any(p[0].loss_mask[1:]) and any(p[1].loss_mask[1:])
    ):
        plan = prepared.make_plan(longest=longest)  # steps and auto batch size for the pairs left
        cfg = plan.config

    seed_everything(cfg.seed)
    torch.set_num_threads(plan.threads)
    model = build_model(plan, prepared.model_dir)
    optimizer = build_optimizer(model, plan)
    scheduler = build_scheduler(optimizer, plan)
    reference = valid_reference = None
    if needs_reference(plan):
        # One frozen model (if any) serves both sets; once both are cached it is dropped here too.
        frozen = reference_model(plan, prepared.model_dir)
        references = [
            Reference(plan, model, frozen, p, tok.pad_id, model_dir=prepared.model_dir, cache=cfg.dpo.cache_reference)
            if p
            else None
            for p in (train_pairs, valid_pairs)
        ]
        del frozen
        reference, valid_reference = references
    state = start_or_resume(prepared, plan, model, optimizer, scheduler, facts_model=model)
    step, started, elapsed_before = state["step"], time.monotonic(), state.get("elapsed_s", 0.0)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    dist.broadcast_parameters(trainable)  # every rank starts from rank 0's weights
    main = dist.is_main()  # only rank 0 writes metrics and prints progress
    watch = EarlyStopping.for_plan(plan, run.read_metrics(), upto=step)  # resumed: replays the passes so far
    early = None

    progress = Progress(plan.total_steps, step, run=run) if main else None
    with StopRequest() as stop:
        while step < plan.total_steps:
            epoch, index, chosen = step_examples(step, plan, len(train_pairs))
            mine = dist.shard(chosen)  # this rank's share of the step; all of it with one process
            groups = pair_groups(mine, train_pairs, cfg.micro_batch_tokens)

            metrics = preference_step(
                model, groups, train_pairs, reference, plan, tok.pad_id, backward=True, n_pairs=len(chosen)
            )
            dist.sum_gradients(trainable)
            metrics = summed(metrics)
            grad_norm = clip_and_check(trainable, metrics["loss"], plan, step)
            learning_rate = optimizer_step(optimizer, scheduler)
            step += 1

            logged = {
                "train_loss": metrics["loss"],
                "train_mean_token_accuracy": metrics["reward_accuracy"],
                **metrics,
                "learning_rate": learning_rate,
                "grad_norm": grad_norm,
                "tokens": sum(len(train_pairs[i][0].input_ids) + len(train_pairs[i][1].input_ids) for i in chosen),
            }
            elapsed = elapsed_before + time.monotonic() - started
            record = train_record(step, plan, epoch, index, elapsed, state["step"], logged)
            if main:
                run.log(record)
                progress.update(
                    step,
                    f"loss {metrics['loss']:.4f} margin {metrics['reward_margin']:.3f} "
                    f"acc {metrics['reward_accuracy']:.2f}",
                )

            if valid_pairs and (step % cfg.eval_every == 0 or step == plan.total_steps):
                v = validate(model, valid_pairs[:VALID_SUBSET], valid_reference, plan, tok.pad_id)
                if main:
                    run.log(
                        {
                            "type": "valid",
                            "step": step,
                            "valid_loss": v["loss"],
                            "valid_mean_token_accuracy": v["reward_accuracy"],
                            **{f"valid_{k}": x for k, x in v.items()},
                        }
                    )
                    progress.message(
                        f"step {step}: validation loss {v['loss']:.4f}, preference accuracy {v['reward_accuracy']:.2f}"
                    )
                if watch is not None:
                    watch.observe(step, v["loss"])  # every rank: the loss is summed over all of them
            stopped = save_or_stop(prepared, plan, step, stop, model, optimizer, scheduler, elapsed, progress, watch)
            if stopped is not None:
                return stopped
            early = stop_early(prepared, plan, watch, step, model, optimizer, progress)
            if early is not None:
                break
    if main:
        progress.close()

    final = {}
    if valid_pairs:
        v = validate(model, valid_pairs, valid_reference, plan, tok.pad_id)
        final = {
            "full_valid_loss": v["loss"],
            "full_valid_mean_token_accuracy": v["reward_accuracy"],
            "full_valid_reward_margin": v["reward_margin"],
        }
        if main:
            run.log({"type": "full_valid", "step": step, **final})
    return finish_run(prepared, plan, model, final, early_stopping=early)
