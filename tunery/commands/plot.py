"""`tunery plot`: write a PNG of a run's loss and accuracy curves."""

from __future__ import annotations

import argparse

HELP = "Plot a run's training and validation loss curves to a PNG."
EXAMPLES = """\
  tunery plot runs/my-run                 # writes runs/my-run/loss.png
  tunery plot runs/my-run --output curves.png
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    parser.add_argument("--output", help="PNG path (default RUN_DIR/loss.png)")


def run(args: argparse.Namespace) -> int:
    from tunery.plot import plot_run

    print(f"wrote {plot_run(args.run, args.output)}")
    return 0
