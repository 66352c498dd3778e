"""`tunery jobs worker`: run fine-tuning jobs from a server home (started by `tunery serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Run the fine-tuning job worker for a server home (tunery serve starts one for you)."
EXAMPLES = """\
  tunery jobs worker --home ~/.cache/tunery/server --workers 2
  tunery serve --workers 0 & tunery jobs worker --home ~/.cache/tunery/server   # API and worker apart
"""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    worker = actions.add_parser("worker", help="claim queued jobs (FIFO) and run each with `tunery train`")
    worker.add_argument("--home", type=Path, required=True, help="the server's state directory")
    worker.add_argument("--workers", type=int, default=1, help="jobs run at once (default 1)")
    worker.add_argument("--poll", type=float, default=0.5, help="seconds between checks (default 0.5)")


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from tunery.errors import TuneryError
    from tunery.jobs.layout import Home
    from tunery.jobs.worker import Worker
    from tunery.store import open_store

    if args.workers < 1:
        raise TuneryError("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="worker: %(message)s")
    home = Home.at(args.home)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Worker(home, open_store(home.db), slots=args.workers, poll_interval=args.poll).run(stop)
    return 0
