"""`tunery validate`: check a JSONL dataset and print its problems by line, its statistics and,
with --show, exactly which tokens of a few examples are trained.

The checking itself lives in `tunery.data.validate` (shared with the server); this module only
loads the tokenizer and prints. Exit codes: 0 valid (warnings allowed), 1 the data has errors,
2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.commands.arguments import positive_int
from tunery.errors import TuneryError

if TYPE_CHECKING:
    from rich.console import Console

    from tunery.data.render import ChatTokenizer
    from tunery.data.validate import Issue, Stats, ValidationReport

HELP = "Check a JSONL dataset (chat or preference): every problem with its line, plus statistics."
EXAMPLES = """\
  tunery validate train.jsonl
  tunery validate train.jsonl --validation valid.jsonl
  tunery validate train.jsonl --model smollm2-135m-instruct --max-seq-len 1024
  tunery validate train.jsonl --model smollm2-135m-instruct --show 2   # trained tokens marked ⟦…⟧
  tunery validate train.jsonl --json > report.json

exit codes: 0 valid (warnings allowed), 1 the data has errors, 2 usage or I/O error
"""

SHOWN_PER_CODE = 3  # distinct messages printed per code; --json has every issue
LINES_PER_CODE = 6  # line numbers listed per code in the summary table
TRAINED_OPEN, TRAINED_CLOSE = "⟦", "⟧"  # marks trained tokens where there is no colour


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="training data, one JSON example per line")
    parser.add_argument(
        "--validation",
        type=Path,
        metavar="FILE",
        help="validation data: checked too, and for examples shared with FILE",
    )
    parser.add_argument(
        "--model",
        metavar="M",
        help="model reference (embedded name, directory, .gguf, hub id): adds token statistics, "
        "truncation and end-of-turn checks through its chat template",
    )
    parser.add_argument(
        "--max-seq-len",
        type=positive_int,
        metavar="N",
        help="warn about examples longer than N tokens (needs --model; default: the model's context length)",
    )
    parser.add_argument(
        "--show",
        type=positive_int,
        metavar="N",
        help="print the first N valid examples as the model sees them, trained tokens highlighted (needs --model)",
    )
    parser.add_argument(
        "--grader",
        type=Path,
        metavar="GRADER",
        help="check FILE as reinforcement fine-tuning prompts for this grader JSON: each conversation "
        "ends on a user or developer turn, and has every {{item.x}} field the grader reads",
    )
    parser.add_argument(
        "--special-tokens",
        choices=["warn", "refuse", "escape"],
        default="warn",
        help="a chat template's special token inside message text (<|im_end|>) can forge a turn: "
        "warn (default), refuse (an error, exit 1) or escape (report what is tokenised as plain text); "
        "the same choice as `tunery train special_tokens=...`",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report, every issue, as JSON")


def run(args: argparse.Namespace) -> int:
    if args.grader is not None:
        return _run_rft(args)
    from tunery.api import validate

    needs_model = [flag for flag, value in (("--max-seq-len", args.max_seq_len), ("--show", args.show)) if value]
    if needs_model and not args.model:
        raise TuneryError(
            f"{' and '.join(needs_model)} {'needs' if len(needs_model) == 1 else 'need'} --model "
            "(a tokenizer and its chat template)",
            hint="add --model smollm2-135m-instruct, or the model you will train",
        )
    report = validate(
        args.file,
        validation=args.validation,
        model=args.model,
        max_seq_len=args.max_seq_len,
        special_tokens=args.special_tokens,
    )
    shown = []
    if args.show:
        from tunery.data.render import ChatTokenizer
        from tunery.models import resolve_model

        escape = args.special_tokens == "escape"
        tokenizer = ChatTokenizer.from_dir(resolve_model(args.model), escape_special_tokens=escape)
        shown = _render_examples(args.file, tokenizer, report.stats.max_seq_len, args.show)

    try:
        if args.json:
            data = report.to_dict()
            if args.show:
                data["shown"] = [{k: v for k, v in s.items() if k != "pieces"} for s in shown]
            print(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            from rich.console import Console

            console = Console(markup=False, highlight=False)
            _print_report(console, report)
            if shown:
                _print_shown(console, shown)
            _print_verdict(console, report)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`tunery validate ... | head`): not an error. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0 if report.ok else 1


def _run_rft(args: argparse.Namespace) -> int:
    """Reinforcement fine-tuning prompts: every line checked against the grader's fields."""
    from tunery.data.rft import validate_rft_file
    from tunery.graders.grading import item_fields
    from tunery.graders.objects import load_grader

    fields = item_fields(load_grader(args.grader))
    counts = {}
    for path in [args.file, *([args.validation] if args.validation else [])]:
        examples, issues = validate_rft_file(path, fields)
        counts[str(path)] = (len(examples), issues)
    if args.json:
        print(
            json.dumps(
                {p: {"examples": n, "issues": [i.model_dump() for i in issues]} for p, (n, issues) in counts.items()},
                indent=2,
            )
        )
    else:
        for path, (n, issues) in counts.items():
            for found in issues:
                print(f"{path}: line {found.line}: {found.code}: {found.message}")
            verdict = "ok" if not issues else f"{len(issues)} error(s)"
            print(f"{path}: {n} valid prompt(s) for reinforcement fine-tuning; {verdict}")
    return 0 if all(not issues for _, issues in counts.values()) else 1


