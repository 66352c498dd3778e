"""`tunery compare`: was fine-tuning worth it? Zero-shot and few-shot prompting vs the tuned model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunery.commands.arguments import whole_number
from tunery.commands.eval import add_common_options, chosen_graders, progress, quiet_loading

HELP = "Compare the base model (zero-shot, few-shot) with the fine-tuned model on held-out data."
EXAMPLES = """\
  tunery compare --tuned runs/tickets --train train.jsonl --data test.jsonl
  tunery compare --base smollm2-135m-instruct --tuned runs/tickets --train train.jsonl \\
      --data test.jsonl --shots 8 --json
  tunery compare --tuned runs/tickets --train train.jsonl --data test.jsonl --no-forgetting

Few-shot examples are drawn from --train by --seed, never from --data. The verdict compares the
tuned model with the better prompting baseline on --metric, or else on the strictest grader that
separates the systems, with a paired bootstrap interval; the report says which metric decided and
whether the others agree. The forgetting probe (30 bundled general-skill questions) runs on base and tuned.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", help="base model (default: the base the tuned run records)")
    parser.add_argument(
        "--tuned", required=True, help="a run directory (final/ is used), an adapter dir, or a full model dir"
    )
    parser.add_argument("--train", required=True, help="the training JSONL that few-shot examples are drawn from")
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
    parser.add_argument("--no-forgetting", action="store_true", help="skip the general-skills forgetting probe")
    add_common_options(parser, "compare-report.json")


def run(args: argparse.Namespace) -> int:
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
