"""`tunery datasets`: the content-addressed datasets in the registry."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime

HELP = "Register, list and show content-addressed datasets (id = sha256 of the canonical JSONL)."
EXAMPLES = """\
  tunery datasets add train.jsonl valid.jsonl   # registering the same content twice is a no-op
  tunery datasets list
  tunery datasets show 0f86a8b5                  # an id or a unique prefix of one
  tunery datasets show 0f86a8b5 --json

A dataset's id is the sha256 of its canonical form: each line re-serialised with sorted keys and
compact separators, lines joined by newlines. Key order, spacing and blank lines do not change it.
Training registers its data by itself; a copy is kept in $TUNERY_HOME/datasets/<id>.jsonl.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register JSONL files (validated; a stored copy is kept)")
    add.add_argument("files", nargs="+", metavar="FILE")
    listing = actions.add_parser("list", help="every registered dataset")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="one dataset: validation summary, statistics, paths, runs")
    show.add_argument("dataset", metavar="ID", help="dataset id or unique prefix")
    show.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from tunery.home import tunery_home
    from tunery.store.registry import open_registry

    home = tunery_home()
    with open_registry(home) as registry:
        return ACTIONS[args.action](registry, home, args)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _check(record) -> str:
    if record.ok:
        return "ok" + (f", {_count(record.warnings, 'warning')}" if record.warnings else "")
    return f"{_count(record.errors, 'error')}, {_count(record.warnings, 'warning')}"


def _add(registry, home, args) -> int:
    from tunery.lineage.datasets import register_dataset

    for path in args.files:
        record, created = register_dataset(registry, path, home)
        state = "registered" if created else "already registered"
        print(f"{record.id}  {path}: {state} ({record.examples} {record.format or '?'} examples, {_check(record)})")
    return 0


def _list(registry, home, args) -> int:
    records = registry.list_datasets()
    if args.json:
        print(json.dumps([asdict(r) for r in records], indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Column, Table

    console = Console()
    if not records:
        console.print(f"no datasets registered yet in {registry.path}")
        return 0
    table = Table(
        Column("id", no_wrap=True),
        Column("name", overflow="fold"),
        "format",
        "examples",
        "validation",
        "runs",
        Column("registered", no_wrap=True),
        title=f"{len(records)} datasets in {registry.path}",
        title_justify="left",
    )
    for r in records:
        when = datetime.fromtimestamp(r.registered_at).isoformat(sep=" ", timespec="minutes")
        table.add_row(
            r.id[:12],
            escape(r.name),
            r.format or "?",
            str(r.examples),
            _check(r),
            str(len(registry.runs_using(r.id))),
            when,
        )
    console.print(table)
    return 0


def _show(registry, home, args) -> int:
    from rich.markup import escape

    record = registry.get_dataset(args.dataset)
    paths, runs = registry.dataset_paths(record.id), registry.runs_using(record.id)
    if args.json:
        print(
            json.dumps(
                {**asdict(record), "paths": paths, "runs": [{"run": r, "role": role} for r, role in runs]}, indent=2
            )
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table("field", "value", title=f"dataset {record.id}", title_justify="left", show_header=False)
    stats = record.stats
    messages = stats.get("messages_per_example") or {}
    for key, value in (
        ("name", record.name),
        ("format", record.format or "?"),
        ("examples", f"{record.examples} of {stats.get('lines')} lines"),
        (
            "messages per example",
            ", ".join(f"{k} {messages[k]}" for k in ("min", "mean", "p95", "max") if k in messages) or "-",
        ),
        ("canonical bytes", f"{record.bytes:,}"),
        ("validation", _check(record)),
        ("issues", ", ".join(f"{code} {n}" for code, n in record.issue_counts.items()) or "none"),
        ("stored copy", record.blob),
        ("registered", datetime.fromtimestamp(record.registered_at).isoformat(sep=" ", timespec="seconds")),
    ):
        table.add_row(key, escape(str(value)))
    console.print(table)
    console.print("seen at:\n" + "\n".join(f"  {p}" for p in paths))
    if runs:
        console.print("used by:\n" + "\n".join(f"  run {run_id} ({role})" for run_id, role in runs))
    return 0


ACTIONS = {"add": _add, "list": _list, "show": _show}
