"""Benchmark: tunery's LoRA-DPO against TRL's DPOTrainer on SmolLM2-135M: peak memory and throughput.

Each side trains in its own subprocess (its peak RSS is the child's own ru_maxrss) on the same
preference pairs from examples/signoff-prefs, in the same order: the same LoRA (r16, alpha 32,
dropout 0, q/k/v/o/gate/up/down), sigmoid DPO with the same beta, learning rate, clipping, pairs per
optimizer step, maximum length, threads and fp32 precision, and the same answer tokens scored
(checked token by token in the TRL child). The reference is the base model with the adapter
disabled on every side; no side holds a second copy of the model.

    .venv/bin/python bench/dpo_memory.py                        # 5 sides, 1 warm-up + 4 timed steps each
    .venv/bin/python bench/dpo_memory.py --repeats 2            # interleaved runs, medians
    .venv/bin/python bench/dpo_memory.py --sides tunery,trl-nogc --steps 8

Sides:
  tunery          tunery.train.dpo.train with its defaults: reference log-probs computed once before
                  training (dpo.cache_reference=true), chosen and rejected in one packed forward pass,
                  LM head only at answer positions, no gradient checkpointing.
  tunery-live     the same with dpo.cache_reference=false: a reference forward (adapter disabled) every step.
  trl-default     DPOTrainer + peft_config with TRL's defaults: reference = the adapter disabled (TRL
                  does this by itself for a PEFT model without ref_model), reference forward every step
                  (precompute_ref_log_probs=False), right-padded [chosen; rejected] batch, gradient
                  checkpointing on; fp32 instead of TRL's default bf16 autocast, so precision matches.
  trl-nogc        trl-default with gradient checkpointing off (tunery's CPU setting).
  trl-precompute  trl-nogc with precompute_ref_log_probs=True (TRL's counterpart of tunery's cache).

Reported per side: pairs per second and real tokens per second over the timed steps, real tokens per
CPU-second, positions the policy forward ran per real token (above 1: padding; below 1: a prompt
shared by the step's pairs that tunery runs once), peak RSS, the step-1 loss (log 2 = 0.6931 on every side: the adapter's B
matrices start at zero, so policy = reference) and the step-1 mean answer log-probs of chosen and
rejected (equal when both sides score the same tokens with the same model), the seconds from the
child's start to the end of step 1 (imports, model load, data preparation, any reference precompute)
and the child's whole wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from sides import MetricsClock, child_main, machine, median_row, run_side, trl_step_clock, versions
from train_throughput import LORA_TARGETS, micro_batch_work

DATA = Path(__file__).resolve().parents[1] / "examples" / "signoff-prefs" / "train.jsonl"
SIDES = ["tunery", "tunery-live", "trl-default", "trl-nogc", "trl-precompute"]

# SmolLM2's own chat template, except that a conversation ending in an assistant turn ends at its
# <|im_end|>. The stock template adds a newline after it, which TRL would count as part of the
# answer (its completion is everything after the prompt); tunery renders that newline but does not
# score it. With this template both sides score exactly the same answer tokens.
TRL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' }}"
    "{% if not (loop.last and message['role'] == 'assistant') %}{{ '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Step:
    """One optimizer step, timed from the end of the previous step to the end of this one."""

    wall_s: float
    cpu_s: float
    computed_tokens: int  # positions the policy forward ran, padding included


def pairs_in_order(spec: dict) -> tuple[list, list[dict]]:
    """tunery's rendered pairs and the raw rows, both in tunery's epoch-0 order.

    TRL gets its rows in this order with a sequential sampler, so both sides train on the same
    pairs at every step.
    """
    from tunery.data.formats import load_examples
    from tunery.data.render import ChatTokenizer
    from tunery.train.dpo import render_pairs
    from tunery.train.modeling import epoch_order

    tok = ChatTokenizer.from_dir(Path(spec["model_dir"]))
    examples = load_examples(Path(spec["data"]))
    pairs = render_pairs(examples, tok, spec["max_seq_len"])
    rows = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines()]
    order = epoch_order(len(rows), spec["seed"], 0)
    return [pairs[i] for i in order], [rows[i] for i in order]


def real_length(rendered) -> int:
    """Tokens up to the last scored one: what both sides must run (tunery's rendering also keeps the
    template's newline after the final <|im_end|>, which TRL_TEMPLATE leaves out)."""
    return max(i for i, m in enumerate(rendered.loss_mask) if m) + 1


# ------------------------------------------------------------------------------------- child: tunery


def tunery_config(spec: dict, side: str):
    from tunery.train.config import DpoConfig, LoraConfig, RunConfig

    total = spec["warmup"] + spec["steps"]
    return RunConfig(
        model=spec["model_dir"],
        data=Path(spec["data"]),
        output=Path(spec["workdir"]) / "tunery-run",
        method="dpo",
        adapter="lora",
        lora=LoraConfig(r=spec["r"], alpha=spec["alpha"], dropout=0.0, target_modules=LORA_TARGETS),
        dpo=DpoConfig(beta=spec["beta"], loss="sigmoid", reference="auto", cache_reference=side == "tunery"),
        n_epochs=1,
        batch_size=spec["batch_size"],
        micro_batch_tokens=1024,  # tunery's CPU default, stated explicitly
        learning_rate=spec["learning_rate"],
        lr_scheduler="constant",
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_seq_len=spec["max_seq_len"],
        seed=spec["seed"],
        max_steps=total,
        eval_every=total,
        save_every=total,  # the only checkpoint is written after the last timed step
        keep_checkpoints=1,
        final_eval=False,
        device="cpu",
        precision="fp32",
        gradient_checkpointing=False,
        compile=False,
    )


def run_tunery(spec: dict, side: str) -> dict:
    import torch

    from tunery.data.render import ChatTokenizer
    from tunery.home import tunery_home
    from tunery.train.dpo import pair_batches, pair_groups, train
    from tunery.train.modeling import epoch_order
    from tunery.train.plan import resolve
    from tunery.train.rundir import RunDir

    torch.set_num_threads(spec["threads"])
    config = tunery_config(spec, side)
    clock = MetricsClock(config.output / "metrics.jsonl")
    clock.start()
    run_dir = train(config)
    clock.done.set()
    clock.join()
    if torch.get_num_threads() != spec["threads"]:
        raise RuntimeError(f"tunery trained with {torch.get_num_threads()} threads, not {spec['threads']}")
    records = [r for r in RunDir(run_dir).read_metrics() if r["type"] == "train"]
    total, batch = spec["warmup"] + spec["steps"], spec["batch_size"]
    if len(records) != total or len(clock.ends) < total:
        raise RuntimeError(f"tunery logged {len(records)} steps, expected {total}")

    # Every config value is explicit, so resolving it again gives the plan the run used; the step's
    # micro-batches are rebuilt with the loop's own functions to count the positions it ran.
    pairs, _ = pairs_in_order(spec)
    plan = resolve(
        config, n_examples=len(pairs), longest=1, context_length=None, cuda_available=False, bf16_supported=False
    )
    pad_id = ChatTokenizer.from_dir(Path(spec["model_dir"])).pad_id
    steps, previous = [], None
    for step, end in enumerate(clock.ends[:total]):
        indices = list(range(step * batch, (step + 1) * batch))
        groups = pair_groups(indices, pairs, plan.config.micro_batch_tokens)
        batches = [b for g in groups for b in pair_batches(g, pairs, plan, pad_id)]
        computed = micro_batch_work(batches)["computed_tokens"]
        start = previous or end  # step 1's start is not observed; it is a warm-up
        steps.append(Step(wall_s=end[0] - start[0], cpu_s=end[1] - start[1], computed_tokens=computed))
        previous = end

    logps = None
    if side == "tunery":  # the reference cache holds the summed answer log-probs tunery computed
        cached = next((tunery_home() / "cache" / "dpo-reference").glob("*.pt"))
        sums = torch.load(cached, weights_only=True)["sums"]
        first = epoch_order(len(pairs), spec["seed"], 0)[:batch]
        logps = [sums[first, 0].mean().item(), sums[first, 1].mean().item()]
    return {
        "steps": [asdict(s) for s in steps],
        "first_loss": records[0]["train_loss"],
        "first_logps": logps,
        "to_first_step_s": clock.ends[0][0] - spec["child_started"],
    }


# ---------------------------------------------------------------------------------------- child: TRL


class CountingCollator:
    """Wraps TRL's preference collator and records the positions of each batch it builds."""

    def __init__(self, inner):
        self.inner = inner
        self.computed: list[int] = []

    def __call__(self, examples):
        batch = self.inner(examples)
        self.computed.append(int(batch["input_ids"].numel()))  # [chosen; rejected] rows, right-padded
        return batch


def check_same_tokens(dataset, pairs) -> None:
    """TRL must score exactly tunery's answer tokens: same ids, answer exactly where tunery's mask is 1.

    tunery's rendering keeps the template's newline after the final <|im_end|> (unscored); TRL's
    sequence, with TRL_TEMPLATE, stops before it.
    """
    for i, (row, pair) in enumerate(zip(dataset, pairs, strict=True)):
        for answer, ours in (("chosen_ids", pair[0]), ("rejected_ids", pair[1])):
            ids = list(row["prompt_ids"]) + list(row[answer])
            mask = [0] * len(row["prompt_ids"]) + [1] * len(row[answer])
            n = len(ids)
            if ids != ours.input_ids[:n] or mask != ours.loss_mask[:n] or any(ours.loss_mask[n:]):
                raise RuntimeError(f"pair {i} ({answer}): TRL's tokens or answer mask differ from tunery's")


def run_child(spec: dict, side: str) -> dict:
    return run_tunery(spec, side) if side.startswith("tunery") else run_trl(spec, side)


def run_trl(spec: dict, side: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(spec["threads"])
    total = spec["warmup"] + spec["steps"]
    pairs, rows = pairs_in_order(spec)
    dataset = Dataset.from_list(
        [
            {
                "prompt": r["input"]["messages"],
                "chosen": r["preferred_output"],
                "rejected": r["non_preferred_output"],
            }
            for r in rows
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    tokenizer.chat_template = TRL_TEMPLATE

    args = DPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl-out"),
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        max_steps=total,
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=spec["seed"],
        use_cpu=True,
        bf16=False,  # TRL's default is bf16 autocast, also on CPU; fp32 like tunery
        gradient_checkpointing=side == "trl-default",  # TRL's default is on
        precompute_ref_log_probs=side == "trl-precompute",  # TRL's default is off
        beta=spec["beta"],
        loss_type=["sigmoid"],
        max_length=spec["max_seq_len"],
        model_init_kwargs={"dtype": torch.float32},
        train_sampling_strategy="sequential",  # the same pairs as tunery at every step
        logging_steps=1,  # TRL's default is 10; the step-1 loss and log-probs are the sanity check
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(
        r=spec["r"],
        lora_alpha=spec["alpha"],
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
        bias="none",
    )
    clock = trl_step_clock()
    trainer = DPOTrainer(
        model=spec["model_dir"],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[clock],
    )
    if trainer.ref_model is not None:
        raise RuntimeError(
            "TRL made a reference copy of the model; this benchmark compares adapter-disabled references"
        )
    check_same_tokens(trainer.train_dataset, pairs)
    counting = CountingCollator(trainer.data_collator)
    trainer.data_collator = counting
    trainer.train()

    if len(clock.ends) != total or len(counting.computed) < total:
        raise RuntimeError(f"TRL ran {len(clock.ends)} steps from {len(counting.computed)} batches, expected {total}")
    starts = [clock.began, *clock.ends[:-1]]
    steps = [
        Step(wall_s=end[0] - start[0], cpu_s=end[1] - start[1], computed_tokens=computed)
        for computed, start, end in zip(counting.computed[:total], starts, clock.ends, strict=True)
    ]
    first = clock.logs[0]
    return {
        "steps": [asdict(s) for s in steps],
        "first_loss": first["loss"],
        "first_logps": [first["logps/chosen"], first["logps/rejected"]],
        "to_first_step_s": clock.ends[0][0] - spec["child_started"],
    }


# -------------------------------------------------------------------------------------------- parent


def summarise(side: str, result: dict, warmup: int, real_tokens: list[int], batch_size: int) -> dict:
    timed = [Step(**s) for s in result["steps"][warmup:]]
    wall, cpu = sum(s.wall_s for s in timed), sum(s.cpu_s for s in timed)
    real = sum(real_tokens[warmup : warmup + len(timed)])
    logps = result["first_logps"]
    return {
        "side": side,
        "pairs_per_s": batch_size * len(timed) / wall,
        "tokens_per_s": real / wall,
        "tokens_per_cpu_s": real / cpu,
        "s_per_step": wall / len(timed),
        "positions_per_token": sum(s.computed_tokens for s in timed) / real,
        "peak_rss_mib": result["peak_rss_mib"],
        "first_loss": result["first_loss"],
        "logp_chosen": logps[0] if logps else math.nan,
        "logp_rejected": logps[1] if logps else math.nan,
        "to_first_step_s": result["to_first_step_s"],
        "process_s": result["process_s"],
        "process_cpu_s": result["process_cpu_s"],
        "load_average": result["load_average"],
    }


def markdown(rows: list[dict], settings: dict, data: dict) -> str:
    lines = [
        f"Date {date.today().isoformat()}; {machine()}; {settings['threads']} thread(s) per side; {versions()}.",
        "",
        f"Command: `{settings['command']}`",
        "",
        f"Data: the first {data['pairs']} pairs of examples/signoff-prefs/train.jsonl in tunery's epoch order "
        f"(chosen + rejected {data['mean_pair_tokens']:.0f} tokens per pair on average). "
        f"{settings['batch_size']} pairs per optimizer step, the same pairs at each step on every side; "
        f"beta {settings['beta']}, LoRA r{settings['r']}/alpha {settings['alpha']}, fp32, max length "
        f"{settings['max_seq_len']}; {settings['warmup']} warm-up + {settings['steps']} timed steps; median of "
        f"{settings['repeats']} run(s) per side.",
        "",
        "| side | pairs/s | real tok/s | real tok/CPU-s | s/step | positions/token | peak RSS MiB | step-1 loss "
        "| step-1 logp chosen / rejected | s to step 1 | process s (CPU s) | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        logps = "—" if math.isnan(r["logp_chosen"]) else f"{r['logp_chosen']:.3f} / {r['logp_rejected']:.3f}"
        lines.append(
            f"| {r['side']} | {r['pairs_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['tokens_per_cpu_s']:.0f} | "
            f"{r['s_per_step']:.2f} | {r['positions_per_token']:.2f} | {r['peak_rss_mib']:.0f} | {r['first_loss']:.4f} | "
            f"{logps} | {r['to_first_step_s']:.0f} | {r['process_s']:.0f} ({r['process_cpu_s']:.0f}) | "
            f"{r['load_average']:.1f} |"
        )
    ours = [r for r in rows if r["side"].startswith("tunery")]
    peers = [r for r in rows if not r["side"].startswith("tunery")]
    if ours and peers:
        lines.append("")
    for a in ours:
        for b in peers:
            lines.append(
                f"- {a['side']} vs {b['side']}: peak RSS {a['peak_rss_mib'] / b['peak_rss_mib']:.2f}×, "
                f"pairs/s {a['pairs_per_s'] / b['pairs_per_s']:.2f}×, "
                f"real tokens per CPU-second {a['tokens_per_cpu_s'] / b['tokens_per_cpu_s']:.2f}×."
            )
    bad_loss = {r["side"]: r["first_loss"] for r in rows if abs(r["first_loss"] - math.log(2)) > 1e-4}
    if bad_loss:
        lines.append(f"\nWARNING: step-1 losses are not log 2 = 0.6931: {bad_loss}")
    chosen = [r["logp_chosen"] for r in rows if not math.isnan(r["logp_chosen"])]
    if chosen and max(chosen) - min(chosen) > 1e-3 * abs(min(chosen)):
        lines.append(
            f"\nWARNING: the step-1 log-probs differ between sides ({chosen}): they did not score the same tokens."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step (TRL's default batch)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved; the median is reported")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, from {SIDES}")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta (TRL's and tunery's default)")
    parser.add_argument("--max-seq-len", type=int, default=128, help="per sequence; no pair here is longer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per side, each pinned to that many CPUs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the settings and every run here")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child[0], Path(args.child[1]), run_child)

    from tunery.models import resolve_model

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown or args.steps < 1 or args.warmup < 0 or args.repeats < 1 or args.batch_size < 1:
        parser.error(f"unknown sides {unknown}" if unknown else "--steps, --repeats, --batch-size ≥ 1; --warmup ≥ 0")
    if not 1 <= args.threads <= len(os.sched_getaffinity(0)):
        parser.error(f"--threads must be between 1 and {len(os.sched_getaffinity(0))}")
    model_dir = resolve_model("smollm2-135m-instruct")
    command = "python bench/dpo_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])

    with tempfile.TemporaryDirectory(prefix="tunery-dpo-bench-") as tmp:
        workdir = Path(tmp)
        # Only the pairs the steps use: a reference precompute (tunery's cache, TRL's option) covers
        # the whole file, and should cost what the run needs, not what the example set holds.
        n_pairs = max(10, args.batch_size * (args.warmup + args.steps))  # tunery refuses fewer than 10
        lines = DATA.read_text().splitlines()[:n_pairs]
        (workdir / "train.jsonl").write_text("\n".join(lines) + "\n")
        spec = {
            "model_dir": str(model_dir),
            "data": str(workdir / "train.jsonl"),
            "threads": args.threads,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "steps": args.steps,
            "max_seq_len": args.max_seq_len,
            "beta": args.beta,
            "learning_rate": 1e-4,
            "r": 16,
            "alpha": 32,
            "seed": args.seed,
        }
        pairs, _ = pairs_in_order(spec)
        if any(p.truncated for pair in pairs for p in pair):
            parser.error(f"--max-seq-len {args.max_seq_len} would truncate some pair")
        pair_tokens = [real_length(c) + real_length(r) for c, r in pairs]
        real_tokens = [sum(pair_tokens[i : i + args.batch_size]) for i in range(0, len(pairs), args.batch_size)]
        data = {"pairs": len(pairs), "mean_pair_tokens": statistics.mean(pair_tokens)}
        print(
            f"{machine()}, {args.threads} thread(s) per side, load average {os.getloadavg()[0]:.1f}\n"
            f"data: {len(pairs)} pairs, {data['mean_pair_tokens']:.0f} tokens per pair\n"
            f"each side: {args.warmup} warm-up + {args.steps} timed steps of {args.batch_size} pairs, "
            f"{args.repeats} run(s)",
            flush=True,
        )
        runs: dict[str, list[dict]] = {s: [] for s in sides}
        for repeat in range(args.repeats):
            # alternate the order so that slow drifts in machine load hit every side alike
            for side in sides if repeat % 2 == 0 else reversed(sides):
                row = summarise(
                    side, run_side(__file__, side, spec, workdir), args.warmup, real_tokens, args.batch_size
                )
                runs[side].append(row)
                print(
                    f"  {side} run {repeat + 1}: {row['pairs_per_s']:.2f} pairs/s, {row['tokens_per_s']:.0f} real tok/s "
                    f"({row['tokens_per_cpu_s']:.0f} per CPU-s), step-1 loss {row['first_loss']:.4f}, "
                    f"peak RSS {row['peak_rss_mib']:.0f} MiB, {row['to_first_step_s']:.0f} s to step 1, "
                    f"load {row['load_average']:.1f}, {row['process_s']:.0f} s in all",
                    flush=True,
                )
    settings = {**vars(args), "command": command, "r": spec["r"], "alpha": spec["alpha"]}
    settings.pop("child")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "data": data, "runs": runs}, indent=2, default=str))
    print()
    print(markdown([median_row(rows) for rows in runs.values()], settings, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
