"""`tunery grade`: try a grader on a model's own answers before reinforcement fine-tuning."""

from __future__ import annotations

import argparse
import json
import sys

from tunery.commands.arguments import positive_int

HELP = "Sample a model on RFT prompts and grade its answers: reward distribution, pass rate, examples."
EXAMPLES = """\
  tunery grade --grader grader.json --data prompts.jsonl
  tunery grade --grader grader.json --data prompts.jsonl --model smollm2-135m-instruct --samples 8
  tunery grade --grader grader.json --data heldout.jsonl --adapter runs/rft --temperature 0 --samples 1

The grader is an OpenAI grader object (string_check, text_similarity, python, score_model,
label_model, multi). Each prompt line ends on a user turn; its other fields are the grader's item.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grader", required=True, help="grader JSON (an OpenAI grader object)")
    parser.add_argument("--data", required=True, help="RFT prompts JSONL (messages ending on a user turn + fields)")
    parser.add_argument("--model", help="base model (default: the adapter's base, else smollm2-135m-instruct)")
    parser.add_argument("--adapter", help="a run directory or adapter to sample instead of the base")
    parser.add_argument("--samples", type=positive_int, default=4, help="answers per prompt (default 4)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1; 0 = greedy)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=128, help="longest answer (default 128)")
    parser.add_argument("--limit", type=positive_int, help="grade only the first N prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from tunery.commands.eval import quiet_loading
    from tunery.eval.grade import grade_model
    from tunery.models import DEFAULT_MODEL

    quiet_loading()
    report = grade_model(
        args.grader,
        args.data,
        model=args.model or (None if args.adapter else DEFAULT_MODEL),
        adapter=args.adapter,
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        seed=args.seed,
        device=args.device,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0
    r = report.rewards
    print(
        f"graded {report.prompts} prompts x {report.samples_per_prompt} samples of {report.model} "
        f"(temperature {report.temperature:g}) in {report.seconds:.1f} s"
    )
    print(f"reward: mean {r['mean']:.3f}  std {r['std']:.3f}  min {r['min']:.3f}  max {r['max']:.3f}")
    print("distribution: " + "  ".join(f"{value}: {count}" for value, count in report.histogram.items()))
    print(
        f"pass rate (reward >= {report.pass_threshold:g}): {report.pass_rate:.3f}; "
        f"prompts solved at least once: {report.solved_prompts:.3f}"
    )
    if report.grader_errors:
        print(f"grader errors (rewarded 0): {report.grader_errors}")
    for s in report.samples:
        print(f"\n  line {s.line}  reward {s.reward:.3f}{'  ' + s.error if s.error else ''}")
        print(f"    prompt: {s.prompt!r}")
        print(f"    answer: {s.output[:300]!r}")
    if report.warning:
        print(f"\nwarning: {report.warning}", file=sys.stderr)
    return 0
