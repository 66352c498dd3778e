"""`tunery worker`: run fine-tuning jobs from a server's queue; start any number, on any hosts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tunery.store import DATABASE_URL_ENV

HELP = "Run fine-tuning jobs from the server's queue (tunery serve starts one; start more to scale out)."
EXAMPLES = """\
  tunery worker                                   # the home of `tunery serve`: $TUNERY_HOME/server
  tunery worker --home ~/.cache/tunery/server --slots 2

  Many hosts, one queue (the same database URL and the same shared directory on every host):
  export TUNERY_DATABASE_URL=postgresql://tunery:secret@db.internal:5432/tunery
  export TUNERY_HOME=/mnt/shared/tunery
  tunery serve --workers 0 --host 0.0.0.0          # on one host: the API only
  tunery worker                                    # on each training host
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home", type=Path, help="the server's state directory, shared by every worker (default $TUNERY_HOME/server)"
    )
    parser.add_argument(
        "--slots", "--workers", dest="slots", type=int, default=1, help="jobs this worker runs at once (default 1)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"postgresql://... store shared by all workers (default ${DATABASE_URL_ENV}; "
        "else the SQLite file in --home, for one host)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=60,
        help="seconds a job stays with a worker that stops renewing it, before another worker "
        "takes it over (default 60)",
    )
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between checks (default 0.5)")


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from tunery.errors import TuneryError
    from tunery.jobs.layout import Home
    from tunery.jobs.worker import Worker
    from tunery.store import is_database_url, open_store

    if args.slots < 1:
        raise TuneryError("--slots must be at least 1")
    if args.poll <= 0 or args.lease <= args.poll:
        raise TuneryError(f"--lease ({args.lease}s) must be longer than --poll ({args.poll}s), and --poll above 0")
    if args.database_url and not is_database_url(args.database_url):
        raise TuneryError(
            f"{DATABASE_URL_ENV} / --database-url must be a postgresql:// URL",
            hint="postgresql://user:password@host:5432/dbname, or unset it for the SQLite store in --home",
        )
    if args.home is None:
        from tunery.home import tunery_home

        args.home = tunery_home() / "server"
    logging.basicConfig(level=logging.INFO, format="worker: %(message)s")
    home = Home.at(args.home)
    store = open_store(args.database_url or home.db)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Worker(home, store, slots=args.slots, poll_interval=args.poll, lease_s=args.lease).run(stop)
    return 0
