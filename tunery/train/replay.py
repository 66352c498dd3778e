"""Replay: the base model's own answers to general prompts, mixed into what SFT trains on.

Self-distillation against forgetting (`replay: <fraction>`): a run adds `round(fraction × its
examples)` of the bundled replay prompts (tunery/data/replay.jsonl, kept apart from the prompts
forgetting is measured on), each with the base model's greedy answer, to its training examples.
They are drawn in an order fixed by the seed, so they go through the same rendering, loss mask,
packing and shuffling as the user's own, and a resumed run rebuilds exactly the same stream. The
base model answers only the prompts a run draws, each once per base model, cached
(tunery/data/prompt_sets.py). No outside data is needed.

Only answers that ended by themselves are used: one cut at the generation limit would teach the
model to stop mid-sentence.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from tunery.data.formats import ChatExample
from tunery.data.prompt_sets import MAX_NEW_TOKENS, base_answers, cached_lines, load_prompt_set
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

    The seed fixes an order of the replay prompts; the draw is the first `count` of them whose
    answers are usable. So the base model answers only those prompts (and the unusable ones among
    them), not the whole set, and the same seed draws the same examples whatever else the cache
    holds. When more are wanted than the set has usable answers, every one is used once before
    any is used twice. With several processes, rank 0 generates what is missing while the others
    wait, and then all read the cache.
    """
    count = replay_count(fraction, n_examples)
    prompts = load_prompt_set("replay")
    rng = random.Random(f"replay-{seed}")  # its own stream: the global RNGs stay as they were
    order = rng.sample(range(1, len(prompts) + 1), len(prompts))  # prompt lines, 1-based
    if dist.is_main():
        _answer_enough(model_dir, order, count)
    dist.barrier()
    known = cached_lines(model_dir, "replay")
    drawn: list[int] = []
    for line in order:
        if len(drawn) == count:
            break
        if line not in known:  # _answer_enough answered every prompt up to the count-th usable one
            raise RuntimeError(f"replay: the answer to replay.jsonl:{line} is missing from the cache")
        if _usable(known[line]):
            drawn.append(line)
    if not drawn:
        raise TrainingFailed(
            "config",
            f"replay: the base model finished none of its {len(known)} answers to the replay prompts within "
            f"{MAX_NEW_TOKENS} tokens, and an answer cut short would teach the model to stop mid-sentence; "
            "set replay=none for this base model",
        )
    usable = list(drawn)
    while len(drawn) < count:  # the whole set is answered and has too few usable answers: repeat them
        drawn += rng.sample(usable, len(usable))
    return [
        ChatExample(
            messages=[*prompts[line - 1]["messages"], {"role": "assistant", "content": known[line]["answer"].strip()}],
            line=line,
        )
        for line in drawn[:count]
    ]


def _usable(answer: dict) -> bool:
    """An answer that ended by itself: one cut at the limit would teach the model to stop mid-sentence."""
    return bool(answer["answer"].strip()) and answer.get("finish_reason") != "length"


# Before any answer on a base is known, guess that this share of them ends within the token limit
# (SmolLM2-135M-Instruct ended 18 of its first 40); then take the share seen so far. A low guess
# answers a few prompts more than the run draws (they stay cached for a bigger run); a high one
# costs another, smaller round of generation.
FINISHED_GUESS = 0.5


def _answer_enough(model_dir: Path, order: list[int], count: int) -> None:
    """Answer (and cache) the prompts in `order`, from the first, until `count` usable answers are
    known or the whole set is answered; prompts already cached are not generated again."""
    generator, started, answered = None, time.monotonic(), 0

    def say(line: str) -> None:
        print(f"replay: {line}", file=sys.stderr, flush=True)

    shown = [0]

    def progress(done: int, total: int) -> None:  # a line at every tenth of each batch of answers
        if done * 10 // total > shown[0] or done == total:
            shown[0] = done * 10 // total
            say(f"{done}/{total} answered")

    while True:
        known = cached_lines(model_dir, "replay")
        finished = sum(map(_usable, known.values()))
        share = max(0.1, finished / len(known)) if known else FINISHED_GUESS
        usable, missing = 0, []
        for line in order:
            if line in known:
                usable += _usable(known[line])
            else:
                missing.append(line)
            if usable + share * len(missing) >= count:
                break
        if not missing:
            break
        if generator is None:
            from tunery.inference import Generator

            generator = Generator(model_dir)
        shown[0] = 0
        base_answers(generator, "replay", lines=missing, log=say, progress=progress)
        answered += len(missing)
    if answered:
        say(
            f"{answered} answers in {time.monotonic() - started:.0f}s, cached for every later run on this base "
            "model (only the prompts a run draws are answered)"
        )
