"""Few-shot prompts: k worked examples from the training file, placed before the question.

The shots are drawn once per run (the same k for every held-out item, so every request pays the
same prompt overhead), by a seeded shuffle, from training examples whose question is not also a
held-out question: a shot that *is* the test question would make prompting look better than it
is, and it stays a leak when the training copy has a different answer or system prompt.
Each shot is its conversation without its system prompt; the held-out item's own system prompt
stays first, then the shots as earlier turns, then the item's own turns.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace

from tunery.data.formats import Example
from tunery.errors import TuneryError
from tunery.eval.heldout import HeldoutExample, split_example


def _key(item: HeldoutExample) -> str:
    """Identity of an example's question: its turns before the answer, without the system prompt
    (which every example of a task shares) and with outer whitespace ignored."""
    turns = [
        (m.get("role"), m.get("content").strip() if isinstance(m.get("content"), str) else m.get("content"))
        for m in item.prompt
        if m.get("role") != "system"
    ]
    return json.dumps(turns, sort_keys=True)


def pick_shots(
    train: Sequence[Example], heldout: Sequence[HeldoutExample], k: int, seed: int, source: str
) -> list[list[dict]]:
    """k shot conversations from `train`, none of which asks a `heldout` question, chosen by `seed`.

    Raises:
        TuneryError: fewer than k usable training examples.
    """
    held = {_key(item) for item in heldout}
    candidates = []
    for example in train:
        item = split_example(example, f"{source}:{example.line}")
        if _key(item) in held:
            continue
        turns = [m for m in item.prompt if m.get("role") != "system"]
        candidates.append([*turns, {"role": "assistant", "content": item.reference}])
    if len(candidates) < k:
        raise TuneryError(
            f"{source} has {len(candidates)} examples that are not in the held-out set; {k} shots were asked for",
            hint=f"use --shots {len(candidates)} or fewer",
        )
    return random.Random(seed).sample(candidates, k)


def with_shots(item: HeldoutExample, shots: Sequence[list[dict]]) -> HeldoutExample:
    """The item with the shots inserted after its system prompt."""
    head = 0
    while head < len(item.prompt) and item.prompt[head].get("role") == "system":
        head += 1
    shot_turns = [message for shot in shots for message in shot]
    return replace(item, prompt=[*item.prompt[:head], *shot_turns, *item.prompt[head:]])
