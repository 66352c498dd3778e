"""The data rules: every code `tunery validate` reports, its severity and fix, and the checks of one line.

This is the one place a data format's rules live: a new rule is a code in `RULES` (with its fix)
and a check beside its format's others (`_check_chat`, `_check_preference`), dispatched by
`check_example`. The scan that applies them to whole files is tunery/data/validate.py.
"""

from __future__ import annotations

import json
from typing import Literal, NamedTuple

from tunery.data.formats import MESSAGE_KEYS, ROLES, Format, detect_format
from tunery.data.jsonl import canonical

Severity = Literal["error", "warning"]
# What to do with a chat template's special token inside message text: report it and train it as
# the token (warn), fail the data check (refuse), or tokenise it as plain text (escape).
SpecialTokens = Literal["warn", "refuse", "escape"]

MIN_EXAMPLES = 10  # OpenAI's minimum for a training file

_EXAMPLE_CHAT = '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'


class Rule(NamedTuple):
    severity: Severity
    fix: str  # how to fix it; every issue's message is "<what is wrong>; fix: <fix>"


# Every code the validator emits. OpenAI's own codes come first.
RULES: dict[str, Rule] = {
    "data_type": Rule(
        "error",
        'each line must be one JSON object, and each message an object like {"role": "user", "content": "..."}',
    ),
    "missing_messages_list": Rule(
        "error",
        f"a chat example is {_EXAMPLE_CHAT}; a preference example has "
        '"input": {"messages": [...]}, "preferred_output" and "non_preferred_output"',
    ),
    "message_missing_key": Rule(
        "error",
        'every message needs "role" and "content" (content may be null only for an assistant message with tool_calls)',
    ),
    "message_unrecognized_key": Rule("error", f"remove it (a message may have only {', '.join(sorted(MESSAGE_KEYS))})"),
    "unrecognized_role": Rule("error", f"use one of {', '.join(ROLES)}"),
    "missing_content": Rule(
        "error",
        "write the message text as a string, or drop the message (content may "
        "be null only for an assistant message with tool_calls)",
    ),
    "example_missing_assistant_message": Rule("error", "add the assistant reply the model should learn to give"),
    "binary_file": Rule("error", "save the data as UTF-8 text, one JSON object per line"),
    "empty_file": Rule("error", "write one JSON example per line"),
    "line_too_long": Rule("error", "split it into smaller examples"),
    "invalid_utf8": Rule("error", "re-save the file as UTF-8"),
    "invalid_json": Rule("error", "each line must hold one complete JSON object"),
    "mixed_formats": Rule("error", "put chat and preference examples in separate files"),
    "invalid_weight": Rule("error", "use 0 (do not train on this message) or 1 (train on it)"),
    "invalid_tool_calls": Rule(
        "error",
        'write tool_calls as [{"id": "call_1", "type": "function", "function": {"name": "get_weather", '
        '"arguments": "{\\"city\\": \\"Paris\\"}"}}] on an assistant message (arguments is a JSON object '
        "encoded as a string, as OpenAI sends it)",
    ),
    "invalid_tools": Rule(
        "error",
        'write tools as [{"type": "function", "function": {"name": "get_weather", "description": "...", '
        '"parameters": {"type": "object", "properties": {...}}}}]',
    ),
    "roles_not_alternating": Rule(
        "error",
        "alternate user and assistant turns, and put each tool result right after the assistant message "
        "whose tool_calls asked for it",
    ),
    "no_trainable_messages": Rule("error", "set weight 1 on the replies to train on"),
    "invalid_preference_output": Rule(
        "error", 'make it a list of exactly one assistant message, e.g. [{"role": "assistant", "content": "..."}]'
    ),
    "identical_preference_outputs": Rule("error", "make the two answers differ, or drop the example"),
    "train_validation_overlap": Rule(
        "error", "remove it from one of the two files, so validation measures unseen data"
    ),
    "too_few_examples": Rule("error", f"add examples (at least {MIN_EXAMPLES}; 50-100 good ones is a better start)"),
    "template_error": Rule(
        "error", "check the roles and fields against the model's chat template, or use another model"
    ),
    "template_no_eos": Rule("error", "use a model whose chat template ends assistant turns with its EOS token"),
    "empty_line": Rule("warning", "delete it (a JSONL file has exactly one example per line)"),
    "no_system_or_user_message": Rule("warning", "add the user turn that prompts the reply"),
    "duplicate_example": Rule("warning", "delete it, unless you repeat it on purpose to weight it more"),
    "weight_not_on_assistant": Rule(
        "warning", "remove it: only assistant messages are trained, so weight is read on them alone"
    ),
    "example_too_long": Rule("warning", "shorten the example or raise --max-seq-len"),
    "no_trained_token": Rule("warning", "shorten the prompt or raise --max-seq-len"),
    "special_tokens_in_content": Rule(
        "warning",
        "remove them, or set special_tokens=escape to train them as plain text: the chat template reads them as "
        "turn markers, so the text can forge a turn (a fake assistant reply is trained as the model's own); "
        "special_tokens=refuse makes this an error",
    ),
}
CODES: dict[str, Severity] = {code: rule.severity for code, rule in RULES.items()}


