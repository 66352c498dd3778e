"""The example types tunery trains on, and how a JSONL line becomes one.

* Supervised chat (OpenAI): `{"messages": [{"role", "content", "weight"?, ...}], "tools"?: [...]}`
* Preference (OpenAI DPO): `{"input": {"messages": [...]}, "preferred_output": [assistant msg],
  "non_preferred_output": [assistant msg]}`
* Reinforcement (OpenAI RFT): `{"messages": [... ending on the user turn], <fields the grader
  reads>}`; read and checked by tunery/data/rft.py, since its rules depend on the grader.

`FORMATS` names each one; a training method's `data_format` (tunery/train/methods.py) is a key of it.

Messages stay plain dicts: they go straight into the model's chat template. Checking happens in
`tunery.data.validate`; the readers here assume a file that validated and fail loudly if not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tunery.errors import TuneryError

Format = Literal["chat", "preference"]
ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = frozenset({"role", "content", "weight", "name", "tool_calls", "function_call", "tool_call_id"})


@dataclass(frozen=True)
class ChatExample:
    messages: list[dict]
    tools: list[dict] | None = None
    line: int = 0  # 1-based line in the source file, for error messages


@dataclass(frozen=True)
class PreferenceExample:
    prompt: list[dict]  # the shared conversation before the answer
    chosen: dict  # one assistant message
    rejected: dict
    tools: list[dict] | None = None
    line: int = 0

    def as_chat(self, which: Literal["chosen", "rejected"]) -> ChatExample:
        """The conversation ending in one of the two answers; only that answer is trained."""
        answer = self.chosen if which == "chosen" else self.rejected
        prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in self.prompt]
        return ChatExample(messages=[*prompt, {**answer, "weight": 1}], tools=self.tools, line=self.line)


@dataclass(frozen=True)
class RftExample:
    """One prompt and its dataset line (the grader's `item`)."""

    messages: list[dict]
    item: dict
    tools: list[dict] | None = None
    line: int = 0

    def prompt(self) -> list[dict]:
        """The conversation for a chat template: OpenAI's `developer` role reads as `system`."""
        return [{**m, "role": "system"} if m.get("role") == "developer" else m for m in self.messages]


Example = ChatExample | PreferenceExample


@dataclass(frozen=True)
class FormatInfo:
    """What a training method's `data_format` (tunery/train/methods.py) names."""

    example: type  # the typed example a line becomes
    shape: str  # what one line holds, for messages that ask for this format
    noun: str  # what the examples are, in words: "worked examples"
    sequences: int  # sequences a line trains on: a preference pair's two answers
    unit: str  # what one line is called in counts: "12 examples", "12 pairs"


FORMATS: dict[str, FormatInfo] = {
    "chat": FormatInfo(ChatExample, "{'messages': [...]} per line", "worked examples", sequences=1, unit="examples"),
    "preference": FormatInfo(
        PreferenceExample,
        "{'input', 'preferred_output', 'non_preferred_output'} per line",
        "preference pairs",
        sequences=2,
        unit="pairs",
    ),
    "rft": FormatInfo(
        RftExample,
        "{'messages': [... ending on the user turn], <fields the grader reads>} per line",
        "prompts",
        1,
        "prompts",
    ),
}


def detect_format(obj: object) -> Format | None:
    """Which format a parsed line claims to be, from its top-level keys alone."""
    if not isinstance(obj, dict):
        return None
    if "preferred_output" in obj or "non_preferred_output" in obj or "input" in obj:
        return "preference"
    if "messages" in obj:
        return "chat"
    return None


def to_example(obj: dict, line: int = 0) -> Example:
    """Build the typed example from a line that passed validation."""
    if detect_format(obj) == "preference":
        return PreferenceExample(
            prompt=list(obj["input"]["messages"]),
            chosen=obj["preferred_output"][0],
            rejected=obj["non_preferred_output"][0],
            tools=obj["input"].get("tools") or obj.get("tools"),
            line=line,
        )
    return ChatExample(messages=list(obj["messages"]), tools=obj.get("tools"), line=line)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (1-based line, object) for each non-empty line, read as the validator reads it
    (tunery/data/jsonl.py). Raises TuneryError on a line that is not JSON."""
    from tunery.data.jsonl import parse_line, read_lines

    try:
        fh = path.open("rb")
    except OSError as exc:
        raise TuneryError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        for number, raw in read_lines(fh):
            if raw is not None and not raw.strip():
                continue
            obj, problem = parse_line(raw, number) if raw is not None else (None, ("", "the line is too long", None))
            if problem is not None:
                raise TuneryError(
                    f"{path}:{number}: {problem[1]}", hint=f"run `tunery validate {path}` for a full report"
                )
            yield number, obj


def load_examples(path: str | Path) -> list[Example]:
    """Read a whole (validated) dataset into typed examples, all of one format."""
    path = Path(path)
    examples = [to_example(obj, line) for line, obj in iter_jsonl(path)]
    kinds = {type(e) for e in examples}
    if len(kinds) > 1:
        raise TuneryError(
            f"{path} mixes chat and preference examples",
            hint=f"split them into two files; `tunery validate {path}` lists the lines",
        )
    return examples


@dataclass
class DatasetSplit:
    """Training and optional validation examples, as the trainers receive them."""

    train: list[Example]
    validation: list[Example] = field(default_factory=list)
