"""`tunery monitor`: input drift of a deployed model, and scheduled re-evaluation with alerts."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HELP = "Watch a fine-tuned model: input drift against its training data, scheduled re-evaluation, alerts."
EXAMPLES = """\
  tunery monitor drift runs/tickets --since 7d          # logged prompts vs the run's training data
  tunery monitor drift 3fa9c2 --prompts recent.jsonl --json
  tunery monitor add runs/tickets --eval heldout.jsonl --every 1d --threshold 0.05 \\
      --webhook https://hooks.example.com/tunery
  tunery monitor run                                     # cron: */15 * * * * tunery monitor run
  tunery serve --monitor-every 60s                       # or the server runs due suites itself
  tunery monitor report runs/tickets --output tickets-history.png
  tunery monitor list

MODEL is a run directory, a run id (or unique prefix), or a fine-tuned model name (ft:...).
Prompt logging is opt-in: start the server with TUNERY_LOG_PROMPTS=1 (kept
TUNERY_PROMPT_RETENTION_DAYS days, default 30). Drift levels: ok (score < 0.5), warn (< 1),
alert (>= 1; exit code 1). `monitor run` exits 1 when any suite alerts or fails, 0 otherwise,
and also prunes prompt logs past their retention.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    drift = actions.add_parser("drift", help="compare recent prompts with the model's training prompts")
    drift.add_argument("model", metavar="MODEL")
    drift.add_argument("--since", help="only prompts from this long ago or this date on (7d, 12h, 2025-06-01)")
    drift.add_argument("--prompts", type=Path, help="a JSONL of requests ({'messages': [...]}) instead of the log")
    drift.add_argument("--examples", type=int, default=5, help="most distant prompts to show (default 5)")
    drift.add_argument("--json", action="store_true", help="machine-readable output")

    add = actions.add_parser("add", help="register an eval suite for a model")
    add.add_argument("model", metavar="MODEL")
    add.add_argument("--eval", required=True, type=Path, help="held-out JSONL, re-read on every run")
    add.add_argument("--every", required=True, help="interval: 90s, 30m, 12h, 1d, 1w")
    add.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="alert when a metric falls more than this below its baseline (default 0.05; error at 2x)",
    )
    add.add_argument("--graders", help="comma-separated graders (default: chosen from the references)")
    add.add_argument(
        "--webhook",
        default=os.environ.get("TUNERY_MONITOR_WEBHOOK"),
        help="POST alerts here as JSON (default $TUNERY_MONITOR_WEBHOOK)",
    )

    run_parser = actions.add_parser("run", help="run every suite that is due (cron-friendly, idempotent)")
    run_parser.add_argument("--force", action="store_true", help="run the chosen suites even if not due")
    run_parser.add_argument("--suite", action="append", help="only this suite (repeatable)")
    run_parser.add_argument(
        "--device", default="auto", type=_device, help="auto, cpu, cuda or cuda:N (the server passes its own)"
    )
    run_parser.add_argument("--json", action="store_true", help="machine-readable output")

    report = actions.add_parser("report", help="a model's evaluation history: table and PNG plot")
    report.add_argument("model", metavar="MODEL")
    report.add_argument("--output", type=Path, default=Path("monitor-history.png"), help="PNG path")
    report.add_argument("--json", action="store_true", help="machine-readable output (no plot)")

    listing = actions.add_parser("list", help="the registered suites")
    listing.add_argument("model", metavar="MODEL", nargs="?")


def _device(text: str) -> str:
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, cpu, cuda or cuda:N")
    return text


def run(args: argparse.Namespace) -> int:
    from tunery.home import tunery_home
    from tunery.store.registry import open_registry

    home = tunery_home()
    with open_registry(home) as registry:
        return ACTIONS[args.action](registry, home, args)


def _progress(message: str) -> None:
    print(f"[monitor] {message}", file=sys.stderr, flush=True)


# -- drift ---------------------------------------------------------------------------------------


def _texts_of(path: Path, since: float | None = None) -> list[str]:
    """Prompt texts from a JSONL of requests, log lines, chat or preference examples."""
    from tunery.data.formats import iter_jsonl
    from tunery.monitor.drift import prompt_text

    texts = []
    for _, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            continue
        if since is not None and isinstance(obj.get("ts"), (int, float)) and obj["ts"] < since:
            continue
        messages = obj.get("messages") or (obj.get("input") or {}).get("messages") or []
        text = prompt_text(messages)
        if text.strip():
            texts.append(text)
    return texts


def _logged_texts(registry, home, model: str, run, since: float | None) -> tuple[list[str], list[str]]:
    """Prompts logged for `model` itself or for any served name that maps to the same run."""
    from tunery.monitor.drift import prompt_text
    from tunery.monitor.prompt_log import logged_models, read_log

    logs = logged_models(home)
    names = [name for name in logs if name == model or _names_run(registry, home, name, run.id)]
    texts = [prompt_text(entry.messages) for name in names for entry in read_log(logs[name], since=since)]
    return [t for t in texts if t.strip()], names


def _names_run(registry, home, name: str, run_id: str) -> bool:
    from tunery.errors import TuneryError
    from tunery.lineage.runs import find_run

    try:
        return find_run(registry, name, home).id == run_id
    except TuneryError:
        return False


