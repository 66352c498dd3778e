"""Replay: the base model's own answers to general prompts, mixed into what SFT trains on.

Self-distillation against forgetting (`replay: <fraction>`): the base model answers the bundled
replay prompts (tunery/data/replay.jsonl, kept apart from the prompts forgetting is measured on)
greedily, once per base model and cached (tunery/data/prompt_sets.py). A run then adds
`round(fraction × its examples)` of them to its training examples, drawn in an order fixed by the
seed, so they go through the same rendering, loss mask, packing and shuffling as the user's own,
and a resumed run rebuilds exactly the same stream. No outside data is needed.

Only answers that ended by themselves are used: one cut at the generation limit would teach the
model to stop mid-sentence.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from tunery.data.formats import ChatExample
from tunery.data.prompt_sets import MAX_NEW_TOKENS, base_answers, cached_answers
from tunery.train import distributed as dist
from tunery.train.plan import resolve_replay
from tunery.train.prepare import Prepared, TrainingFailed


def mix_replay(prepared: Prepared) -> None:
    """Add the run's replay examples to `prepared.train` (none with replay=none), and count them."""
    fraction, _ = resolve_replay(prepared.config)
    if fraction == "none":
        return
    added = replay_examples(fraction, len(prepared.train), seed=prepared.config.seed, model_dir=prepared.model_dir)
    prepared.train = [*prepared.train, *added]
    prepared.replayed = len(added)


def replay_count(fraction: float, n_examples: int) -> int:
    """How many replay examples a run of `n_examples` adds: the fraction of them, at least one."""
    return max(1, round(fraction * n_examples))


def replay_examples(fraction: float, n_examples: int, *, seed: int, model_dir: Path) -> list[ChatExample]:
    """`replay_count(fraction, n_examples)` chat examples: a replay prompt and the base model's answer.

    The draw is a seeded permutation of the usable answers, repeated when more are wanted than the
    set holds, so every answer is used once before any is used twice. With several processes, rank 0
    generates (the first time on a base model) while the others wait, and then all read the cache.
    """
    count = replay_count(fraction, n_examples)
    if dist.is_main():
        rows = _answers(model_dir)
    dist.barrier()
    if not dist.is_main():
        rows = cached_answers(model_dir, "replay")
    usable = [row for row in rows if row["answer"].strip() and row["finish_reason"] != "length"]
    if not usable:
        raise TrainingFailed(
            "config",
            f"replay: the base model finished none of its {len(rows)} answers to the replay prompts within "
            f"{MAX_NEW_TOKENS} tokens, and an answer cut short would teach the model to stop mid-sentence; "
            "set replay=none for this base model",
        )
    rng = random.Random(f"replay-{seed}")  # its own stream: the global RNGs stay as they were
    order: list[int] = []
    while len(order) < count:
        order += rng.sample(range(len(usable)), len(usable))
    return [
        ChatExample(
            messages=[*usable[i]["messages"], {"role": "assistant", "content": usable[i]["answer"].strip()}],
            line=usable[i]["line"],
        )
        for i in order[:count]
    ]


def _answers(model_dir: Path) -> list[dict]:
    """The base model's answers to the replay set: from the cache, or generated now (and cached)."""
    rows = cached_answers(model_dir, "replay")
    if rows is not None:
        return rows

    def say(line: str) -> None:
        print(f"replay: {line}", file=sys.stderr, flush=True)

    from tunery.inference import Generator

    started, shown = time.monotonic(), [0]

    def progress(done: int, total: int) -> None:  # a line at every tenth of the set
        if done * 10 // total > shown[0] or done == total:
            shown[0] = done * 10 // total
            say(f"{done}/{total} answered")

    generator = Generator(model_dir)
    rows = base_answers(generator, "replay", log=say, progress=progress)
    del generator  # the training model loads next; no second copy stays in memory
    say(f"{len(rows)} answers in {time.monotonic() - started:.0f}s, cached for every later run on this base model")
    return rows
