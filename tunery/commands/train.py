"""`tunery train`: fine-tune a model (SFT or DPO, LoRA or full) from a config file or flags."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Fine-tune a model: supervised (sft), preference (dpo) or reinforcement (rft), with LoRA or full weights."
EXAMPLES = """\
  tunery train --model smollm2-135m-instruct --data train.jsonl --validation valid.jsonl --output runs/my-run
  tunery train --config configs/sft-lora.yaml n_epochs=1 batch_size=8 seed=1
  tunery train --method dpo --data prefs.jsonl --output runs/dpo dpo.beta=0.2
  tunery train --method rft --data prompts.jsonl --validation heldout.jsonl --grader grader.json rft.group_size=4
  tunery train --resume runs/my-run            # continue after Ctrl-C, SIGTERM or a crash
  tunery train --data train.jsonl --dry-run    # the plan, peak memory and time; trains nothing
  tunery train --data train.jsonl --report-to tensorboard,mlflow tracking.project=tickets
  tunery train --config run.yaml --nproc 4     # data-parallel in 4 local processes (GPUs or CPU)
  tunery train --config run.yaml --adapter full distributed.strategy=fsdp --nproc 4   # sharded (FSDP2)

  tunery train --keys                          # every config key: type, default, what it does

  Any config key can be given as key=value (nested: lora.r=8); `tunery train --keys` lists them.
  Ctrl-C / SIGTERM finish the current step, save a checkpoint and exit 0.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--config", type=Path, help="YAML run config")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    parser.add_argument("--model", help="base model: embedded name, hub id, directory or .gguf")
    parser.add_argument("--data", help="training JSONL")
    parser.add_argument("--validation", help="validation JSONL")
    # The methods table imports nothing heavy, so every command's parser may read it.
    from tunery.train.methods import ADAPTERS, METHODS

    parser.add_argument(
        "--method",
        type=method_name,
        choices=list(METHODS),
        help="; ".join(f"{m.name}: {m.title}" for m in METHODS.values()) + " (default: sft)",
    )
    parser.add_argument("--grader", help="rft: grader JSON (an OpenAI grader object) that scores each answer")
    parser.add_argument("--adapter", choices=list(ADAPTERS), help="lora (default) or full fine-tuning")
    parser.add_argument("--output", help="run directory (default runs/<method>-<time>)")
    parser.add_argument("--epochs", metavar="auto|N", help="passes over the data (the config key n_epochs)")
    parser.add_argument(
        "--keys", action="store_true", help="list every config key with its type, default and meaning, and exit"
    )
    parser.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="data-parallel training in N local processes (one per GPU; gloo on CPU); also with --resume",
    )
    parser.add_argument(
        "--report-to",
        metavar="T[,T]",
        help="experiment trackers: tensorboard, mlflow, wandb (comma-separated; each an optional extra)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved plan, the peak memory and the time estimate, then exit: nothing is trained or written",
    )


def method_name(text: str) -> str:
    """`--method`'s value; `lora` (what other tools call it) gets told where LoRA goes."""
    from tunery.train.config import ADAPTERS_NOT_METHODS, METHOD_IS_NOT_AN_ADAPTER

    if text.lower() in ADAPTERS_NOT_METHODS:
        raise argparse.ArgumentTypeError(METHOD_IS_NOT_AN_ADAPTER)
    return text


