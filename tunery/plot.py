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
    if any("reward_mean" in r for r in train):
        return _plot_rewards(run, train, valid, output)
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


def _plot_rewards(run: RunDir, train: list[dict], valid: list[dict], output: str | Path | None) -> Path:
    """Reinforcement fine-tuning: reward of the sampled answers, and the held-out greedy pass rate."""
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in train]
    mean = [r["reward_mean"] for r in train]
    std = [r.get("reward_std", 0.0) for r in train]
    fig, (ax_train, ax_valid) = plt.subplots(1, 2, figsize=(11, 4))
    ax_train.plot(steps, mean, label="mean reward")
    ax_train.fill_between(
        steps,
        [m - s for m, s in zip(mean, std, strict=True)],
        [m + s for m, s in zip(mean, std, strict=True)],
        alpha=0.2,
    )
    ax_train.plot(steps, [r["pass_rate"] for r in train], label="pass rate", alpha=0.8)
    ax_train.plot(steps, [r["zero_variance_fraction"] for r in train], ":", label="zero-variance groups", alpha=0.8)
    ax_train.set(xlabel="step", title="sampled answers (reward ± std)")
    ax_train.legend()
    if valid:
        ax_valid.plot([r["step"] for r in valid], [r["valid_pass_rate"] for r in valid], "o-", label="pass rate")
        ax_valid.plot([r["step"] for r in valid], [r["valid_mean_reward"] for r in valid], "s--", label="mean reward")
        ax_valid.legend()
    ax_valid.set(xlabel="step", title="held-out prompts, greedy (step 0 = base model)")
    fig.suptitle(run.path.name)
    fig.tight_layout()
    output = Path(output) if output else run.path / "rewards.png"
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
