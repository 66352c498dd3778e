"""The store interface: a few reads, and writes grouped in explicit transactions.

Every write goes through `with store.transaction() as tx:`, so a job's state change, its
events and its new checkpoints land together or not at all. Reads that take `org` return
nothing for another organisation's objects; `org=None` is for the worker, which serves all.
Lists are newest first unless `order="asc"`, and paginate with `after=<id of the last item>`.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Literal, Protocol

from tunery.store.records import (
    CheckpointRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    ModelRecord,
    Page,
)


class Transaction(Protocol):
    """Writes inside one atomic transaction; reads here see the transaction's own writes."""

    def add_file(self, record: FileRecord) -> None: ...

    def delete_file(self, file_id: str) -> bool: ...

    def add_job(self, record: JobRecord) -> None: ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def oldest_job(self, status: str) -> JobRecord | None:
        """The first-created job in `status`: the head of the FIFO queue.

        The row stays locked until the transaction ends, and a row another transaction holds is
        skipped, so concurrent claimers get different jobs rather than queueing for one.
        """
        ...

    def update_job(self, job_id: str, *, expect: Collection[str] | None = None, **fields) -> bool:
        """Set `fields` on the job if its status is in `expect` (any status when None).

        Returns False, changing nothing, when the job is missing or in another status: this
        compare-and-set is how the API and the worker agree on each transition.
        """
        ...

    def transfer_lease(self, job_id: str, *, holder: str | None, worker: str, until: float) -> bool:
        """Give the job's lease to `worker` until `until` if `holder` (None: nobody) holds it now.

        Returns False, changing nothing, if another worker took the lease first.
        """
        ...

    def renew_leases(self, worker: str, job_ids: Collection[str], until: float) -> set[str]:
        """Extend `worker`'s leases on these jobs to `until`; returns the ids it still holds."""
        ...

    def add_event(self, record: EventRecord) -> None: ...

    def add_checkpoint(self, record: CheckpointRecord) -> bool:
        """False (and nothing written) if the job already has a checkpoint at that step."""
        ...

    def delete_checkpoint(self, checkpoint_id: str) -> None: ...

    def add_model(self, record: ModelRecord) -> None: ...

    def delete_model(self, model_id: str) -> bool: ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def clock(self) -> float:
        """The database's time in Unix seconds: leases are timed by it, not by each host's clock."""
        ...

    def get_file(self, file_id: str, org: str | None = None) -> FileRecord | None: ...

    def list_files(
        self,
        org: str,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10000,
        order: Literal["asc", "desc"] = "desc",
    ) -> Page[FileRecord]: ...

    def file_in_use(self, file_id: str) -> bool:
        """Whether a job that has not finished reads this file."""
        ...

    def get_job(self, job_id: str, org: str | None = None) -> JobRecord | None: ...

    def list_jobs(
        self,
        org: str,
        *,
        after: str | None = None,
        limit: int = 20,
        metadata: dict[str, str] | None = None,
        without_metadata: bool = False,
    ) -> Page[JobRecord]:
        """Newest first; `metadata` keeps jobs holding every pair, `without_metadata` jobs with none."""
        ...

    def jobs_in(self, statuses: Collection[str]) -> list[JobRecord]:
        """All jobs (any organisation) in these statuses, oldest first."""
        ...

    def unsettled_jobs(self) -> list[JobRecord]:
        """Jobs a worker must look after, oldest first: running, pausing, or cancelled with a trainer."""
        ...

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[EventRecord]: ...

    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[CheckpointRecord]: ...

    def get_model(self, model_id: str, org: str | None = None) -> ModelRecord | None: ...

    def list_models(self, org: str | None = None, *, job_id: str | None = None) -> list[ModelRecord]: ...

    def close(self) -> None: ...
