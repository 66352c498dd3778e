"""`tunery plot`: write a PNG of a run's loss and accuracy curves."""

from __future__ import annotations

import argparse

HELP = "Plot a run's training and validation curves (loss, or reward for RFT) to a PNG."
EXAMPLES = """\
  tunery plot runs/my-run                 # writes runs/my-run/loss.png
  tunery plot runs/my-rft-run             # reinforcement fine-tuning: runs/my-rft-run/rewards.png
  tunery plot runs/my-run --output curves.png
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    parser.add_argument("--output", help="PNG path (default RUN_DIR/loss.png, or RUN_DIR/rewards.png for RFT)")


def run(args: argparse.Namespace) -> int:
    from tunery.plot import plot_run

    print(f"wrote {plot_run(args.run, args.output)}")
    return 0
