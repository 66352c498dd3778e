"""`tunery reproduce`: re-run a recorded run from its lineage and check the metrics match."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Re-run a registered run (same config, data and base model, all verified) and check the metrics match."
EXAMPLES = """\
  tunery reproduce runs/tickets                       # into runs/tickets-reproduced
  tunery reproduce 3fa9c2 --output /tmp/tickets-again

The data is found by dataset id: the original file if its content is unchanged, otherwise the
registry's stored copy. The base model's weights must hash to the recorded sha256. Final metrics
and every value in metrics.jsonl must match bitwise (training is deterministic on CPU with the
same number of threads); exit code 1 when they do not, or when the lineage cannot be honoured.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    parser.add_argument("--output", type=Path, help="new run directory (default: <run>-reproduced)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Column, Table

    from tunery.errors import TuneryError
    from tunery.home import tunery_home
    from tunery.lineage.reproduce import default_output, describe, reproduce
    from tunery.lineage.runs import find_run
    from tunery.store.registry import open_registry

    home = tunery_home()
    console = Console(stderr=False)
    with open_registry(home) as registry:
        original = find_run(registry, args.run, home)
        output = args.output or default_output(original)
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise TuneryError(f"{output} already exists", hint="choose another --output")
        console.print(f"reproducing run {original.id} ({original.path}) into {output}")
        result = reproduce(registry, original, output.resolve(), home)

    data = Table("role", "dataset", "read from", title="data (verified by content hash)", title_justify="left")
    for link in original.datasets:
        path, how = result.data[link.role]
        data.add_row(link.role, link.dataset_id[:16], escape(f"{path} ({how})"))
    console.print(data)
    table = Table(
        Column("metric", overflow="fold"),
        f"original {original.id}",
        f"reproduced {result.run.id}",
        "equal",
        title="final metrics",
        title_justify="left",
    )
    for check in result.metrics:
        table.add_row(check.name, repr(check.original), repr(check.reproduced), "yes" if check.same else "[red]NO[/]")
    console.print(table)
    equal, compared = result.logged_values
    console.print(f"metrics.jsonl: {equal} of {compared} logged values equal (timings left out)")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(("[green]" if result.ok else "[red]") + describe(result) + "[/]")
    return 0 if result.ok else 1
