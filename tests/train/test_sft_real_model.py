"""SFT on the real SmolLM2-135M-Instruct: a few LoRA steps on the bundled task clearly lower held-out loss."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from builders import EXAMPLES

from tunery.data.formats import load_examples
from tunery.data.render import ChatTokenizer, render_chat
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


def test_lora_sft_lowers_held_out_loss(smollm2_dir, small_task, tmp_path, cli):
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

    out = tmp_path / "run"
    result = cli(
        "train", "--data", train, "--validation", valid, "--output", out,
        "n_epochs=1", "batch_size=8", "eval_every=6", "final_eval=false",
        timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    final = RunDir(out).read_metrics()[-1]
    assert final["type"] == "full_valid"
    # Six steps take the label loss from ~5 nats/token to well under half of that.
    assert final["full_valid_loss"] < 0.5 * base_loss, (base_loss, final)
    assert json.loads((out / "final" / "tunery.json").read_text())["base_model"] == "smollm2-135m-instruct"
