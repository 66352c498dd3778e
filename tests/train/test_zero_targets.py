"""Examples and pairs left with no trained token (max_seq_len cut every answer away).

They must not turn into a silent 0.0 validation loss, nor a NaN preference loss that fails the
run as `nan_loss` with the advice to lower the learning rate.
"""

from __future__ import annotations

import math

from tunery.data.formats import ChatExample
from tunery.data.render import ChatTokenizer, render_chat
from tunery.train.config import RunConfig
from tunery.train.modeling import build_model
from tunery.train.plan import resolve
from tunery.train.sft import validation_loss

LONG_PROMPT = "Please answer briefly: " + "the quick brown fox jumps over the lazy dog " * 8


def _plan(model_dir, **overrides):
    config = RunConfig(model=str(model_dir), data="unused.jsonl", seed=0, **overrides)
    return resolve(config, n_examples=8, longest=128, context_length=512, cuda_available=False, bf16_supported=False)


def _truncated(tok, max_seq_len: int):
    messages = [{"role": "user", "content": LONG_PROMPT}, {"role": "assistant", "content": "billing"}]
    return render_chat(ChatExample(messages=messages), tok, max_seq_len)


def test_validation_without_a_trained_token_is_nan_with_a_warning(tiny_model_dir, capsys):
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    plan = _plan(tiny_model_dir, max_seq_len=16)
    examples = [_truncated(tok, 16) for _ in range(3)]
    assert not any(sum(e.loss_mask) for e in examples)
    model = build_model(plan, tiny_model_dir)
    loss, accuracy = validation_loss(model, examples, plan, tok.pad_id)
    assert math.isnan(loss) and math.isnan(accuracy)
    err = capsys.readouterr().err
    assert "no validation example has a trained token" in err and "max_seq_len=16" in err


def test_pairs_whose_answer_is_cut_away_are_dropped_with_a_count(tiny_model_dir, tmp_path, cli):
    """IPO divides by the answer's length: a pair with no answer token left gave NaN and failed the
    run as nan_loss ("lower the learning rate"). It is dropped before the loss, and the run says so."""
    import json

    from builders import write_preference_dataset

    data = write_preference_dataset(tmp_path / "train.jsonl", 12)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for i in (3, 7):
        rows[i]["input"]["messages"][0]["content"] = LONG_PROMPT + f" ({i})"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--method", "dpo", "dpo.loss=ipo", "max_seq_len=48", "max_steps=2", "batch_size=12", "final_eval=false"]
    result = cli("train", "--model", tiny_model_dir, "--data", data, "--output", tmp_path / "run", *args, "lora.r=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dropped 2 of 12 training pairs (lines 4, 8)" in result.stderr
    assert "max_seq_len=48" in result.stderr
