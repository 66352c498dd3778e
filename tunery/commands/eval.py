"""`tunery eval`: score a model, or a fine-tuned run, on held-out examples."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunery.commands.arguments import positive_int

HELP = "Evaluate a model (optionally with a fine-tuned adapter) on held-out examples."
EXAMPLES = """\
  tunery eval --model smollm2-135m-instruct --data test.jsonl
  tunery eval --adapter runs/tickets --data test.jsonl            # base taken from the run
  tunery eval --adapter runs/tickets --data test.jsonl --graders exact,normalized --json
  tunery eval --model M --data qa.jsonl --graders token_f1,my_graders:mentions_price
  tunery eval --adapter runs/rft --data heldout.jsonl --grader grader.json   # the metric RFT optimised

graders: exact, normalized, json_valid, json_equal, regex (reference written /PATTERN/FLAGS),
token_f1, rouge_l, embedding, judge (needs TUNERY_JUDGE_BASE_URL and TUNERY_JUDGE_MODEL),
or module:function. Left out, they are chosen from the references.
Writes the summary to --output and every answer to <output>.examples.jsonl beside it.
"""


def add_common_options(parser: argparse.ArgumentParser, default_output: str) -> None:
    """Options `eval` and `compare` share."""
    parser.add_argument(
        "--data", required=True, help="held-out JSONL (chat or preference); the last assistant turn is the reference"
    )
    parser.add_argument(
        "--graders",
        type=grader_list,
        default=None,
        help="comma-separated grader names (default: chosen from the references)",
    )
    parser.add_argument(
        "--grader",
        metavar="GRADER.json",
        help="an OpenAI grader object (as in reinforcement fine-tuning) that reads each answer and its data "
        "line; graded beside --graders, or alone when --graders is left out",
    )
    # 16 is tunery.eval.evaluate.DEFAULT_BATCH_SIZE, not imported so that `--help` stays light.
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="examples per generation batch (default 16)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=None,
        help="default: 1.5 × the longest reference (in tokens) + 8, kept within 16..1024",
    )
    parser.add_argument("--no-loss", action="store_true", help="skip loss and perplexity on the references")
    parser.add_argument(
        "--response-format",
        metavar="FILE",
        help="a JSON schema or OpenAI response_format: answers are also generated constrained to it, "
        "as the server does, and the report shows the scores with and without it",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--output", default=default_output, help=f"summary JSON (default {default_output})")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", help="base model: embedded name, local dir, .gguf or hub id (default: the adapter's base)"
    )
    parser.add_argument(
        "--adapter", help="a run directory (its final/ is used), an adapter directory, or a full fine-tuned model"
    )
    add_common_options(parser, "eval-report.json")


def chosen_graders(args: argparse.Namespace) -> list[str] | None:
    """--graders plus --grader's file (None: choose from the references)."""
    if args.grader is None:
        return args.graders
    return [*(args.graders or []), args.grader]


def grader_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one grader name")
    return names


def quiet_loading() -> None:
    """Model loading draws progress bars that tell an evaluation user nothing."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def progress(message: str) -> None:
    """Progress goes to stderr, so that --json output on stdout stays clean."""
    print(f"[eval] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from tunery.api import evaluate
    from tunery.eval import print_eval_report
    from tunery.eval.progress import AnswerProgress
    from tunery.eval.report import examples_path, show_report

    quiet_loading()
    report = evaluate(
        args.data,
        model=args.model,
        adapter=args.adapter,
        graders=chosen_graders(args),
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        with_loss=not args.no_loss,
        device=args.device,
        output=args.output,
        log=progress,
        response_format=args.response_format,
        progress=AnswerProgress(),
    )
    written = (Path(args.output), examples_path(args.output))
    show_report(report.to_dict(), written, as_json=args.json, print_table=lambda: print_eval_report(report))
    return 0