def _context_length(model_dir: Path) -> int | None:
    config = json.loads((model_dir / "config.json").read_text())
    return config.get("max_position_embeddings")


# --- --show ----------------------------------------------------------------------------------


def _render_examples(path: Path, tok: ChatTokenizer, max_seq_len: int | None, n: int) -> list[dict]:
    """Render the first n valid examples: token pieces with their trained flag, and a marked text."""
    from tunery.data.formats import PreferenceExample, to_example
    from tunery.data.render import render_chat, show_tokens
    from tunery.data.validate import first_valid_examples

    shown = []
    for line, obj in first_valid_examples(path, n):
        example = to_example(obj, line)
        if isinstance(example, PreferenceExample):
            chats = [("preferred", example.as_chat("chosen")), ("non-preferred", example.as_chat("rejected"))]
        else:
            chats = [("chat", example)]
        for which, chat in chats:
            try:
                rendered = render_chat(chat, tok, max_seq_len)
            except Exception as exc:  # noqa: BLE001 - third-party template; validate reported it already
                shown.append({"line": line, "which": which, "error": str(exc)})
                continue
            pieces = show_tokens(rendered, tok)
            shown.append(
                {
                    "line": line,
                    "which": which,
                    "tokens": len(rendered.input_ids),
                    "trained_tokens": rendered.trained_tokens,
                    "truncated": rendered.truncated,
                    "text": _marked_text(pieces),
                    "pieces": pieces,
                }
            )
    return shown


def _marked_text(pieces: list[tuple[str, bool]]) -> str:
    """The rendered text with every run of trained tokens wrapped in ⟦ ⟧, readable without colour."""
    out, inside = [], False
    for text, trained in pieces:
        if trained != inside:
            out.append(TRAINED_OPEN if trained else TRAINED_CLOSE)
            inside = trained
        out.append(text)
    if inside:
        out.append(TRAINED_CLOSE)
    return "".join(out)


def _print_shown(console: Console, shown: list[dict]) -> None:
    from rich.rule import Rule
    from rich.text import Text

    legend = f"{TRAINED_OPEN}like this{TRAINED_CLOSE}" if not console.is_terminal else "in green"
    console.print(f"Rendered examples (trained tokens {legend}):", style="bold")
    for item in shown:
        title = f"line {item['line']}" + ("" if item["which"] == "chat" else f" · {item['which']}")
        if "error" in item:
            console.print(Rule(title, align="left"))
            console.print(f"cannot render: {item['error']}", style="red")
            continue
        cut = f" · {item['truncated']} cut by max_seq_len" if item["truncated"] else ""
        counts = f"{item['tokens']} tokens, {item['trained_tokens']} trained{cut}"
        console.print(Rule(f"{title} · {counts}", align="left"))
        if console.is_terminal:
            text = Text()
            for piece, trained in item["pieces"]:
                text.append(piece, style="bold black on green" if trained else "")
            text.rstrip()
            console.print(text, soft_wrap=True)
        else:
            console.print(item["text"].rstrip(), soft_wrap=True)
    console.print()


# --- the report --------------------------------------------------------------------------------


def _places(file: str, issues: list[Issue], report: ValidationReport) -> str:
    """'line 4', 'lines 4, 9, 12 …' or 'whole file', prefixed with the file name when there are two."""
    lines = [i.line for i in issues if i.line is not None]
    if not lines:
        place = "whole file"
    else:
        more = " …" if len(lines) > LINES_PER_CODE else ""
        place = f"line{'s' * (len(lines) > 1)} " + ", ".join(map(str, lines[:LINES_PER_CODE])) + more
    return f"{Path(file).name} {place}" if report.validation_file else place


