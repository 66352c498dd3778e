"""SFT on the real SmolLM2-135M-Instruct: a few LoRA steps on the bundled task clearly lower held-out loss,
and the same steps in bf16 autocast end where fp32 does: the guard behind bf16 being the default on CPUs
that compute it natively."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from builders import EXAMPLES, run_cli

from tunery.data.formats import load_examples
from tunery.data.render import ChatTokenizer, render_chat
from tunery.hardware import cpu_native_bf16
from tunery.train.config import RunConfig
from tunery.train.modeling import build_model
from tunery.train.plan import resolve
from tunery.train.rundir import RunDir
from tunery.train.sft import validation_loss

pytestmark = pytest.mark.real_model
TASK = EXAMPLES / "support-tickets"


@pytest.fixture(scope="module")
def small_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("tickets")
    for split, n in (("train", 48), ("valid", 16)):
        lines = itertools.islice((TASK / f"{split}.jsonl").open(), n)
        (root / f"{split}.jsonl").write_text("".join(lines))
    return root / "train.jsonl", root / "valid.jsonl"


def train_run(cli, data, out, precision: str):
    """Six LoRA steps of 8 tickets, as a user would run them through the CLI."""
    train, valid = data
    result = cli(
        "train", "--data", train, "--validation", valid, "--output", out,
        "n_epochs=1", "batch_size=8", "eval_every=6", "final_eval=false", f"precision={precision}",
        timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def exact_matches(cli, run, valid, tmp_path) -> list[float]:
    """Per-example exact match of the run's greedy answers to the held-out tickets (`tunery eval`)."""
    report = tmp_path / f"{run.name}-eval.json"
    result = cli("eval", "--adapter", run, "--data", valid, "--graders", "exact", "--no-loss", "--output", report)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = report.with_suffix(".examples.jsonl").read_text().splitlines()
    return [json.loads(line)["scores"]["exact"] for line in answers]


@pytest.fixture(scope="module")
def fp32_run(small_task, tmp_path_factory):
    return train_run(run_cli, small_task, tmp_path_factory.mktemp("fp32") / "run", "fp32")


def test_lora_sft_lowers_held_out_loss(smollm2_dir, small_task, fp32_run):
    train, valid = small_task
    tok = ChatTokenizer.from_dir(smollm2_dir)
    held_out = [render_chat(e, tok) for e in load_examples(valid)]
    plan = resolve(
        RunConfig(data=train),
        n_examples=48,
        longest=max(len(r.input_ids) for r in held_out),
        context_length=8192,
        cuda_available=False,
        bf16_supported=False,
    )
    with torch.no_grad():  # a fresh adapter (B = 0) is the base model itself
        base_loss, _ = validation_loss(build_model(plan, smollm2_dir), held_out, plan, tok.pad_id)

    final = RunDir(fp32_run).read_metrics()[-1]
    assert final["type"] == "full_valid"
    # Six steps take the label loss from ~5 nats/token to well under half of that.
    assert final["full_valid_loss"] < 0.5 * base_loss, (base_loss, final)
    assert json.loads((fp32_run / "final" / "tunery.json").read_text())["base_model"] == "smollm2-135m-instruct"


# bf16 keeps 8 bits of mantissa in the autocast matmuls (fp32 master weights and optimizer). Six steps
# at LoRA's learning rate are steep descent, where a small difference moves the loss most: on an AVX2
# CPU (emulated bf16) the held-out loss ended at 0.748 against fp32's 0.699 (7 %); on an AMD EPYC with
# native AVX512-BF16, at 0.736 (5 %). Both times the token accuracy and the exact match on every
# held-out ticket equalled fp32's. The bound leaves room for other kernels.
BF16_LOSS_TOLERANCE = 0.10  # relative


# Emulated bf16 took 75 s a step on an AVX2 CPU (fp32: about 5), and it is not the default there, so
# there is no default to guard: the guard runs where the CPU computes bf16 natively.
@pytest.mark.skipif(not cpu_native_bf16(), reason="this CPU has no native bf16, so fp32 is the default here")
def test_bf16_training_ends_where_fp32_does(small_task, fp32_run, tmp_path, cli):
    bf16_run = train_run(cli, small_task, tmp_path / "bf16", "bf16")
    recorded = [json.loads((run / "final" / "tunery.json").read_text())["config"] for run in (fp32_run, bf16_run)]
    assert [c["precision"] for c in recorded] == ["fp32", "bf16"]
    fp32_loss, bf16_loss = (RunDir(run).read_metrics()[-1]["full_valid_loss"] for run in (fp32_run, bf16_run))
    assert abs(bf16_loss - fp32_loss) <= BF16_LOSS_TOLERANCE * fp32_loss, (fp32_loss, bf16_loss)
    # The same greedy answers are right: the held-out exact match is equal, example by example.
    valid = small_task[1]
    assert exact_matches(cli, bf16_run, valid, tmp_path) == exact_matches(cli, fp32_run, valid, tmp_path)
