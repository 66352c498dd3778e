"""The registry's records of the organisation's jobs: each job's run, found by its run directory.

A job is a `tunery train` process, so its run lands in the registry under `$TUNERY_HOME` like any
run started from the CLI, together with its eval reports and monitor suites. The dashboard only
reads the registry, and never creates one by looking.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tunery.jobs.layout import Home
from tunery.store import JobRecord, Store

if TYPE_CHECKING:
    from tunery.store.registry import Registry, RunRecord


@contextmanager
def registry_if_any() -> Iterator[Registry | None]:
    """The registry of this machine, or None when nothing has been registered yet."""
    from tunery.home import tunery_home
    from tunery.store.registry import FILENAME, Registry

    path = tunery_home() / FILENAME
    if not path.is_file():
        yield None
        return
    registry = Registry(path)
    try:
        yield registry
    finally:
        registry.close()


def org_jobs(store: Store, org: str) -> list[JobRecord]:
    """Every job of the organisation, newest first."""
    jobs: list[JobRecord] = []
    after = None
    while True:
        page = store.list_jobs(org, after=after, limit=100)
        jobs += page.items
        if not page.has_more or not page.items:
            return jobs
        after = page.items[-1].id


def job_runs(registry: Registry, home: Home, jobs: list[JobRecord]) -> list[tuple[JobRecord, RunRecord]]:
    """The registered run of each job that has one (finished runs are registered)."""
    found = []
    for job in jobs:
        run = registry.find_run_at(home.run_dir(job.id))
        if run is not None:
            found.append((job, run))
    return found
