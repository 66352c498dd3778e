"""Which checkpoint becomes `final/`: every saved checkpoint scored on the validation set, the best kept.

With `select: best` a run keeps all its checkpoints until training ends; then each one is scored
on the validation file:

* **loss**, always: the per-token loss of the validation references (the tokens SFT trains on;
  for preference data, the preferred answer);
* **the task's grader**, where the answers are short enough to grade as right or wrong (labels,
  numbers, JSON, /patterns/: whatever `auto_grader_names` would pick other than the free-text
  overlap scores): greedy answers are generated and graded, because on such tasks the loss can
  keep falling while the answers stop improving.

The grader's mean decides when it was measured (ties go to the lower loss, then the earlier
step); otherwise the lowest loss does. The chosen checkpoint is published as `final/`, its
`tunery.json` records the choice and every score, and the other checkpoints are pruned back to
`keep_checkpoints` (the chosen one always stays).

`choose` and `score_checkpoint` are separate from publishing, so that anything else that weighs
checkpoints (early stopping, `tunery compare --checkpoints`) scores them the same way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from tunery.errors import TuneryError
from tunery.eval.heldout import HeldoutExample, load_heldout
from tunery.graders import auto_grader_names, resolve_graders

FREE_TEXT = "token_f1"  # auto_grader_names picks this first for answers too long to grade as right/wrong
MANIFEST = "tunery.json"


class CheckpointScore(BaseModel):
    step: int
    path: str
    loss: float = Field(description="per-token loss of the validation references (nats)")
    metric: str | None = Field(None, description="the grader scored, where answers are short")
    score: float | None = Field(None, description="the grader's mean over the validation set")


class Selection(BaseModel):
    step: int = Field(description="the checkpoint published as final/")
    last_step: int
    criterion: str = Field(description="what decided: the grader's name, or 'loss'")
    reason: str
    scores: list[CheckpointScore]


def choose(scores: Sequence[CheckpointScore]) -> CheckpointScore:
    """The best checkpoint: highest grader score (then lowest loss, then earliest), else lowest loss.

    >>> a = CheckpointScore(step=10, path="a", loss=0.5, metric="exact", score=0.8)
    >>> b = CheckpointScore(step=20, path="b", loss=0.3, metric="exact", score=0.7)
    >>> choose([a, b]).step, choose([a.model_copy(update={"metric": None, "score": None}), b]).step
    (10, 20)
    """
    if not scores:
        raise ValueError("no checkpoints to choose from")
    if all(s.score is not None for s in scores):
        return min(scores, key=lambda s: (-s.score, s.loss, s.step))
    return min(scores, key=lambda s: (s.loss, s.step))


def graded_metric(items: Sequence[HeldoutExample]) -> str | None:
    """The grader for these references if their answers are short, else None (loss decides)."""
    first = auto_grader_names([item.reference for item in items])[0]
    return None if first == FREE_TEXT else first


def score_checkpoint(generator, adapter: str | None, items: Sequence[HeldoutExample], metric: str | None) -> dict:
    """{'loss': ..., 'score': ...} of one loaded model (the generator with `adapter` active)."""
    from tunery.eval.evaluate import evaluate_items
    from tunery.eval.loss import reference_losses

    if metric is None:
        with generator.use_adapter(adapter):
            losses = reference_losses(generator.model, generator.tokenizer, items, device=generator.device)
        return {"loss": sum(x.nll for x in losses) / max(sum(x.tokens for x in losses), 1), "score": None}
    graders, _ = resolve_graders([metric], [i.reference for i in items], [i.where for i in items])
    report = evaluate_items(generator, items, graders, system="checkpoint", model="", data="", adapter=adapter)
    return {"loss": report.loss.loss if report.loss else float("nan"), "score": report.metrics[metric].mean}


def score_checkpoints(
    checkpoints: Sequence[Path], validation: str | Path, *, base: str, device: str = "auto", log=None
) -> list[CheckpointScore]:
    """Score each checkpoint (LoRA adapters share one loaded base; full checkpoints load one by one).

    Adapters stay attached once scored: peft cannot delete the only adapter of a model, and a
    LoRA adapter is a few percent of the base.
    """
    from tunery.eval.evaluate import resolve_device
    from tunery.eval.target import find_tuned
    from tunery.inference import Generator
    from tunery.models import resolve_model

    items = load_heldout(validation)
    metric = graded_metric(items)
    device = resolve_device(device)
    base_generator = None
    scores = []
    for path in checkpoints:
        tuned = find_tuned(path)
        if tuned.kind == "full":
            generator, adapter = Generator(tuned.path, device=device), None
        else:
            base_generator = base_generator or Generator(resolve_model(base), device=device)
            generator, adapter = base_generator, path.name
            generator.add_adapter(adapter, path)
        found = score_checkpoint(generator, adapter, items, metric)
        step = int(json.loads((path / MANIFEST).read_text())["step"])
        scores.append(CheckpointScore(step=step, path=str(path), metric=metric, **found))
        if log:
            graded = f", {metric} {found['score']:.3f}" if metric else ""
            log(f"checkpoint step {step}: validation loss {found['loss']:.4f}{graded}")
    return scores


def select_final(run_dir: str | Path, *, device: str = "auto", log: Callable[[str], None] | None = None) -> Selection:
    """Score a finished run's checkpoints, publish the best as `final/`, prune the rest.

    Raises:
        TuneryError: the run has no validation file or no checkpoints to choose from.
    """
    from tunery.train.checkpoint import list_checkpoints
    from tunery.train.config import load_config
    from tunery.train.rundir import RunDir

    run = RunDir(run_dir)
    config = load_config(run.config_file)
    if config.validation is None:
        raise TuneryError(f"{run.path}: select=best scores checkpoints on the validation set, and the run has none")
    found = list_checkpoints(run.checkpoints)
    if not found:
        raise TuneryError(f"{run.path}: no checkpoints to choose from")
    final_manifest = json.loads((run.final / MANIFEST).read_text())
    scores = score_checkpoints(found, config.validation, base=final_manifest["base_model_path"], device=config.device)
    best = choose(scores)
    last = max(s.step for s in scores)
    criterion = best.metric or "loss"
    reason = (
        f"step {best.step} of {last}: "
        + (f"highest {criterion} ({best.score:.3f})" if best.metric else f"lowest validation loss ({best.loss:.4f})")
        + f" of {len(scores)} checkpoints"
    )
    selection = Selection(step=best.step, last_step=last, criterion=criterion, reason=reason, scores=scores)
    publish_checkpoint(run.final, Path(best.path), final_manifest, selection)
    prune(found, keep=config.keep_checkpoints, chosen=Path(best.path))
    if log:
        log(f"final/ is the checkpoint at {reason}")
    return selection


def publish_checkpoint(final: Path, checkpoint: Path, manifest: dict, selection: Selection) -> None:
    """Make `final/` hold the checkpoint's model files and a manifest recording the selection."""
    from tunery.fsio import atomic_write
    from tunery.train.checkpoint import publish

    chosen = json.loads((checkpoint / MANIFEST).read_text())
    tmp = final.with_name(".final.select.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # final/ holds the last step's model, or with early stopping the best step's (its manifest says which).
    if selection.step == manifest.get("step", selection.last_step):
        shutil.copytree(final, tmp)
    else:
        shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns("trainer_state.pt", MANIFEST))
        if (final / "README.md").is_file():
            shutil.copy2(final / "README.md", tmp / "README.md")
        manifest = {**manifest, "metrics": chosen.get("metrics", {})}
    manifest = {**manifest, "step": selection.step, "selection": selection.model_dump(mode="json")}
    atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=2, default=str))
    publish(tmp, final)


def prune(checkpoints: Sequence[Path], *, keep: int, chosen: Path) -> None:
    """Delete all but the newest `keep` checkpoints and the chosen one."""
    for path in checkpoints[:-keep]:
        if path != chosen:
            shutil.rmtree(path, ignore_errors=True)