def _drift(registry, home, args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from tunery.errors import TuneryError
    from tunery.lineage.datasets import locate
    from tunery.lineage.runs import find_run
    from tunery.monitor.drift import measure_drift
    from tunery.monitor.periods import parse_since

    run = find_run(registry, args.model, home)
    train_link = next((d for d in run.datasets if d.role == "train" and d.dataset_id), None)
    if train_link is None:
        raise TuneryError(f"run {run.id} has no identifiable training data to compare with")
    train_path, _ = locate(registry, train_link.dataset_id, train_link.path)
    since = parse_since(args.since, time.time()) if args.since else None
    if args.prompts:
        recent, source = _texts_of(args.prompts, since), str(args.prompts)
    else:
        recent, names = _logged_texts(registry, home, args.model, run, since)
        source = "prompt log of " + (", ".join(names) or args.model)
    if not recent:
        raise TuneryError(
            f"no recent prompts for {args.model}" + (f" since {args.since}" if args.since else "") + f" ({source})",
            hint="start the server with TUNERY_LOG_PROMPTS=1 so prompts are logged, or pass --prompts FILE",
        )
    _progress(f"comparing {len(recent)} prompts from {source} with the training data of run {run.id}")
    report = measure_drift(args.model, _texts_of(train_path), recent, examples=args.examples)
    if args.json:
        print(json.dumps({**report.to_dict(), "run": run.id, "source": source}, indent=2))
        return 1 if report.level == "alert" else 0
    console = Console()
    table = Table(
        "signal",
        "value",
        "noise",
        "excess",
        "alert at",
        "level",
        title_justify="left",
        title=f"drift of {report.recent_prompts} prompts vs {report.train_prompts} training prompts (run {run.id})",
    )
    for name, signal in report.signals.items():
        table.add_row(
            name,
            f"{signal.value:.3f}",
            f"{signal.noise:.3f}",
            f"{signal.excess:.3f}",
            f"{signal.alert_at:g}",
            signal.level,
        )
    console.print(table)
    words = report.mean_words
    console.print(f"mean prompt length: {words['train']:.1f} words in training, {words['recent']:.1f} now")
    style = {"ok": "green", "warn": "yellow", "alert": "red"}[report.level]
    console.print(
        f"[bold]drift score {report.score:.2f}: [{style}]{report.level}[/][/] "
        "(ok < 0.5 ≤ warn < 1 ≤ alert; 1 = a signal exceeded chance by its alert threshold)"
    )
    far = Table(
        "similarity", "recent prompt", "nearest training prompt", title="most distant prompts", title_justify="left"
    )
    for example in report.most_distant:
        far.add_row(f"{example.similarity:.2f}", escape(example.text[:120]), escape(example.nearest_training[:80]))
    console.print(far)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    return 1 if report.level == "alert" else 0


# -- scheduled evaluation ------------------------------------------------------------------------


def _add(registry, home, args) -> int:
    from tunery.lineage.runs import find_run
    from tunery.monitor.periods import parse_duration
    from tunery.monitor.schedule import add_suite

    run = find_run(registry, args.model, home)
    graders = [g.strip() for g in args.graders.split(",") if g.strip()] if args.graders else None
    suite = add_suite(
        registry,
        run,
        args.eval,
        every_s=parse_duration(args.every),
        threshold=args.threshold,
        graders=graders,
        webhook=args.webhook,
    )
    print(
        f"added {suite.id}: run {run.id} on {suite.eval_path} every {args.every}, "
        f"alert below baseline − {suite.threshold:g}" + (f", webhook {suite.webhook}" if suite.webhook else "")
    )
    print("it is due now: `tunery monitor run` records its baseline")
    return 0


def _run(registry, home, args) -> int:
    from tunery.monitor.prompt_log import prune, settings_from_env
    from tunery.monitor.schedule import run_due

    dropped = prune(home, settings_from_env().retention_days)
    if dropped:
        _progress(f"pruned {dropped} logged prompts past their retention")
    suite_ids = [registry.get_suite(ref).id for ref in args.suite] if args.suite else None
    outcomes = run_due(registry, home, force=args.force, suite_ids=suite_ids, device=args.device, log=_progress)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "suite": o.suite.id,
                        "run": o.suite.run_id,
                        "level": o.level,
                        "message": o.message,
                        "metrics": o.metrics,
                        "webhook_error": o.webhook_error,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    elif not outcomes:
        print("nothing due")
    for o in outcomes:
        line = f"{o.suite.id} (run {o.suite.run_id}): {o.message}"
        if o.level == "ok":
            if not args.json:
                print(f"ok: {line}")
        else:  # warn, error or failed: on stderr, as the CLI's other problems are
            print(f"{'warning' if o.level == 'warn' else 'error'}: {line}", file=sys.stderr)
        if o.webhook_error:
            print(f"warning: webhook {o.suite.webhook} failed: {o.webhook_error}", file=sys.stderr)
    return 1 if any(o.level != "ok" for o in outcomes) else 0


def _report(registry, home, args) -> int:
    from tunery.lineage.runs import find_run
    from tunery.monitor.report import history, history_dict, plot_history, print_history

    run = find_run(registry, args.model, home)
    found = history(registry, run)
    if args.json:
        print(json.dumps({"run": run.id, "suites": history_dict(found)}, indent=2))
        return 0
    print_history(run, found)
    print(f"plot: {plot_history(run, found, args.output)}")
    return 0


def _list(registry, home, args) -> int:
    from datetime import datetime

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from tunery.lineage.runs import find_run

    run_id = find_run(registry, args.model, home).id if args.model else None
    table = Table("suite", "run", "eval", "every", "threshold", "next due", "baseline", title_justify="left")
    for s in registry.suites(run_id):
        baseline = ", ".join(f"{k} {v:.3f}" for k, v in (s.baseline or {}).items()) or "-"
        due = datetime.fromtimestamp(s.next_due).isoformat(sep=" ", timespec="seconds")
        table.add_row(s.id, s.run_id, escape(s.eval_path), f"{s.every_s}s", f"{s.threshold:g}", due, baseline)
    Console().print(table)
    return 0


ACTIONS = {"drift": _drift, "add": _add, "run": _run, "report": _report, "list": _list}