def _where(issue: Issue, report: ValidationReport) -> str:
    place = "whole file" if issue.line is None else f"line {issue.line}"
    return f"{Path(issue.file).name} {place}" if report.validation_file else place


def _print_report(console: Console, report: ValidationReport) -> None:
    from rich.table import Table

    s = report.stats
    kind = f"{s.format} " if s.format else ""
    console.print(f"{report.file}: {s.lines:,} lines, {s.examples:,} valid {kind}examples", style="bold")
    if report.validation_file:
        console.print(f"{report.validation_file}: {s.validation_examples or 0:,} valid examples (validation)")
    if report.issue_counts:
        by_code: dict[str, list[Issue]] = {}
        for issue in report.issues:
            by_code.setdefault(issue.code, []).append(issue)
        # errors first, then the most frequent
        codes = sorted(report.issue_counts, key=lambda c: (_severity(c) != "error", -report.issue_counts[c], c))
        table = Table("code", "level", "count", "lines", title="Issues", title_justify="left")
        for code in codes:
            count = report.issue_counts[code]
            lines = [_where(i, report) for i in by_code.get(code, [])[:LINES_PER_CODE]]
            lines_text = ", ".join(x.removeprefix("line ") for x in lines) + (" …" if count > len(lines) else "")
            style = "red" if _severity(code) == "error" else "yellow"
            table.add_row(code, _severity(code), f"{count:,}", lines_text, style=style)
        console.print()
        console.print(table)
        for code in codes:
            console.print(f"{code} ({report.issue_counts[code]:,})", style="bold")
            # The same message on many lines is printed once, with its first lines.
            groups: dict[tuple[str, str], list[Issue]] = {}
            for issue in by_code.get(code, []):
                key = (issue.file, issue.message)
                if key in groups or len(groups) < SHOWN_PER_CODE:
                    groups.setdefault(key, []).append(issue)
            for (file, message), issues in groups.items():
                console.print(f"  {_places(file, issues, report)}: {message}", soft_wrap=True)
            rest = report.issue_counts[code] - sum(map(len, groups.values()))
            if rest:
                console.print(f"  … {rest:,} more; --json lists them all", style="dim")
    console.print()
    _print_stats(console, s)
    console.print()


def _severity(code: str) -> str:
    from tunery.data.rules import CODES

    return CODES[code]


def _fmt_summary(summary) -> str:
    if summary is None:
        return "-"
    return f"min {summary.min:,} · mean {summary.mean:,.1f} · p95 {summary.p95:,.1f} · max {summary.max:,}"


def _print_stats(console: Console, s: Stats) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, title="Statistics", title_justify="left", padding=(0, 2, 0, 0))
    validation = f" (+{s.validation_examples:,} validation)" if s.validation_examples else ""
    table.add_row("examples", f"{s.examples:,}{validation}")
    table.add_row("messages per example", _fmt_summary(s.messages_per_example))
    if s.tokens_per_example:
        for role, summary in s.tokens_per_example.items():
            label = "tokens per example (rendered)" if role == "total" else f"{role} tokens per example"
            table.add_row(label, _fmt_summary(summary))
    if s.trained_tokens is not None:
        table.add_row("trained tokens per epoch", f"{s.trained_tokens:,}")
    if s.max_seq_len is not None:
        table.add_row("over max_seq_len", f"{s.truncated_examples:,} examples (max_seq_len {s.max_seq_len:,})")
    if s.estimated_epochs is not None:
        total = f", {s.estimated_trained_tokens:,} trained tokens in all" if s.estimated_trained_tokens else ""
        table.add_row("epochs (auto)", f"{s.estimated_epochs}{total}")
    if s.tokens_per_example is None:
        table.add_row("tokens", "add --model M for token counts, truncation and the end-of-turn check")
    console.print(table)


def _print_verdict(console: Console, report: ValidationReport) -> None:
    errors, warnings = report.error_count, report.warning_count
    if report.ok:
        note = f" with {warnings:,} warning{'s' * (warnings != 1)}" if warnings else ""
        console.print(f"OK: valid{note}.", style="bold green")
    else:
        console.print(
            f"FAILED: {errors:,} error{'s' * (errors != 1)}, {warnings:,} warning{'s' * (warnings != 1)}. "
            "Fix the errors and run again; --json lists every issue.",
            style="bold red",
            soft_wrap=True,
        )