# ---------------------------------------------------------------------------------------------
# Rules for one parsed line. Each appends (code, what is wrong) to `out`; the valid path
# allocates nothing, since it runs once per example on multi-GB files.

Problems = list[tuple[str, str]]
_ROLES = frozenset(ROLES)
_ABSENT = object()


def _kind(value: object) -> str:
    if value is None:
        return "null"
    kinds = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _shown(value: object, limit: int = 60) -> str:
    """A JSON value as a message quotes it: short, whatever it holds."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_messages(messages: list, where: str, out: Problems) -> tuple[bool, int, int]:
    """Check each message and the turn order.

    Returns:
        (has a system or user message, assistant messages, assistant messages with weight 1)
    """
    has_prompt = False
    n_assistant = n_trained = 0
    prev = None  # last non-system role, for the turn order
    prev_calls_tools = False
    for i, m in enumerate(messages, start=1):
        if type(m) is not dict:
            out.append(("data_type", f"{where}[{i}] is {_kind(m)}"))
            prev = None
            continue
        if not m.keys() <= MESSAGE_KEYS:
            extra = ", ".join(sorted(map(json.dumps, m.keys() - MESSAGE_KEYS)))
            out.append(("message_unrecognized_key", f"{where}[{i}] has unrecognized key(s) {extra}"))
        role = m.get("role")
        # An assistant message that calls tools may have no text (content null or absent).
        calls_tools = role == "assistant" and bool(m.get("tool_calls") or m.get("function_call"))
        if type(role) is not str or role not in _ROLES:
            if role is None:
                out.append(("message_missing_key", f'{where}[{i}] has no "role"'))
            else:
                out.append(("unrecognized_role", f"{where}[{i}] has role {_shown(role)}"))
            role = None  # reported; the rules below compare it and use it as a key, so only str may pass
        content = m.get("content", _ABSENT)
        if type(content) is str:
            if (not content or content.isspace()) and not calls_tools:
                out.append(("missing_content", f"{where}[{i}] content is empty"))
        elif content is _ABSENT:
            if not calls_tools:
                out.append(("message_missing_key", f'{where}[{i}] has no "content"'))
        elif content is not None or not calls_tools:
            out.append(("missing_content", f"{where}[{i}] content is {_kind(content)}, not a string"))
        weight = m.get("weight", 1)
        if type(weight) is not int or (weight != 1 and weight != 0):
            out.append(("invalid_weight", f"{where}[{i}] weight is {json.dumps(weight)}"))
        elif "weight" in m and role is not None and role != "assistant":
            out.append(("weight_not_on_assistant", f"{where}[{i}] is a {role} message with a weight"))
        if "tool_calls" in m:
            problem = _describe_tool_calls(m["tool_calls"], role)
            if problem:
                out.append(("invalid_tool_calls", f"{where}[{i}] {problem}"))
        if role == "system":
            has_prompt = True
            continue
        if role == "user":
            has_prompt = True
            if prev == "user":
                out.append(("roles_not_alternating", f"{where}[{i}] is a second user message in a row"))
        elif role == "assistant":
            n_assistant += 1
            if weight != 0:  # a bad weight is its own error, not "nothing to learn"
                n_trained += 1
            if prev == "assistant":
                out.append(("roles_not_alternating", f"{where}[{i}] is a second assistant message in a row"))
        elif role == "tool" and not (prev == "tool" or (prev == "assistant" and prev_calls_tools)):
            what = f"{where}[{i}] is a tool result, but no assistant message with tool_calls comes before it"
            out.append(("roles_not_alternating", what))
        prev, prev_calls_tools = role, calls_tools
    return has_prompt, n_assistant, n_trained


def _describe_tool_calls(calls: object, role: object) -> str | None:
    """What is wrong with a message's `tool_calls`, or None when they are OpenAI's shape."""
    if role != "assistant":
        return f"has tool_calls, but only assistant messages call tools (role {json.dumps(role)})"
    if type(calls) is not list:
        return f"tool_calls is {_kind(calls)}, not a list"
    for k, call in enumerate(calls, start=1):
        function = call.get("function") if type(call) is dict else None
        if type(function) is not dict:
            return f'tool call {k} has no "function" object'
        name, arguments = function.get("name"), function.get("arguments")
        if type(name) is not str or not name:
            return f'tool call {k} has no function "name"'
        if type(arguments) is not str:
            return f"tool call {k} ({name}) has arguments that are {_kind(arguments)}, not a JSON string"
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return f"tool call {k} ({name}) has arguments that are not valid JSON: {arguments[:40]!r}"
        if type(parsed) is not dict:
            return f"tool call {k} ({name}) has arguments that encode {_kind(parsed)}, not an object"
    return None


def _describe_tools(tools: object) -> str | None:
    """What is wrong with an example's `tools`, or None when they are OpenAI's function tools."""
    if type(tools) is not list:
        return f'"tools" is {_kind(tools)}, not a list'
    for k, tool in enumerate(tools, start=1):
        function = tool.get("function") if type(tool) is dict else None
        if type(function) is not dict or type(function.get("name")) is not str or not function["name"]:
            return f'tool {k} is not {{"type": "function", "function": {{"name": ...}}}}'
        if "parameters" in function and type(function["parameters"]) is not dict:
            return f"tool {k} ({function['name']}) has parameters that are {_kind(function['parameters'])}"
    return None


def _check_chat(obj: dict, out: Problems) -> int:
    """Rules for `{"messages": [...]}`. Returns the number of messages."""
    messages = obj["messages"]
    if type(messages) is not list or not messages:
        out.append(("missing_messages_list", f'"messages" is {_kind(messages) if messages else "empty"}'))
        return 0
    has_prompt, n_assistant, n_trained = _check_messages(messages, "messages", out)
    if "tools" in obj and obj["tools"] is not None:
        problem = _describe_tools(obj["tools"])
        if problem:
            out.append(("invalid_tools", problem))
    if n_assistant == 0:
        out.append(("example_missing_assistant_message", "no assistant message, so there is nothing to learn"))
    elif n_trained == 0:
        out.append(("no_trainable_messages", 'every assistant message has "weight": 0, so there is nothing to learn'))
    if not has_prompt and not out:  # a misspelt role is already reported
        out.append(("no_system_or_user_message", "no system or user message: the model learns replies to nothing"))
    return len(messages)


def _describe_output(obj: dict, key: str) -> str | None:
    """What is wrong with a preference output, or None when it is one assistant message."""
    answer = obj.get(key)
    if type(answer) is list and len(answer) == 1 and type(answer[0]) is dict:
        if answer[0].get("role") == "assistant":
            return None
        return f"{key} holds a message with role {json.dumps(answer[0].get('role'))}"
    if key not in obj:
        return f"{key} is missing"
    if type(answer) is not list:
        return f"{key} is {_kind(answer)}"
    if len(answer) != 1:
        return f"{key} is a list of {len(answer)} messages"
    return f"{key} holds {_kind(answer[0])}"


def _check_preference(obj: dict, out: Problems) -> int:
    """Rules for `{"input": {"messages"}, "preferred_output": [..], "non_preferred_output": [..]}`."""
    n_messages = 0
    prompt = obj.get("input")
    messages = prompt.get("messages") if type(prompt) is dict else None
    if type(messages) is not list or not messages:
        out.append(("missing_messages_list", '"input" has no non-empty "messages" list'))
    else:
        n_messages = len(messages)
        has_prompt, _, _ = _check_messages(messages, "input.messages", out)
        tools = prompt.get("tools")
        problem = _describe_tools(tools) if tools is not None else None
        if problem:
            out.append(("invalid_tools", f"input.{problem}"))
        if not has_prompt:
            out.append(("no_system_or_user_message", "input has no system or user message"))
        last = messages[-1]
        if type(last) is dict and last.get("role") == "assistant":
            what = "input.messages ends with an assistant message, but the outputs are the assistant's reply"
            out.append(("roles_not_alternating", what))
    answers = []
    for key in ("preferred_output", "non_preferred_output"):
        problem = _describe_output(obj, key)
        if problem:
            out.append(("invalid_preference_output", problem))
        else:
            _check_messages(obj[key], key, out)
            answers.append(obj[key][0])
    if len(answers) == 2 and canonical(answers[0]) == canonical(answers[1]):
        what = "preferred_output and non_preferred_output are identical, so there is no preference to learn"
        out.append(("identical_preference_outputs", what))
    return n_messages + 1


def check_example(obj: object) -> tuple[Format | None, int, Problems]:
    """Apply every per-line rule to one parsed JSON value.

    Returns:
        (its format or None, its message count, the problems found as (code, what is wrong))
    """
    out: Problems = []
    if type(obj) is not dict:
        out.append(("data_type", f"the line is {_kind(obj)}"))
        return None, 0, out
    fmt = detect_format(obj)
    if fmt == "chat":
        return fmt, _check_chat(obj, out), out
    if fmt == "preference":
        return fmt, _check_preference(obj, out), out
    keys = ", ".join(map(json.dumps, sorted(obj)[:5])) or "none"
    out.append(("missing_messages_list", f'no "messages" list (the keys are {keys})'))
    return None, 0, out
