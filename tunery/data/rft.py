"""Reinforcement fine-tuning data (OpenAI's RFT format): prompts, and the fields a grader reads.

Each line is `{"messages": [...], <any other fields>}`. The conversation ends on a user or
developer turn: the model writes the answer, and the grader scores it. Every other field of the
line is the grader's `item` (`{{item.answer}}`), so each field the grader uses must be on every
line. Problems are `Issue`s with a line and a code, as for the other formats:

| code                    | what is wrong                                                      |
|-------------------------|--------------------------------------------------------------------|
| invalid_json            | the line is not JSON                                               |
| data_type               | the line is not an object                                          |
| missing_messages_list   | no non-empty "messages" list                                       |
| invalid_message         | a message is not {"role": ..., "content": ...} with a known role   |
| rft_last_turn           | the conversation ends on an assistant, system or tool turn         |
| rft_missing_item_field  | a field the grader reads through {{item.x}} is not on the line     |
| empty_file              | no examples at all                                                 |
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tunery.data.formats import RftExample
from tunery.data.validate import Issue
from tunery.errors import TuneryError

ROLES = ("system", "developer", "user", "assistant", "tool")
FIXES = {
    "invalid_json": "write one JSON object per line",
    "data_type": 'each line is one JSON object like {"messages": [...], "answer": "..."}',
    "missing_messages_list": 'give the prompt as "messages": [{"role": "user", "content": "..."}]',
    "invalid_message": f'each message is an object with "role" ({", ".join(ROLES)}) and text "content"',
    "rft_last_turn": "end the conversation on the user (or developer) turn the model answers; drop the answer",
    "rft_missing_item_field": "add the field to every line, or change the grader's {{item.x}} templates",
    "empty_file": "add at least one prompt",
}


def check_line(obj: object, fields: Iterable[str]) -> list[tuple[str, str]]:
    """(code, what is wrong) for one parsed line; empty when the line is a valid RFT prompt."""
    if not isinstance(obj, dict):
        return [("data_type", f"the line is a {type(obj).__name__}, not an object")]
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        return [("missing_messages_list", 'no non-empty "messages" list')]
    problems = []
    for k, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), (str, list))
        ):
            problems.append(("invalid_message", f"message {k} is {json.dumps(message)[:80]}"))
    last = messages[-1].get("role") if isinstance(messages[-1], dict) else None
    if last not in ("user", "developer"):
        problems.append(("rft_last_turn", f"the conversation ends on a {last} turn"))
    for name in sorted(fields):
        if name not in obj:
            problems.append(("rft_missing_item_field", f"the grader reads {{{{item.{name}}}}}, which this line lacks"))
    return problems


def issue(path: Path, line: int | None, code: str, what: str) -> Issue:
    return Issue(file=str(path), line=line, code=code, severity="error", message=f"{what}; fix: {FIXES[code]}")


def validate_rft_file(path: str | Path, fields: Iterable[str] = ()) -> tuple[list[RftExample], list[Issue]]:
    """Read an RFT file and check every line against the rules above.

    Args:
        fields: the top-level item fields the grader uses (`tunery.graders.grading.item_fields`).
    Returns:
        (the valid examples, every issue found).
    Raises:
        TuneryError: the file cannot be read.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TuneryError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TuneryError(f"{path} is not UTF-8 text", hint="save it as UTF-8 JSONL") from None
    fields = list(fields)
    examples, issues = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            issues.append(issue(path, number, "invalid_json", f"not valid JSON ({exc.msg}, column {exc.colno})"))
            continue
        problems = check_line(obj, fields)
        issues.extend(issue(path, number, code, what) for code, what in problems)
        if not problems:
            examples.append(RftExample(messages=obj["messages"], item=obj, tools=obj.get("tools"), line=number))
    if not examples and not issues:
        issues.append(issue(path, None, "empty_file", "the file holds no prompts"))
    return examples, issues


def load_rft(path: str | Path, fields: Iterable[str] = ()) -> list[RftExample]:
    """The examples of a valid RFT file.

    Raises:
        TuneryError: naming the first problems by line and code, and `tunery validate` for all.
    """
    examples, issues = validate_rft_file(path, fields)
    if issues:
        shown = "; ".join(f"line {i.line}: {i.code}: {i.message}" for i in issues[:3])
        more = f" (and {len(issues) - 3} more)" if len(issues) > 3 else ""
        raise TuneryError(
            f"{path} is not valid RFT data: {shown}{more}",
            hint=f"run `tunery validate {path} --grader GRADER.json` for every problem",
        )
    return examples
