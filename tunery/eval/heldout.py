"""Held-out examples as evaluation items: the prompt is the conversation up to the last assistant
turn, the reference is that turn.

Chat files and preference files both work: a preference example's prompt is its input, and its
reference is the preferred answer. Turns after the last assistant turn (a dangling user message)
are not part of the prompt, since the reference never saw them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunery.data.formats import ChatExample, Example, PreferenceExample, load_examples
from tunery.errors import TuneryError


@dataclass(frozen=True)
class HeldoutExample:
    prompt: list[dict]  # everything before the reference turn, system prompt included
    reference: str
    tools: list[dict] | None = None
    where: str = ""  # "file:line", for messages and the per-example report
    item: dict | None = None  # the whole data line: what an OpenAI grader object reads as {{item.x}}

    def conversation(self) -> ChatExample:
        """The prompt and the reference as one chat, with only the reference trained (for the loss)."""
        prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in self.prompt]
        return ChatExample(
            messages=[*prompt, {"role": "assistant", "content": self.reference, "weight": 1}], tools=self.tools
        )


def split_example(example: Example, where: str, *, prompt_only: bool = False) -> HeldoutExample:
    """Cut one example into prompt and reference.

    Raises:
        TuneryError: there is no assistant turn, or the last one has no text to compare against.
    """
    messages = example.as_chat("chosen").messages if isinstance(example, PreferenceExample) else example.messages
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None and prompt_only:  # an RFT prompt: the grader object alone judges the answer
        return HeldoutExample(prompt=list(messages), reference="", tools=example.tools, where=where)
    if last is None:
        raise TuneryError(
            f"{where}: no assistant turn, so there is no reference answer to evaluate against",
            hint="end each held-out conversation with the assistant answer you expect",
        )
    reference = messages[last].get("content")
    if not isinstance(reference, str) or not reference.strip():
        raise TuneryError(
            f"{where}: the last assistant turn has no text content (tool calls alone cannot be graded)",
            hint="give the last assistant turn the expected text answer",
        )
    return HeldoutExample(prompt=list(messages[:last]), reference=reference, tools=example.tools, where=where)


def load_heldout(path: str | Path, *, prompts_allowed: bool = False) -> list[HeldoutExample]:
    """Read a held-out file (chat or preference JSONL) into evaluation items.

    Each item keeps its whole line as `item`, for OpenAI grader objects. With `prompts_allowed`
    (a grader object is grading), a line may also be a reinforcement fine-tuning prompt that ends
    on a user turn: it has no reference, and no reference loss.

    Raises:
        TuneryError: the file cannot be read or is empty, or an example has no reference.
    """
    from dataclasses import replace

    from tunery.data.formats import iter_jsonl

    path = Path(path)
    examples = load_examples(path)
    if not examples:
        raise TuneryError(f"{path} holds no examples", hint="a held-out file has one JSON example per line")
    lines = dict(iter_jsonl(path))
    return [
        replace(split_example(e, f"{path}:{e.line}", prompt_only=prompts_allowed), item=lines.get(e.line))
        for e in examples
    ]


def default_max_new_tokens(reference_lengths: Sequence[int], *, floor: int = 16, ceiling: int = 1024) -> int:
    """A generation budget that fits every reference with room to spare: ⌈1.5 × longest⌉ + 8,
    clipped to [floor, ceiling].

    The longest reference, not the mean, sets it, so that no correct answer is ever cut short;
    the 1.5× and +8 leave room for a slightly wordier right answer and the end-of-turn token. The
    floor keeps label tasks from cutting a wrong-but-informative answer after two tokens.

    >>> default_max_new_tokens([3, 4]), default_max_new_tokens([100, 40]), default_max_new_tokens([2000])
    (16, 158, 1024)
    """
    if not reference_lengths:
        return floor
    return max(floor, min(ceiling, math.ceil(1.5 * max(reference_lengths)) + 8))
