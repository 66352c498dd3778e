"""`tunery jobs worker`: the same as `tunery worker` (the name `tunery serve` starts it by)."""

from __future__ import annotations

import argparse

from tunery.commands import worker

HELP = "Run the fine-tuning job worker (the same as `tunery worker`)."
EXAMPLES = """\
  tunery jobs worker --home ~/.cache/tunery/server --slots 2
  tunery serve --workers 0 & tunery jobs worker --home ~/.cache/tunery/server   # API and worker apart
"""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    worker.configure(actions.add_parser("worker", help=worker.HELP))


def run(args: argparse.Namespace) -> int:
    return worker.run(args)
