"""The job state machine, OpenAI's statuses plus `pausing`/`paused`.

    validating_files → queued → running → succeeded | failed | cancelled
                                  running → pausing → paused → queued (resume)

`running → queued` happens only when a restarted worker re-queues a job whose trainer died
with the old server; the job then resumes from its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Collection

from tunery.store import Transaction

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "validating_files": frozenset({"queued", "failed", "cancelled"}),
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "pausing", "queued"}),
    # A trainer asked to pause may finish or fail before it sees the signal.
    "pausing": frozenset({"paused", "succeeded", "failed", "cancelled", "queued"}),
    "paused": frozenset({"queued", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


class IllegalTransition(ValueError):
    pass


def move(tx: Transaction, job_id: str, sources: Collection[str], target: str, **fields) -> bool:
    """Move a job to `target` if it is currently in one of `sources`; False if it is not.

    Raises:
        IllegalTransition: some source may not lead to `target` (a programming error).
    """
    illegal = [s for s in sources if target not in TRANSITIONS[s]]
    if illegal:
        raise IllegalTransition(f"{illegal} → {target} is not a job transition")
    return tx.update_job(job_id, expect=sources, status=target, **fields)


def sources_of(target: str) -> frozenset[str]:
    """Every status from which `target` can be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
