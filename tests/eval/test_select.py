"""select=best: every checkpoint scored on the validation set, the best one published as final/."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from builders import run_cli
from safetensors.torch import load_file, save_file

from tunery.eval.select import CheckpointScore, choose, select_final

# Early stopping off: these checkpoints are the save_every ones only (early stopping saves each new best too).
TINY = [
    "n_epochs=2",
    "batch_size=8",
    "save_every=2",
    "keep_checkpoints=1",
    "lora.r=4",
    "seed=3",
    "final_eval=false",
    "early_stopping=off",
]


@pytest.fixture(scope="module")
def best_run(tiny_model_dir, chat_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("select") / "run"
    result = run_cli(
        "train", "--model", tiny_model_dir, "--data", chat_data[0], "--validation", chat_data[1],
        "--output", out, *TINY, "select=best",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_best_run_publishes_the_best_scored_checkpoint(best_run):
    out, result = best_run
    manifest = json.loads((out / "final" / "tunery.json").read_text())
    selection = manifest["selection"]
    scores = [CheckpointScore(**s) for s in selection["scores"]]
    assert [s.step for s in scores] == [2, 4, 6, 8, 10, 12]  # every checkpoint was kept until scored
    assert scores[0].metric == "exact"  # one-word labels: generated and graded, not only the loss
    assert selection["step"] == choose(scores).step == manifest["step"]
    assert f"final/ is the checkpoint at step {selection['step']} of 12" in result.stdout
    # Pruned back to keep_checkpoints=1, and the chosen checkpoint stays.
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == sorted({"step-000012", f"step-{selection['step']:06d}"})
    chosen = out / "checkpoints" / f"step-{selection['step']:06d}"
    assert (out / "final" / "adapter_model.safetensors").read_bytes() == (
        chosen / "adapter_model.safetensors"
    ).read_bytes()
    card = (out / "final" / "README.md").read_text()
    assert f"step {selection['step']} of 12" in card  # the model card says which and why


def test_a_worse_last_checkpoint_is_not_published(best_run, tmp_path):
    """The known-better checkpoint wins: a last checkpoint whose adapter is noise loses to the trained ones."""
    run = tmp_path / "run"
    shutil.copytree(best_run[0], run)
    trained = run / "checkpoints" / "step-000012"
    noisy = run / "checkpoints" / "step-000014"
    shutil.copytree(trained, noisy)
    weights = load_file(trained / "adapter_model.safetensors")
    generator = torch.Generator().manual_seed(0)
    save_file(
        {k: torch.randn(v.shape, generator=generator) * 30 for k, v in weights.items()},
        noisy / "adapter_model.safetensors",
    )
    manifest = json.loads((noisy / "tunery.json").read_text())
    (noisy / "tunery.json").write_text(json.dumps({**manifest, "step": 14}))

    selection = select_final(run)
    by_step = {s.step: s for s in selection.scores}
    # The tiny model's final norm keeps any hidden state near uniform logits (loss ≈ log of its
    # vocabulary): noise sends it back there, training had moved it below.
    assert by_step[14].loss > by_step[12].loss + 0.1
    assert selection.step != 14 and selection.last_step == 14
    final = load_file(run / "final" / "adapter_model.safetensors")
    chosen = load_file(run / "checkpoints" / f"step-{selection.step:06d}" / "adapter_model.safetensors")
    assert all(torch.equal(final[k], chosen[k]) for k in chosen)


def test_choose_prefers_the_grader_then_the_loss():
    a = CheckpointScore(step=2, path="a", loss=1.0, metric="exact", score=0.5)
    b = CheckpointScore(step=4, path="b", loss=0.8, metric="exact", score=0.5)
    c = CheckpointScore(step=6, path="c", loss=0.7, metric="exact", score=0.25)
    assert choose([a, b, c]).step == 4  # equal exact match: the lower loss
    loss_only = [s.model_copy(update={"metric": None, "score": None}) for s in (a, b, c)]
    assert choose(loss_only).step == 6


def test_select_best_needs_a_validation_file(tiny_model_dir, chat_data, tmp_path):
    result = run_cli(
        "train", "--model", tiny_model_dir, "--data", chat_data[0], "--output", tmp_path / "r", "select=best"
    )
    assert result.returncode != 0
    assert "select=best scores the checkpoints on the validation set" in result.stderr
    assert "Traceback" not in result.stderr


def test_compare_checkpoints_sets_task_score_against_forgetting(best_run, chat_data):
    out = best_run[0]
    result = run_cli("compare", "--checkpoints", out, "--data", chat_data[1])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "checkpoints.json").read_text())
    kept = sorted(int(p.name.removeprefix("step-")) for p in (out / "checkpoints").iterdir())
    assert [r["step"] for r in report["checkpoints"]] == kept
    for row in report["checkpoints"]:
        assert row["metric"] == "exact" and 0 <= row["score"] <= 1 and row["kl"]["low"] > 0
    assert (out / "checkpoints.png").read_bytes().startswith(b"\x89PNG")
    assert "KL from base" in result.stdout and f"step {kept[-1]}" in result.stdout
