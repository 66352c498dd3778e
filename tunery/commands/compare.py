"""`tunery compare`: was fine-tuning worth it? Zero-shot and few-shot prompting vs the tuned model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunery.commands.arguments import positive_int, whole_number
from tunery.commands.eval import add_common_options, chosen_graders, progress, quiet_loading

HELP = "Compare the base model (zero-shot, few-shot) with the fine-tuned model on held-out data."
EXAMPLES = """\
  tunery compare --tuned runs/tickets --train train.jsonl --data test.jsonl
  tunery compare --base smollm2-135m-instruct --tuned runs/tickets --train train.jsonl \\
      --data test.jsonl --shots 8 --json
  tunery compare --tuned runs/tickets --train train.jsonl --data test.jsonl --no-forgetting
  tunery compare --checkpoints runs/tickets --data test.jsonl

Few-shot examples are drawn from --train by --seed, never from --data. The verdict compares the
tuned model with the better prompting baseline on --metric, or else on the strictest grader that
separates the systems, with a paired bootstrap interval; the report says which metric decided and
whether the others agree. Forgetting is measured twice: base and tuned answer 240 general-skill
questions (each skill's drop with its interval), and the tuned model's KL from the base is taken on
the base's own answers to 310 general prompts (generated once per base model, then cached).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", help="base model (default: the base the tuned run records)")
    parser.add_argument("--tuned", help="a run directory (final/ is used), an adapter dir, or a full model dir")
    parser.add_argument("--train", help="the training JSONL that few-shot examples are drawn from")
    parser.add_argument(
        "--checkpoints",
        metavar="RUN_DIR",
        help="instead: every checkpoint of the run, task score against forgetting (table, RUN_DIR/checkpoints.png)",
    )
    parser.add_argument(
        "--shots",
        type=whole_number,
        default=5,
        help="in-context examples for the few-shot baseline (0 = none; default 5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="which shots are drawn (default 0)")
    parser.add_argument(
        "--metric",
        help="the grader the verdict is about (default: the strictest that separates the systems, "
        "e.g. json_equal before json_valid, exact before normalized)",
    )
    parser.add_argument("--no-forgetting", action="store_true", help="skip both forgetting measures (probe and KL)")
    parser.add_argument(
        "--forgetting-sample",
        type=positive_int,
        metavar="N",
        help="only the first N items of each skill in the forgetting measures: quicker, wider intervals "
        "(default: all 240 probe items and 310 general prompts)",
    )
    add_common_options(parser, "compare-report.json")


def run(args: argparse.Namespace) -> int:
    from tunery.errors import TuneryError

    if args.checkpoints:
        return _checkpoints(args)
    if not (args.tuned and args.train):
        raise TuneryError(
            "compare needs --tuned and --train",
            hint="or --checkpoints RUN_DIR --data HELDOUT.jsonl for every checkpoint",
        )
    return _compare(args)


def _checkpoints(args: argparse.Namespace) -> int:
    """Task score against forgetting for every checkpoint; JSON and PNG in the run directory."""
    import json

    from tunery.eval.tradeoff import checkpoint_tradeoff, plot_tradeoff, print_tradeoff
    from tunery.fsio import atomic_write

    quiet_loading()
    run = Path(args.checkpoints)
    report = checkpoint_tradeoff(run, args.data, per_skill=args.forgetting_sample, device=args.device, log=progress)
    report.plot = str(plot_tradeoff(report, run / "checkpoints.png"))
    atomic_write(run / "checkpoints.json", report.model_dump_json(indent=2))
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print_tradeoff(report)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from tunery.api import compare
    from tunery.eval import print_compare_report
    from tunery.eval.progress import AnswerProgress
    from tunery.eval.report import examples_path, show_report

    quiet_loading()
    report = compare(
        args.tuned,
        train=args.train,
        data=args.data,
        base=args.base,
        shots=args.shots,
        seed=args.seed,
        graders=chosen_graders(args),
        metric=args.metric,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        forgetting=not args.no_forgetting,
        forgetting_per_skill=args.forgetting_sample,
        with_loss=not args.no_loss,
        device=args.device,
        output=args.output,
        log=progress,
        response_format=args.response_format,
        progress=AnswerProgress(),
    )
    written = (Path(args.output), examples_path(args.output))
    show_report(report.to_dict(), written, as_json=args.json, print_table=lambda: print_compare_report(report))
    return 0
