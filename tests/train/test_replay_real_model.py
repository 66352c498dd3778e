"""Replay on the real SmolLM2-135M-Instruct: the same short LoRA run on support tickets, with and
without the base model's own answers mixed in. With them, the tuned model stays measurably closer
to the base on the forgetting measure's general prompts (tunery/eval/forgetting.py), and the base
model answers only the replay prompts the run draws, not the whole set."""

from __future__ import annotations

import itertools
import json

import pytest
from builders import EXAMPLES

import tunery
from tunery.data.prompt_sets import cached_lines
from tunery.eval.forgetting import distribution_shift
from tunery.inference import Generator

pytestmark = pytest.mark.real_model
N_TICKETS = 32
PER_SKILL = 4  # 24 general prompts
RUN = dict(n_epochs=1, batch_size=4, final_eval=False, seed=0)  # 8 steps; 12 with replay


def test_replay_keeps_the_model_closer_to_the_base(smollm2_dir, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))  # a fresh cache: no answer known yet
    data = tmp_path / "train.jsonl"
    data.write_text("".join(itertools.islice((EXAMPLES / "support-tickets" / "train.jsonl").open(), N_TICKETS)))
    model = str(smollm2_dir)

    plain = tunery.train(model=model, data=data, output=tmp_path / "none", replay="none", **RUN)
    replayed = tunery.train(model=model, data=data, output=tmp_path / "replay", replay=0.5, **RUN)
    assert json.loads((replayed.path / "final" / "tunery.json").read_text())["replay_examples"] == N_TICKETS // 2
    # 16 drawn: the base answered those and the ones among them it did not finish, not all 310.
    answered = cached_lines(smollm2_dir, "replay")
    assert 16 <= len(answered) <= 60, len(answered)
    assert f"replay: {len(answered)} answers in " in capfd.readouterr().err

    generator = Generator(smollm2_dir)
    generator.add_adapter("none", plain.path / "final")
    generator.add_adapter("replay", replayed.path / "final")
    shift = {
        name: distribution_shift((generator, None), (generator, name), per_skill=PER_SKILL)
        for name in ("none", "replay")
    }
    none, replay = shift["none"].extra_nll, shift["replay"].extra_nll
    # Measured with seeds 0, 1, 2, extra NLL in nats/token: without replay 0.30, 0.29, 0.24 (CI lows
    # 0.20 and up), with it -0.03, -0.05, -0.06 (CI highs 0.005 and down). Without replay the run finds
    # the base's own answers clearly less likely; with it, no less likely than the base does. (The KL
    # is not asserted: with replay it was 0.12, 0.30, 0.13 against 0.24, 0.25, 0.21 without, so one
    # seed in three had it higher; self-distilling greedy answers also sharpens the distribution.)
    assert none.low > 0.15 and replay.mean < 0.5 * none.mean and replay.high < none.low, (none, replay)
