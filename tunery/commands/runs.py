"""`tunery runs`: the registered runs, their lineage, and the differences between two of them."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

HELP = "List registered runs, show one run's lineage, or diff two runs (config, data, metrics)."
EXAMPLES = """\
  tunery runs list
  tunery runs show runs/tickets              # a run directory, or a run id (or its prefix)
  tunery runs show 3fa9c2 --json
  tunery runs diff runs/lr-1e-3 runs/lr-3e-4  # config, data and metric differences side by side
  tunery runs diff 3fa9 81bc --all            # every key, equal ones too
  tunery runs register runs/old-run           # record a run trained before the registry existed

Finished runs register themselves (from the CLI and from server jobs alike) in
$TUNERY_HOME/registry.sqlite, together with their datasets, checkpoints and model card.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every registered run, oldest first")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="one run's lineage: base, data, config, metrics, checkpoints, reports")
    show.add_argument("run", metavar="RUN", help="run id (or unique prefix), run directory, or ft: model name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    diff = actions.add_parser("diff", help="two runs side by side")
    diff.add_argument("run_a", metavar="RUN_A")
    diff.add_argument("run_b", metavar="RUN_B")
    diff.add_argument("--all", action="store_true", help="show equal settings too")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    register = actions.add_parser("register", help="record a finished run directory (and write its model card)")
    register.add_argument("run_dir", metavar="RUN_DIR")


def run(args: argparse.Namespace) -> int:
    from tunery.home import tunery_home
    from tunery.store.registry import open_registry

    home = tunery_home()
    with open_registry(home) as registry:
        return ACTIONS[args.action](registry, home, args)


def _short(value, n: int = 12) -> str:
    return "-" if value is None else str(value)[:n]


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _when(run) -> str:
    if run.created_at:
        return run.created_at.replace("T", " ")[:16]
    return datetime.fromtimestamp(run.registered_at).isoformat(sep=" ", timespec="minutes")


def _list(registry, home, args) -> int:
    from rich.markup import escape

    runs = registry.list_runs()
    if args.json:
        print(json.dumps([asdict(r) for r in runs], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Column, Table

    console = Console()
    if not runs:
        console.print(f"no runs registered yet in {registry.path}")
        return 0
    table = Table(
        Column("id", no_wrap=True),
        Column("run", overflow="fold"),
        "method",
        "base",
        Column("train data", no_wrap=True),
        "valid loss",
        Column("trained", no_wrap=True),
        title=f"{len(runs)} runs in {registry.path}",
        title_justify="left",
    )
    for r in runs:
        train = next((d.dataset_id for d in r.datasets if d.role == "train"), None)
        loss = r.metrics.get("full_valid_loss", r.metrics.get("valid_loss"))
        table.add_row(
            r.id,
            escape(Path(r.path).name),
            f"{r.method}/{r.adapter}",
            escape(Path(r.base_model).name),
            _short(train),
            _number(loss),
            _when(r),
        )
    console.print(table)
    return 0


def _show(registry, home, args) -> int:
    from rich.markup import escape

    from tunery.lineage.runs import find_run

    r = find_run(registry, args.run, home)
    reports = registry.reports(r.id)
    if args.json:
        print(json.dumps({**asdict(r), "reports": [asdict(rep) for rep in reports]}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Column, Table

    from tunery.lineage.diff import comparable_metrics
    from tunery.train.config import flatten

    console = Console()
    facts = Table("field", "value", title=f"run {r.id}", title_justify="left", show_header=False)
    for key, value in (
        ("directory", r.path),
        ("status", r.status),
        ("trained", _when(r)),
        ("method", f"{r.method}/{r.adapter}"),
        ("base model", r.base_model),
        ("base weights sha256", r.base_model_sha256 or "unknown"),
        ("seed", r.seed),
        ("threads", r.threads),
        ("versions", ", ".join(f"{k} {v}" for k, v in r.versions.items() if v)),
        ("reproduces", r.reproduces or "-"),
    ):
        facts.add_row(key, escape(str(value)))
    console.print(facts)
    data = Table("role", "dataset", "examples", "path", title="data", title_justify="left")
    for link in r.datasets:
        examples = registry.get_dataset(link.dataset_id).examples if link.dataset_id else "?"
        data.add_row(
            link.role, _short(link.dataset_id, 16) if link.dataset_id else "unknown", str(examples), escape(link.path)
        )
    console.print(data)
    config = Table("setting", "value", title="resolved config", title_justify="left")
    for key, value in flatten(r.config).items():
        config.add_row(key, escape(", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    console.print(config)
    metrics = Table(Column("metric", overflow="fold"), "value", title="final metrics", title_justify="left")
    for key, value in comparable_metrics(r.metrics).items():
        metrics.add_row(key, _number(value))
    console.print(metrics)
    if r.checkpoints:
        checkpoints = Table("step", "train loss", "valid loss", "path", title="checkpoints", title_justify="left")
        for c in r.checkpoints:
            checkpoints.add_row(
                str(c.step), _number(c.metrics.get("train_loss")), _number(c.metrics.get("valid_loss")), escape(c.path)
            )
        console.print(checkpoints)
    if reports:
        table = Table("kind", "when", "summary", "path", title="reports", title_justify="left")
        for rep in reports:
            when = datetime.fromtimestamp(rep.created_at).isoformat(sep=" ", timespec="seconds")
            table.add_row(rep.kind, when, escape(_report_line(rep)), escape(rep.path))
        console.print(table)
    console.print(f"model card: {Path(r.path) / 'final' / 'README.md'}")
    return 0


def _report_line(report) -> str:
    summary = report.summary
    if report.kind == "compare":
        return str(summary.get("verdict"))
    scores = ", ".join(f"{k} {v['mean']:.3f}" for k, v in (summary.get("metrics") or {}).items())
    return f"{summary.get('n')} examples of {Path(str(summary.get('data'))).name}: {scores or 'no graders'}"


def _diff(registry, home, args) -> int:
    from rich.markup import escape

    from tunery.lineage.diff import diff_runs
    from tunery.lineage.runs import find_run

    a, b = find_run(registry, args.run_a, home), find_run(registry, args.run_b, home)
    rows = diff_runs(a, b, everything=args.all)
    if args.json:
        print(
            json.dumps(
                {"a": a.id, "b": b.id, "rows": [{**asdict(row), "same": row.same, "delta": row.delta} for row in rows]},
                indent=2,
                default=str,
            )
        )
        return 0
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(
        "",
        Column("", overflow="fold"),
        f"A {a.id}",
        f"B {b.id}",
        "B − A",
        title_justify="left",
        title=f"A = {a.path}\nB = {b.path}",
    )
    for i, row in enumerate(rows):
        first = i == 0 or rows[i - 1].section != row.section
        if first and i:
            table.add_section()
        delta = row.delta
        table.add_row(
            row.section if first else "",
            row.key,
            escape(_cell(row.a)),
            escape(_cell(row.b)),
            "" if row.same else (f"{delta:+.4g}" if delta is not None else "differs"),
            style=None if row.same else "bold",
        )
    console = Console()
    console.print(table)
    differing = sum(not row.same for row in rows)
    console.print(
        f"{differing} difference{'s' * (differing != 1)}" + ("" if args.all else " (--all shows equal settings too)")
    )
    return 0


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256: twelve digits tell them apart
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return _number(value)


def _register(registry, home, args) -> int:
    from tunery.lineage.runs import register_run

    outcome = register_run(registry, args.run_dir, home)
    for note in outcome.notes:
        print(f"warning: {note}")
    verb = "registered" if outcome.created else "updated"
    print(f"{verb} run {outcome.run.id} ({outcome.run.path}); model card: {outcome.card}")
    return 0


ACTIONS = {"list": _list, "show": _show, "diff": _diff, "register": _register}
