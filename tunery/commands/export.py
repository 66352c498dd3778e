"""`tunery export`: turn a finished run into a standalone model directory, or into what vLLM serves."""

from __future__ import annotations

import argparse

HELP = "Export a finished run: a standalone merged model, or an adapter or model laid out for vLLM."
EXAMPLES = """\
  tunery export runs/my-run --merge --output models/my-model
  tunery export runs/my-run --format vllm --output exports/my-run            # base/ + adapter/ for --enable-lora
  tunery export runs/my-run --format vllm --merge --output exports/my-model  # one model directory
  python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('models/my-model')"
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (or its final/ directory)")
    parser.add_argument(
        "--format",
        choices=("hf", "vllm"),
        default="hf",
        help="hf: a Hugging Face model directory (needs --merge); vllm: the layout `vllm serve` loads, "
        "and the command that serves it (default hf)",
    )
    parser.add_argument("--merge", action="store_true", help="merge the adapter into the base weights")
    parser.add_argument("--name", help="model name clients ask vLLM for (default: the run directory's name)")
    parser.add_argument("--output", required=True, help="directory to write")


def run(args: argparse.Namespace) -> int:
    from tunery.api import export
    from tunery.errors import TuneryError

    if args.format == "hf" and not args.merge:
        raise TuneryError(
            "say how to export",
            hint="--merge writes a standalone merged model; --format vllm writes what vLLM serves",
        )
    exported = export(args.run, args.output, format=args.format, merged=args.merge, name=args.name)
    if args.format == "vllm":
        what = "LoRA adapter and its base model" if exported.kind == "adapter" else "merged model"
        print(f"{what} for vLLM written to {exported.path}")
        print("serve it with (vLLM installed on a GPU machine; the paths as written here):")
        print(f"  {exported.shell_command}")
        return 0
    print(f"merged model written to {exported.path}")
    return 0
