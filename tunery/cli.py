"""The `tunery` command: a thin table of verbs, each a module in `tunery.commands`.

Each command module exposes `HELP`, `EXAMPLES`, `configure(parser)` and `run(args) -> int`, and
imports nothing heavy at module level, so `tunery validate --help` never loads torch.
Exit codes: 0 success, 1 the data or the run failed a check, 2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tunery import __version__
from tunery.errors import TuneryError

# verb -> module under tunery.commands; the order is the order of `tunery --help`.
VERBS = {
    "validate": "validate",
    "estimate": "estimate",
    "models": "models",
    "train": "train",
    "eval": "eval",
    "compare": "compare",
    "grade": "grade",
    "plot": "plot",
    "export": "export",
    "serve": "serve",
    "jobs": "jobs",
    "worker": "worker",
    "runs": "runs",
    "datasets": "datasets",
    "reproduce": "reproduce",
    "monitor": "monitor",
}

GETTING_STARTED = """\
a first fine-tune, on the embedded default model:
  tunery validate train.jsonl --model smollm2-135m-instruct --show 2
  tunery estimate train.jsonl --model smollm2-135m-instruct
  tunery train --data train.jsonl --validation valid.jsonl --output runs/first
  tunery compare --base smollm2-135m-instruct --tuned runs/first --train train.jsonl --data heldout.jsonl
  tunery serve            # OpenAI-compatible API and the dashboard on http://127.0.0.1:8000

Run `tunery VERB --help` for a verb's options and examples."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunery",
        description="Fine-tune open language models on your own hardware: "
        "validate data, train (SFT/LoRA/DPO), evaluate, serve.",
        epilog=GETTING_STARTED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tunery {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    parser.set_defaults(_parser=parser)
    for verb, module_name in VERBS.items():
        module = importlib.import_module(f"tunery.commands.{module_name}")
        sub = verbs.add_parser(
            verb,
            help=module.HELP,
            description=module.HELP,
            epilog="examples:\n" + module.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the verb's own parser, so the usage shown is the verb's
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TuneryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
