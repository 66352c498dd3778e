"""The evaluation report: a summary (metrics with intervals, loss) and one record per example.

The summary goes to `report.json`; the examples go next to it as `report.examples.jsonl`, one
line each with prompt, reference, output and scores, so that a person can read the failures
(`grep '"exact": 0.0'` finds them). Both writes are atomic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from tunery.fsio import atomic_write


class Score(BaseModel):
    """A grader's mean over the examples, with its 95% bootstrap interval."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, interval) -> Score:
        """From a `stats.Interval`."""
        return cls(mean=interval.estimate, low=interval.low, high=interval.high)


class LossSummary(BaseModel):
    """Per-token loss on the reference turns (nats), its interval, and exp(loss)."""

    loss: float
    low: float
    high: float
    perplexity: float
    tokens: int = Field(description="reference tokens the loss is averaged over")
    examples: int = Field(description="examples that had a text reference to score")


class ExampleResult(BaseModel):
    where: str = Field(description="file:line of the held-out example")
    prompt: list[dict]
    reference: str
    output: str
    scores: dict[str, float]
    loss: float | None = Field(description="mean loss per reference token, nats")
    prompt_tokens: int
    output_tokens: int
    finish_reason: str


class EvalReport(BaseModel):
    system: str = Field(description="what was evaluated: model, zero_shot, few_shot or tuned")
    model: str
    adapter: str | None
    data: str
    n: int
    graders: list[str]
    skipped: dict[str, str] = Field(description="graders that were asked for but not run, and why")
    metrics: dict[str, Score]
    loss: LossSummary | None
    max_new_tokens: int
    prompt_tokens_per_request: float
    output_tokens_per_request: float
    hit_length_limit: int = Field(description="answers cut off by max_new_tokens")
    response_format: str | None = Field(None, description="the format file the answers were constrained to")
    without_format: dict[str, Score] | None = Field(
        None, description="with a response format: the metrics of the same model answering unconstrained"
    )
    seconds: float
    examples: list[ExampleResult] = Field(default_factory=list, repr=False)

    def to_dict(self, examples: bool = False) -> dict:
        """The summary as plain JSON types; the per-example records only when asked for."""
        return self.model_dump(mode="json", exclude=None if examples else {"examples"})


def examples_path(report_path: str | Path) -> Path:
    """`report.json` → `report.examples.jsonl`, beside it."""
    path = Path(report_path)
    return path.with_name(f"{path.stem}.examples.jsonl")


def write_json_and_examples(summary: dict, rows: list[dict], path: str | Path) -> tuple[Path, Path]:
    """Write a summary JSON at `path` and the per-example rows beside it; returns both paths."""
    path = Path(path)
    rows_path = examples_path(path)
    atomic_write(rows_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    atomic_write(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return path, rows_path


def write_eval_report(report: EvalReport, path: str | Path) -> tuple[Path, Path]:
    """Write `report.json` and `report.examples.jsonl`."""
    rows = [row.model_dump(mode="json") for row in report.examples]
    return write_json_and_examples(report.to_dict(), rows, path)


def format_score(score: Score, digits: int | None = None) -> str:
    """`0.750 (0.60..0.88)`; with `digits`, the mean and both bounds to that many decimals."""
    if digits is not None:
        return f"{score.mean:.{digits}f} ({score.low:.{digits}f}..{score.high:.{digits}f})"
    return f"{score.mean:.3f} ({score.low:.2f}..{score.high:.2f})"


def print_eval_report(report: EvalReport, console=None) -> None:
    """A table of the metrics with their intervals, then the loss and the token counts."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    title = (
        f"{report.model}"
        + (f" + {report.adapter}" if report.adapter else "")
        + f" on {report.data} ({report.n} examples)"
    )
    # The title goes above the table, not in it: a two-column table is narrow, and a title held to
    # its width breaks a model path over several lines.
    console.print(title, highlight=False)
    if report.without_format is not None:
        table = Table("metric", f"with {Path(report.response_format).name} (95% CI)", "unconstrained (95% CI)")
        for name, score in report.metrics.items():
            table.add_row(name, format_score(score), format_score(report.without_format[name]))
    else:
        table = Table("metric", "mean (95% CI)")
        for name, score in report.metrics.items():
            table.add_row(name, format_score(score))
    if report.loss:
        loss = report.loss
        # Three decimals on the bounds too: a tuned model's loss is often below 0.01.
        pad = [""] if report.without_format is not None else []
        table.add_row("loss (nats/token)", f"{loss.loss:.3f} ({loss.low:.3f}..{loss.high:.3f})", *pad)
        table.add_row("perplexity", f"{loss.perplexity:.2f}", *pad)
    console.print(table)
    for name, why in report.skipped.items():
        console.print(f"[yellow]{name}[/]: {why}")
    console.print(
        f"per request: {report.prompt_tokens_per_request:.0f} prompt tokens, "
        f"{report.output_tokens_per_request:.1f} answer tokens; {report.hit_length_limit} answers hit "
        f"max_new_tokens={report.max_new_tokens}; {report.seconds:.1f}s"
    )


def show_report(summary: dict, written: tuple[Path, Path], *, as_json: bool, print_table: Callable[[], None]) -> None:
    """How `tunery eval` and `tunery compare` end: the summary as JSON on stdout (`--json`, nothing
    else there, so it pipes into jq), or the table followed by where the summary and the answers went.
    """
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print_table()
    print(f"summary: {written[0]}\nanswers: {written[1]}")
