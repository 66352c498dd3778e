"""`tunery models`: list and resolve model references."""

from __future__ import annotations

import argparse
import json

HELP = "List the available models, or resolve one reference to a local directory."
EXAMPLES = """\
  tunery models list
  tunery models resolve smollm2-135m-instruct
  tunery models resolve ./my-model.gguf --json
  tunery models resolve HuggingFaceTB/SmolLM2-135M-Instruct     # a hub id: needs the network

A .gguf file (and the embedded default, a GGUF) is converted once into $TUNERY_HOME/models
(default ~/.cache/tunery); later resolves read that directory.
exit codes: 0 resolved, 2 the reference cannot be resolved (the message says what to use instead)
"""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the embedded default and every cached model")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    resolve = actions.add_parser("resolve", help="resolve MODEL (hub id, directory, .gguf, embedded name)")
    resolve.add_argument(
        "model", metavar="MODEL", help="smollm2-135m-instruct, a model directory, a .gguf file or a hub id"
    )
    resolve.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from tunery.models import describe_model, list_models, resolve_model

    if args.action == "resolve":
        infos = [describe_model(args.model, resolve_model(args.model))]
    else:
        infos = list_models()
    if args.json:
        print(json.dumps([{**vars(i), "path": str(i.path)} for i in infos], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Column, Table

    # Names are what users copy into --model: never cut them; paths fold onto more lines instead.
    longest = max((len(i.name) for i in infos), default=5)
    table = Table(
        Column("model", no_wrap=True, min_width=longest),
        "parameters",
        "context",
        "chat template",
        Column("path", overflow="fold"),
    )
    for i in infos:
        table.add_row(
            i.name,
            human_count(i.parameters) if i.parameters else "? (no safetensors)",
            str(i.context_length or "?"),
            "yes" if i.has_chat_template else "no",
            str(i.path),
        )
    Console().print(table)
    return 0


def human_count(n: int) -> str:
    """11.1K, 134.5M, 1.7B: parameter counts as people quote them."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
