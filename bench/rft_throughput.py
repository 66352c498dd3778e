"""Benchmark: tunery's GRPO (tunery train --method rft) against TRL's GRPOTrainer on SmolLM2-135M.

Both sides train in their own pinned subprocess on the same prompts from examples/arithmetic-rft,
with the same settings: LoRA (r16, alpha 32, dropout 0, q/k/v/o/gate/up/down), G completions per
prompt at temperature 1, the same maximum completion length, learning rate (constant), KL
coefficient (beta), prompts per step, one optimizer update per batch of rollouts, fp32, and the
same reward (the example's "last `Answer: N` equals the answer" check: tunery runs the grader JSON
in its python sandbox, TRL the same check as a reward function).

    .venv/bin/python bench/rft_throughput.py                      # 1 warm-up + 3 timed steps each
    .venv/bin/python bench/rft_throughput.py --steps 5 --group-size 4 --max-new-tokens 64

Reported per side: seconds per optimizer step, completion tokens generated per second of step
(rollouts are most of a step), the mean completion length, peak RSS of the child, and the child's
load average. tunery's steps are clocked by watching metrics.jsonl grow, TRL's by a callback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from sides import MetricsClock, child_main, machine, run_side, trl_step_clock, versions

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "examples" / "arithmetic-rft"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ANSWER = re.compile(r"Answer:\s*(-?\d+)")


def run_tunery(spec: dict, side: str) -> dict:
    from tunery.train.config import load_config
    from tunery.train.rft import train

    workdir = Path(spec["workdir"])
    prompts = workdir / "prompts.jsonl"
    lines = (TASK / "prompts.jsonl").read_text().splitlines()[: spec["prompts"]]
    prompts.write_text("\n".join(lines) + "\n")
    total = spec["warmup"] + spec["steps"]
    config = load_config(
        None,
        {
            "model": spec["model"],
            "data": str(prompts),
            "output": str(workdir / "run"),
            "method": "rft",
            "rft": {
                "grader": str(TASK / "grader.json"),
                "group_size": spec["group_size"],
                "max_new_tokens": spec["max_new_tokens"],
                "temperature": 1.0,
                "kl_coef": spec["beta"],
            },
            "batch_size": spec["prompts_per_step"],
            "n_epochs": 100,
            "max_steps": total,
            "learning_rate": spec["learning_rate"],
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
            "lora": {"r": 16, "alpha": 32, "target_modules": LORA_TARGETS},
            "save_every": 10_000,
            "seed": spec["seed"],
            "precision": "fp32",
        },
    )
    clock = MetricsClock(workdir / "run" / "metrics.jsonl")
    clock.start()
    started = time.perf_counter()
    train(config)
    clock.done.set()
    clock.join()
    records = [json.loads(line) for line in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["type"] == "train"]
    ends = [e[0] for e in clock.ends[: len(records)]]
    # metrics.jsonl holds only train records here (no validation file), one line per step
    starts = [started, *ends[:-1]]
    return {
        "step_s": [e - s for s, e in zip(starts, ends, strict=True)],
        "completion_tokens": [
            r["completion_length"] * spec["group_size"] * spec["prompts_per_step"] for r in train_records
        ],
        "mean_reward": [r["reward_mean"] for r in train_records],
        "to_first_step_s": ends[0] - spec["child_started"] if ends else None,
    }


def run_trl(spec: dict, side: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(spec["threads"])
    total = spec["warmup"] + spec["steps"]
    rows = [json.loads(line) for line in (TASK / "prompts.jsonl").read_text().splitlines()[: spec["prompts"]]]
    dataset = Dataset.from_list([{"prompt": r["messages"], "answer": r["answer"]} for r in rows])

    def final_answer(completions, answer, **kwargs):
        rewards = []
        for completion, wanted in zip(completions, answer, strict=True):
            text = completion[0]["content"] if isinstance(completion, list) else completion
            found = ANSWER.findall(text)
            rewards.append(1.0 if found and int(found[-1]) == int(wanted) else 0.0)
        return rewards

    completions_per_step = spec["prompts_per_step"] * spec["group_size"]
    args = GRPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl-out"),
        per_device_train_batch_size=completions_per_step,  # TRL counts completions, not prompts
        gradient_accumulation_steps=1,
        num_generations=spec["group_size"],
        max_completion_length=spec["max_new_tokens"],
        temperature=1.0,
        beta=spec["beta"],
        num_iterations=1,  # one update per batch of rollouts, as tunery
        max_steps=total,
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=spec["seed"],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,  # tunery's CPU setting
        model_init_kwargs={"dtype": torch.float32},
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    clock = trl_step_clock()

    trainer = GRPOTrainer(
        model=spec["model_dir"],
        reward_funcs=final_answer,
        args=args,
        train_dataset=dataset,
        peft_config=lora,
        callbacks=[clock],
    )
    trainer.train()
    logs = clock.logs  # TRL logs the loss, the mean reward and the mean completion length per step
    starts = [clock.began, *clock.ends[:-1]]
    lengths = [entry.get("completions/mean_length") for entry in logs if "completions/mean_length" in entry]
    return {
        "step_s": [e[0] - s[0] for s, e in zip(starts, clock.ends, strict=True)],
        "completion_tokens": [length * completions_per_step for length in lengths[: len(clock.ends)]],
        "mean_reward": [entry.get("reward") for entry in logs if "reward" in entry][: len(clock.ends)],
        "to_first_step_s": clock.ends[0][0] - spec["child_started"],
    }


def run_child(spec: dict, side: str) -> dict:
    return run_tunery(spec, side) if side == "tunery" else run_trl(spec, side)


def summarise(side: str, result: dict, warmup: int) -> dict:
    steps = result["step_s"][warmup:]
    tokens = result["completion_tokens"][warmup : warmup + len(steps)]
    return {
        "side": side,
        "s_per_step": statistics.median(steps),
        "completion_tok_per_s": sum(tokens) / sum(steps),
        "mean_completion_len": sum(tokens) / len(tokens) / result["completions_per_step"] if tokens else 0.0,
        "peak_rss_mib": result["peak_rss_mib"],
        "to_first_step_s": result["to_first_step_s"],
        "load_average": result["load_average"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--sides", default="tunery,trl")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient on both sides")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child[0], Path(args.child[1]), run_child)

    from tunery.models import resolve_model

    spec = {
        "model": args.model,
        "model_dir": str(resolve_model(args.model)),
        "steps": args.steps,
        "warmup": args.warmup,
        "group_size": args.group_size,
        "prompts_per_step": args.prompts_per_step,
        "prompts": args.prompts_per_step * (args.warmup + args.steps),
        "max_new_tokens": args.max_new_tokens,
        "learning_rate": args.learning_rate,
        "beta": args.beta,
        "threads": args.threads,
        "seed": 0,
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="rft-bench-") as tmp:
        for side in args.sides.split(","):
            result = run_side(__file__, side, spec, Path(tmp))
            result["completions_per_step"] = args.group_size * args.prompts_per_step
            rows.append(summarise(side, result, args.warmup))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{date.today()} · {machine()} · {versions()} · load average {os.getloadavg()[0]:.2f}")
    print(
        f"G={args.group_size}, {args.prompts_per_step} prompts/step, max {args.max_new_tokens} new tokens, "
        f"lr {args.learning_rate:g}, beta {args.beta:g}, {args.threads} threads, {args.warmup}+{args.steps} steps\n"
    )
    print("| side | s/step | completion tok/s | mean length | peak RSS MiB | load avg |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['side']} | {r['s_per_step']:.1f} | {r['completion_tok_per_s']:.1f} | {r['mean_completion_len']:.1f} "
            f"| {r['peak_rss_mib']:.0f} | {r['load_average']:.1f} |"
        )
    if len(rows) == 2:
        a, b = rows
        print(
            f"\n{a['side']}/{b['side']}: speed {b['s_per_step'] / a['s_per_step']:.2f}x, "
            f"memory {a['peak_rss_mib'] / b['peak_rss_mib']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
