"""Loss curves of a run as a PNG, from its metrics.jsonl (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from tunery.errors import TuneryError
from tunery.train.rundir import RunDir


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir(run_dir)
    records = run.read_metrics()
    train = [r for r in records if r["type"] == "train"]
    if not train:
        raise TuneryError(f"{run_dir} has no training metrics yet (metrics.jsonl is empty or missing)")
    valid = [r for r in records if r["type"] == "valid"]
    loss_key = "train_loss"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["step"] for r in train], [r[loss_key] for r in train], label="train", alpha=0.8)
    if valid:
        ax_loss.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], "o-", label="validation")
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot([r["step"] for r in train], [r["train_mean_token_accuracy"] for r in train], label="train", alpha=0.8)
    if valid:
        ax_acc.plot(
            [r["step"] for r in valid], [r["valid_mean_token_accuracy"] for r in valid], "o-", label="validation"
        )
    ax_acc.set(xlabel="step", ylabel="token accuracy", title="mean token accuracy (trained tokens)")
    ax_acc.legend()
    fig.suptitle(str(Path(run_dir).name))
    fig.tight_layout()
    output = Path(output) if output else run.path / "loss.png"
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
