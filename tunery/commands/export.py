"""`tunery export`: turn a finished run into a standalone model directory."""

from __future__ import annotations

import argparse

HELP = "Export a finished run: merge its LoRA adapter into the base model as a standalone model."
EXAMPLES = """\
  tunery export runs/my-run --merge --output models/my-model
  python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('models/my-model')"
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (or its final/ directory)")
    parser.add_argument("--merge", action="store_true", help="merge the adapter into the base weights")
    parser.add_argument("--output", required=True, help="directory to write")


def run(args: argparse.Namespace) -> int:
    from tunery.errors import TuneryError
    from tunery.export import merge

    if not args.merge:
        raise TuneryError("say how to export", hint="--merge writes a standalone merged model")
    print(f"merged model written to {merge(args.run, args.output)}")
    return 0