def run(args: argparse.Namespace) -> int:
    from tunery.data.jsonl import check_data_file
    from tunery.errors import TuneryError
    from tunery.train.config import load_config, merge, nested, parse_overrides

    if args.keys:
        return _print_keys()
    if args.nproc is not None and args.nproc < 1:
        raise TuneryError(f"--nproc must be at least 1, got {args.nproc}")
    if args.resume is not None:
        if args.config or args.overrides or args.data or args.model or args.epochs:
            raise TuneryError("--resume continues a run with its saved config; it takes no other settings")
        config = None
    else:
        flags = {k: getattr(args, k) for k in FLAGS}
        overrides = {k: v for k, v in flags.items() if v is not None}
        if args.epochs is not None:
            overrides["n_epochs"] = parse_overrides([f"n_epochs={args.epochs}"])["n_epochs"]
        overrides = merge(overrides, parse_overrides(args.overrides))
        if args.grader is not None:
            overrides = merge(overrides, nested("rft.grader", args.grader))
        if args.report_to is not None:
            overrides["report_to"] = [name.strip() for name in args.report_to.split(",") if name.strip()]
        if args.config is None and "data" not in overrides:
            raise TuneryError("no training data given", hint="pass --data train.jsonl or --config run.yaml")
        config = load_config(args.config, overrides, source=str(args.config or "command line"))
        for path in (config.data, config.validation):
            if path is not None:  # an I/O error (exit 2) in validate's words, found before torch loads
                check_data_file(path)
    if args.dry_run:
        if config is None:
            raise TuneryError("--dry-run plans a new run", hint="leave out --resume")
        return _dry_run(config)
    if args.nproc is not None and args.nproc > 1:
        return _launch(args, config)
    return _train(config, args.resume)


def _dry_run(config) -> int:
    from tunery.api import dry_run
    from tunery.commands.estimate import human_time
    from tunery.train.report import print_plan

    planned = dry_run(config)
    plan = planned.plan
    facts = {
        "steps": f"{plan.total_steps} ({plan.steps_per_epoch} per epoch)",
        "trained parameters": f"{planned.trained_params:,}",
        "peak memory (estimate)": planned.memory.describe(),
    }
    for device, hours in planned.hours.items():
        facts[f"time on {device} (estimate)"] = human_time(hours)
    print_plan(plan, facts)
    print(f"dry run: {plan.total_steps} steps planned, nothing trained or written")
    return 0


FLAGS = ("model", "data", "validation", "method", "adapter", "output")


def _print_keys() -> int:
    from rich.console import Console
    from rich.table import Table

    from tunery.train.config import config_keys

    table = Table(title="tunery train config keys (YAML, or key=value on the command line)", title_justify="left")
    for column in ("key", "type", "default", "what it does"):
        table.add_column(column, overflow="fold")
    for row in config_keys():
        table.add_row(*row)
    Console().print(table)
    return 0


def _launch(args: argparse.Namespace, config) -> int:
    """Start `--nproc` processes that each run this command without `--nproc` (torchrun's launcher)."""
    from tunery.errors import TuneryError
    from tunery.run import Run
    from tunery.train import distributed
    from tunery.train.methods import METHODS, data_parallel_names
    from tunery.train.prepare import default_output

    if distributed.launched():
        raise TuneryError("--nproc starts its own processes", hint="under torchrun, leave --nproc out")
    method = METHODS[config.method if config is not None else Run(args.resume).config.method]
    if not method.data_parallel:
        raise TuneryError(
            f"--nproc trains --method {data_parallel_names()} only; {method.name} runs in one process",
            hint="drop --nproc",
        )
    if config is None:
        run_dir = args.resume
        argv = ["train", "--resume", str(run_dir)]
    else:
        # Resolved here, once: each worker picking its own timestamped default would split the run.
        run_dir = Path(config.output or default_output(config.method)).resolve()
        argv = ["train", "--output", str(run_dir)]
        for name in ("config", *FLAGS):
            if name != "output" and getattr(args, name) is not None:
                argv += [f"--{name}", str(getattr(args, name))]
        if args.epochs is not None:
            argv += ["--epochs", args.epochs]
        argv += args.overrides
    return distributed.launch(args.nproc, argv, Path(run_dir))


def _train(config, resume_dir: Path | None) -> int:
    from tunery.api import train

    run = train(config, resume=resume_dir)  # checks the data paths before it loads torch
    from tunery.train import distributed

    if distributed.is_main() and run.succeeded:
        print(f"done: {run.path}/final  (metrics in {run.path}/metrics.jsonl)")
    return 0
