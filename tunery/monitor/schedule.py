"""Scheduled re-evaluation: eval suites that run when due, keep a history, and raise alerts.

A suite is a fine-tuned run, a held-out file and an interval (`tunery monitor add`). The file is
read afresh on every run, so appending newly labelled traffic to it keeps the check current; each
result records the dataset id it was measured on. `run_due` (behind `tunery monitor run`, meant
for cron) claims the suites that are due in one transaction, so two overlapping invocations never
run a suite twice, and a second invocation right after the first finds nothing to do.

The first successful result of a suite is its baseline. A later result whose grader mean falls
below the baseline by more than the suite's threshold raises a `warn`; by more than twice the
threshold, an `error`. Alerts become events in the registry, lines on stderr, a non-zero exit
code, and (when the suite has one) a POST to its webhook.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunery.errors import TuneryError
from tunery.store.registry import Registry, RunRecord, SuiteRecord

Log = Callable[[str], None]
LEVELS = ("ok", "warn", "error", "failed")


@dataclass(frozen=True)
class Alert:
    metric: str
    baseline: float
    value: float
    level: str  # "warn" | "error"

    @property
    def drop(self) -> float:
        return self.baseline - self.value

    def message(self) -> str:
        return f"{self.metric} fell to {self.value:.3f} from its baseline {self.baseline:.3f} (−{self.drop:.3f})"


def check_against_baseline(baseline: dict[str, float], current: dict[str, float], threshold: float) -> list[Alert]:
    """An alert for each metric that dropped more than `threshold` below its baseline.

    >>> check_against_baseline({"exact": 0.9, "f1": 0.8}, {"exact": 0.8, "f1": 0.5}, 0.05)
    [Alert(metric='exact', baseline=0.9, value=0.8, level='warn'), Alert(metric='f1', baseline=0.8, value=0.5, level='error')]
    """
    alerts = []
    for metric, before in baseline.items():
        if metric not in current:
            continue
        drop = before - current[metric]
        # Rounding keeps a drop of exactly the threshold (0.9 − 0.85 = 0.05000000000000004) quiet.
        if round(drop, 9) > 2 * threshold:
            alerts.append(Alert(metric, before, current[metric], "error"))
        elif round(drop, 9) > threshold:
            alerts.append(Alert(metric, before, current[metric], "warn"))
    return alerts


def add_suite(
    registry: Registry,
    run: RunRecord,
    eval_path: str | Path,
    *,
    every_s: float,
    threshold: float,
    graders: list[str] | None = None,
    webhook: str | None = None,
    now: float | None = None,
) -> SuiteRecord:
    """Register a suite, due at once. The file is checked now so a typo fails here, not in cron.

    Raises:
        TuneryError: the file is missing or not held-out data; a bad threshold or webhook.
    """
    from tunery.eval.heldout import load_heldout
    from tunery.monitor.alerts import check_webhook_url

    if threshold <= 0:
        raise TuneryError(f"--threshold must be positive, not {threshold}", hint="e.g. --threshold 0.05")
    path = Path(eval_path).expanduser().resolve()
    load_heldout(path)
    if webhook:
        check_webhook_url(webhook)
    now = time.time() if now is None else now
    suite = SuiteRecord(
        id="suite-" + secrets.token_hex(4),
        run_id=run.id,
        eval_path=str(path),
        every_s=int(every_s),
        threshold=threshold,
        graders=graders,
        webhook=webhook,
        created_at=now,
        next_due=now,
        baseline=None,
    )
    registry.add_suite(suite)
    return suite


@dataclass
class Outcome:
    suite: SuiteRecord
    level: str
    message: str
    metrics: dict[str, float] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    webhook_error: str | None = None


def _evaluate(registry: Registry, suite: SuiteRecord, home: Path, device: str, log: Log) -> tuple[dict, str, str]:
    """Run the suite's evaluation; returns (metrics, dataset id, report path)."""
    from tunery.eval import evaluate, write_eval_report
    from tunery.lineage.datasets import dataset_id

    run = registry.get_run(suite.run_id)
    data = dataset_id(suite.eval_path)
    report = evaluate(suite.eval_path, adapter=run.path, graders=suite.graders, device=device, log=log)
    path = home / "monitor" / "reports" / suite.id / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_eval_report(report, path)
    registry.add_report(run.id, "monitor", str(path), {**report.to_dict(), "suite": suite.id})
    return {name: score.mean for name, score in report.metrics.items()}, data, str(path)


def run_suite(registry: Registry, suite: SuiteRecord, home: Path, *, device: str = "auto", log: Log) -> Outcome:
    """Evaluate one suite, record the result with its events, and post alerts to the webhook."""
    from tunery.monitor.alerts import post_alert

    started = time.time()
    try:
        metrics, data, report = _evaluate(registry, suite, home, device, log)
    except Exception as exc:  # noqa: BLE001 - one broken suite must not stop the others in a cron run
        message = f"evaluation failed: {exc if isinstance(exc, TuneryError) else repr(exc)}"
        registry.add_result(
            suite.id,
            started_at=started,
            dataset_id=None,
            metrics={},
            level="failed",
            message=message,
            report_path=None,
            events=[("error", message, None)],
        )
        outcome = Outcome(suite, "failed", message)
    else:
        alerts = check_against_baseline(suite.baseline, metrics, suite.threshold) if suite.baseline else []
        level = max((a.level for a in alerts), key=LEVELS.index, default="ok")
        if suite.baseline is None:
            message = "baseline recorded: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        elif alerts:
            message = "; ".join(a.message() for a in alerts)
        else:
            message = "within threshold of baseline: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        events = [
            (a.level, a.message(), {"metric": a.metric, "baseline": a.baseline, "value": a.value}) for a in alerts
        ]
        registry.add_result(
            suite.id,
            started_at=started,
            dataset_id=data,
            metrics=metrics,
            level=level,
            message=message,
            report_path=report,
            events=events,
            baseline=metrics if suite.baseline is None else None,
        )
        outcome = Outcome(suite, level, message, metrics, alerts)
    if outcome.level != "ok" and suite.webhook:
        outcome.webhook_error = post_alert(suite.webhook, _payload(registry, outcome))
    return outcome


def _payload(registry: Registry, outcome: Outcome) -> dict:
    run = registry.get_run(outcome.suite.run_id)
    return {
        "source": "tunery monitor",
        "suite": outcome.suite.id,
        "run": run.id,
        "run_dir": run.path,
        "eval": outcome.suite.eval_path,
        "level": outcome.level,
        "message": outcome.message,
        "metrics": outcome.metrics,
        "baseline": outcome.suite.baseline,
        "alerts": [
            {"metric": a.metric, "baseline": a.baseline, "value": a.value, "level": a.level} for a in outcome.alerts
        ],
    }


def run_due(
    registry: Registry,
    home: Path,
    *,
    now: float | None = None,
    force: bool = False,
    suite_ids: list[str] | None = None,
    device: str = "auto",
    log: Log = lambda message: None,
) -> list[Outcome]:
    """Run every suite due at `now` (all of them with `force`), one after another."""
    claimed = registry.claim_due(time.time() if now is None else now, force=force, suite_ids=suite_ids)
    return [run_suite(registry, suite, home, device=device, log=log) for suite in claimed]
