"""Task score against forgetting for every checkpoint of a run: `tunery compare --checkpoints RUN`.

Each kept checkpoint is scored on the held-out file the way `select: best` scores it (loss, and the
task's grader where answers are short, tunery/eval/select.py), and its distance from the base is
measured the way `tunery compare` measures forgetting: the KL on the base's own answers to the
bundled general prompts (tunery/eval/forgetting.py). The table and a PNG next to the run's
`loss.png` show the trade-off, so the user can pick a checkpoint rather than take the last.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from tunery.errors import TuneryError
from tunery.eval.report import Score


class CheckpointTradeoff(BaseModel):
    step: int
    path: str
    loss: float = Field(description="per-token loss of the held-out references")
    metric: str | None
    score: float | None = Field(description="the task grader's mean, where answers are short")
    kl: Score = Field(description="per-token KL(base ‖ checkpoint) on the base's answers to general prompts")
    extra_nll: Score


class TradeoffReport(BaseModel):
    run: str
    data: str
    checkpoints: list[CheckpointTradeoff]
    plot: str | None = None


def checkpoint_tradeoff(
    run_dir: str | Path, data: str | Path, *, per_skill: int | None = None, device: str = "auto", log=None
) -> TradeoffReport:
    """Score every kept checkpoint of a LoRA or full run on `data`, and measure its forgetting
    (on the first `per_skill` general prompts of each skill; None: all of them).

    Raises:
        TuneryError: not a run directory, or no checkpoints kept.
    """
    from tunery.eval.evaluate import resolve_device
    from tunery.eval.forgetting import distribution_shift
    from tunery.eval.heldout import load_heldout
    from tunery.eval.select import graded_metric, score_checkpoint
    from tunery.eval.target import find_tuned
    from tunery.inference import Generator
    from tunery.models import resolve_model
    from tunery.train.checkpoint import list_checkpoints

    run = Path(run_dir)
    found = list_checkpoints(run / "checkpoints")
    if not found:
        raise TuneryError(
            f"{run} has no checkpoints", hint="give a run directory; `keep_checkpoints` sets how many a run keeps"
        )
    manifest = json.loads((found[0] / "tunery.json").read_text())
    items = load_heldout(data)
    metric = graded_metric(items)
    device = resolve_device(device)
    base = Generator(resolve_model(manifest.get("base_model_path") or manifest["base_model"]), device=device)
    rows = []
    for path in found:
        if find_tuned(path).kind == "full":
            generator, adapter = Generator(path, device=device), None
        else:
            generator, adapter = base, path.name
            base.add_adapter(adapter, path)
        task = score_checkpoint(generator, adapter, items, metric)
        shift = distribution_shift((base, None), (generator, adapter), per_skill=per_skill, log=log)
        step = int(json.loads((path / "tunery.json").read_text())["step"])
        rows.append(
            CheckpointTradeoff(step=step, path=str(path), metric=metric, kl=shift.kl, extra_nll=shift.extra_nll, **task)
        )
        if log:
            graded = f", {metric} {task['score']:.3f}" if metric else ""
            log(f"step {step}: held-out loss {task['loss']:.4f}{graded}, KL from the base {shift.kl.mean:.4f}")
    return TradeoffReport(run=str(run), data=str(data), checkpoints=rows)


def plot_tradeoff(report: TradeoffReport, output: str | Path) -> Path:
    """Task score (or held-out loss) against KL from the base, one labelled point per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.checkpoints
    graded = all(r.score is not None for r in rows)
    task = [r.score if graded else r.loss for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    kl = [r.kl.mean for r in rows]
    ax.errorbar(
        kl,
        task,
        xerr=[[r.kl.mean - r.kl.low for r in rows], [r.kl.high - r.kl.mean for r in rows]],
        fmt="o-",
        capsize=3,
    )
    for r, x, y in zip(rows, kl, task, strict=True):
        ax.annotate(f"step {r.step}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set(
        xlabel="forgetting: KL from the base on general prompts (nats/token)",
        ylabel=f"held-out {rows[0].metric}" if graded else "held-out loss (lower is better)",
        title=f"{Path(report.run).name}: task score against forgetting",
    )
    fig.tight_layout()
    output = Path(output)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def print_tradeoff(report: TradeoffReport, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    metric = report.checkpoints[0].metric
    table = Table(
        "checkpoint",
        "held-out loss",
        *([metric] if metric else []),
        "KL from base (95% CI)",
        "extra NLL",
        title=f"{report.run}: every checkpoint on {report.data}",
        title_justify="left",
    )
    for r in report.checkpoints:
        table.add_row(
            f"step {r.step}",
            f"{r.loss:.4f}",
            *([f"{r.score:.3f}"] if metric else []),
            f"{r.kl.mean:.4f} ({r.kl.low:.4f}..{r.kl.high:.4f})",
            f"{r.extra_nll.mean:+.4f}",
        )
    console.print(table)
    if report.plot:
        console.print(f"plot: {report.plot}")
