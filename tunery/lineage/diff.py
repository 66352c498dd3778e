"""Two runs side by side: base model, data, resolved config, final metrics and versions.

Data is compared by dataset id (content), not by path: the same file moved is the same data,
and an edited file under the same name is not. Paths that always differ (the output directory)
and timing metrics (throughput, elapsed time) are left out, since they say nothing about the
run's recipe or its results.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunery.store.registry import RunRecord
from tunery.train.config import flatten

SECTIONS = ("base", "data", "config", "metrics", "versions")
# Measured, not computed: they differ between two runs of the same recipe on the same machine.
TIMING_METRICS = frozenset({"tokens_per_second", "elapsed_s", "eta_s"})
PATH_KEYS = frozenset({"model", "data", "validation", "output"})  # shown under base and data instead


@dataclass(frozen=True)
class DiffRow:
    section: str
    key: str
    a: object
    b: object

    @property
    def same(self) -> bool:
        return self.a == self.b

    @property
    def delta(self) -> float | None:
        """b − a for two numbers (booleans excluded), else None."""
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.a, self.b))
        return self.b - self.a if numbers else None


def comparable_metrics(metrics: dict) -> dict:
    """Final metrics without the timing ones."""
    return {k: v for k, v in metrics.items() if k not in TIMING_METRICS}


def run_facts(run: RunRecord) -> dict[str, dict[str, object]]:
    """What `diff` compares, section by section."""
    return {
        "base": {"model": run.base_model, "weights sha256": run.base_model_sha256},
        "data": {link.role: link.dataset_id or "unknown (changed after training)" for link in run.datasets},
        "config": {k: v for k, v in flatten(run.config).items() if k not in PATH_KEYS},
        "metrics": comparable_metrics(run.metrics),
        "versions": dict(run.versions),
    }


def diff_runs(a: RunRecord, b: RunRecord, *, everything: bool = False) -> list[DiffRow]:
    """Rows for every key either run has; only the differing ones unless `everything`.

    Metrics are always all shown: two runs are compared for their results above all.
    """
    facts_a, facts_b = run_facts(a), run_facts(b)
    rows = []
    for section in SECTIONS:
        left, right = facts_a[section], facts_b[section]
        for key in list(left) + [k for k in right if k not in left]:
            row = DiffRow(section, key, left.get(key), right.get(key))
            if everything or section == "metrics" or not row.same:
                rows.append(row)
    return rows
