"""The calls training and evaluation make into the registry. None of them ever raises.

A registry problem (a locked or read-only disk, a data file deleted mid-run) must not turn a
finished training run or a written report into a failure: these hooks print a warning naming
the command that records the run later, and return.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def register_finished_run(run_dir: str | Path) -> None:
    """Record a run that just finished (lineage, datasets, checkpoints) and write its model card."""
    try:
        from tunery.home import tunery_home
        from tunery.lineage.runs import register_run
        from tunery.store.registry import open_registry

        home = tunery_home()
        with open_registry(home) as registry:
            outcome = register_run(registry, run_dir, home, in_training_process=True)
        for note in outcome.notes:
            _warn(note)
        print(f"registered run {outcome.run.id} (model card: {outcome.card})", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        _warn(f"the run finished but was not registered ({exc}); register it with `tunery runs register {run_dir}`")


def record_report(kind: str, target: str | Path | None, report_path: str | Path, summary: dict) -> None:
    """Attach an eval or compare report to the run that `target` (the evaluated model) came from.

    `target` is what the user passed as --adapter or --tuned: a run directory, its final/, or a
    checkpoint. Models that come from no tunery run are left alone.
    """
    if target is None:
        return
    try:
        from tunery.home import tunery_home
        from tunery.lineage.cards import write_card
        from tunery.lineage.runs import MANIFEST, find_run, run_dir_of
        from tunery.store.registry import open_registry

        run_dir = run_dir_of(target)
        if not (run_dir / "final" / MANIFEST).is_file():
            return
        home = tunery_home()
        with open_registry(home) as registry:
            run = find_run(registry, str(run_dir), home)
            summary = {**summary, "target": str(Path(target).resolve())}
            registry.add_report(run.id, kind, str(Path(report_path).resolve()), summary)
            write_card(registry, run)
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        _warn(f"the report was written but not attached to its run in the registry ({exc})")
