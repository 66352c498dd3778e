"""A model's monitoring history: a table of every suite result, and a PNG of metrics over time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tunery.errors import TuneryError
from tunery.store.registry import Registry, ResultRecord, RunRecord, SuiteRecord

LEVEL_STYLE = {"ok": "green", "warn": "yellow", "error": "red", "failed": "red"}


def history(registry: Registry, run: RunRecord) -> list[tuple[SuiteRecord, list[ResultRecord]]]:
    """Each suite of the run with its results, oldest first.

    Raises:
        TuneryError: the run has no suites.
    """
    suites = registry.suites(run.id)
    if not suites:
        raise TuneryError(
            f"run {run.id} has no monitor suites",
            hint=f"add one with `tunery monitor add {run.path} --eval heldout.jsonl --every 1d`",
        )
    return [(suite, registry.results(suite.id)) for suite in suites]


def history_dict(found: list[tuple[SuiteRecord, list[ResultRecord]]]) -> list[dict]:
    from dataclasses import asdict

    return [{**asdict(suite), "results": [asdict(r) for r in results]} for suite, results in found]


def print_history(run: RunRecord, found: list[tuple[SuiteRecord, list[ResultRecord]]], console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    for suite, results in found:
        metrics = sorted({name for r in results for name in r.metrics})
        every = f"{suite.every_s / 86400:g}d" if suite.every_s % 86400 == 0 else f"{suite.every_s}s"
        table = Table(
            "when",
            "data",
            *metrics,
            "level",
            "message",
            title=f"{suite.id}: run {run.id} on {suite.eval_path}, every {every}, alert below baseline − {suite.threshold:g}",
            title_justify="left",
        )
        for r in results:
            when = datetime.fromtimestamp(r.started_at).isoformat(sep=" ", timespec="seconds")
            style = LEVEL_STYLE.get(r.level, "")
            table.add_row(
                when,
                (r.dataset_id or "-")[:12],
                *[f"{r.metrics[m]:.3f}" if m in r.metrics else "-" for m in metrics],
                f"[{style}]{r.level}[/]",
                escape(r.message),
            )
        console.print(table)
        if not results:
            console.print("  no results yet: `tunery monitor run` runs the suites that are due")


def plot_history(run: RunRecord, found: list[tuple[SuiteRecord, list[ResultRecord]]], output: str | Path) -> Path:
    """One panel per suite: each metric over time, its baseline dashed, alerts marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(found), 1, figsize=(9, 3.2 * len(found)), squeeze=False)
    for ax, (suite, results) in zip(axes[:, 0], found, strict=True):
        done = [r for r in results if r.metrics]
        for name in sorted({m for r in done for m in r.metrics}):
            points = [
                (datetime.fromtimestamp(r.started_at), r.metrics[name], r.level) for r in done if name in r.metrics
            ]
            line = ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)[0]
            alerts = [p for p in points if p[2] in ("warn", "error")]
            if alerts:
                ax.scatter(
                    [p[0] for p in alerts], [p[1] for p in alerts], s=90, facecolors="none", edgecolors="red", zorder=3
                )
            if suite.baseline and name in suite.baseline:
                ax.axhline(suite.baseline[name], color=line.get_color(), linestyle="--", alpha=0.6)
                ax.axhline(suite.baseline[name] - suite.threshold, color="red", linestyle=":", alpha=0.4)
        ax.set(title=f"{suite.id} on {Path(suite.eval_path).name}", ylabel="score")
        if done:
            ax.legend(loc="best")
        fig.autofmt_xdate()
    fig.suptitle(f"run {run.id}: {Path(run.path).name} (dashed: baseline, dotted: alert line, circled: alerts)")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
