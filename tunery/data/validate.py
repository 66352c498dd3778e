"""Dataset rules → a ValidationReport of line-level issues; reads each file once and never changes it.

This is what `tunery validate` prints and what the server runs on uploaded files, so it never
prints and never raises on bad *data*: every problem becomes an `Issue` with its 1-based line, a
stable code (OpenAI's where one exists) and a message that says how to fix it. Only I/O problems
(no such file, a directory, unreadable) raise `TuneryError`.

Memory stays bounded on big files:
  * lines are read with a cap of `MAX_LINE_BYTES` (10 MiB) each; a longer line is one
    `line_too_long` error, skipped in 1 MiB chunks, never held whole;
  * duplicates and train/validation leakage are found from 8-byte hashes of each example's
    canonical JSON, kept with its line and message count (16 bytes per example), never from
    the lines themselves;
  * at most `max_issues_per_code` issues are kept per code; `issue_counts` stays exact.

Token statistics, truncation and the end-of-turn check need a `ChatTokenizer` (`--model`); they
use `tokenizers` and jinja2 only, never torch.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, computed_field

from tunery.data.formats import MESSAGE_KEYS, ROLES, Format, detect_format, to_example
from tunery.errors import TuneryError

if TYPE_CHECKING:
    from tunery.data.render import ChatTokenizer

Severity = Literal["error", "warning"]

MAX_LINE_BYTES = 10 * 1024 * 1024  # one example bigger than this is a mistake, not data
TOKENISE_CHARS = 100_000  # text always tokenised (about 0.5 s); longer only if max_seq_len could hold it
MIN_EXAMPLES = 10  # OpenAI's minimum for a training file
MAX_ISSUES_PER_CODE = 100_000  # kept in the report; counts beyond this stay exact
_SKIP_CHUNK = 1024 * 1024

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
        "remove them: the chat template reads them as turn markers, so the text can forge a turn (a fake "
        "assistant reply is trained as the model's own); --special-tokens refuse makes this an error",
    ),
}
CODES: dict[str, Severity] = {code: rule.severity for code, rule in RULES.items()}


class Issue(BaseModel):
    """One problem, at one line of one file."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int | None  # 1-based; None when it concerns the whole file
    column: int | None = None  # 1-based, where the line could not be decoded or parsed
    code: str
    severity: Severity
    message: str  # what is wrong and how to fix it


class Summary(BaseModel):
    """min / mean / p95 / max of a per-example count (p95 linearly interpolated, as numpy does)."""

    min: int
    mean: float
    p95: float
    max: int


def summarize(values: Sequence[int]) -> Summary | None:
    """Summary of `values`, or None when there are none."""
    if len(values) == 0:
        return None
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    return Summary(
        min=int(data.min()),
        mean=round(float(data.mean()), 2),
        p95=round(float(np.percentile(data, 95)), 2),
        max=int(data.max()),
    )


class Stats(BaseModel):
    """What the training file holds. Token fields are None without a tokenizer."""

    format: Format | None
    lines: int  # non-empty lines, valid or not
    examples: int  # lines without errors: what would be trained on
    validation_examples: int | None = None
    messages_per_example: Summary | None = None
    # role → content tokens per example, plus "total": the whole rendered conversation
    tokens_per_example: dict[str, Summary] | None = None
    # tokens with loss per epoch, after truncation; for preference data both answers count,
    # since DPO scores both
    trained_tokens: int | None = None
    max_seq_len: int | None = None
    truncated_examples: int | None = None
    estimated_epochs: int | None = None  # the recipe's `auto` epochs (tunery.train.plan.auto_epochs)
    estimated_trained_tokens: int | None = None  # trained_tokens × estimated_epochs


class ValidationReport(BaseModel):
    """Every issue found in one pass over the training (and validation) file, plus statistics."""

    file: str
    validation_file: str | None = None
    issues: list[Issue]
    issue_counts: dict[str, int]  # exact, even where `issues` was capped
    refused: list[str] = []  # codes made errors by the caller (special_tokens_in_content)
    issues_omitted: int = 0  # issues counted but not kept (beyond max_issues_per_code)
    stats: Stats

    @computed_field
    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return self.error_count == 0

    @computed_field
    @property
    def error_count(self) -> int:
        return sum(n for code, n in self.issue_counts.items() if self._severity(code) == "error")

    @computed_field
    @property
    def warning_count(self) -> int:
        return sum(n for code, n in self.issue_counts.items() if self._severity(code) == "warning")

    def _severity(self, code: str) -> Severity:
        return "error" if code in self.refused else CODES[code]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


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
    if len(answers) == 2 and _canonical(answers[0]) == _canonical(answers[1]):
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


# Canonical JSON: key order and spacing do not make two examples different. ASCII output, so
# lone surrogates from "\ud800" escapes encode too. Built once: json.dumps with options builds a
# new encoder on every call, which costs more than the hash.
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode
_canonical_utf8 = json.JSONEncoder(ensure_ascii=False).encode


def _hash64(obj: object) -> int:
    """64-bit hash of the canonical JSON, only ever compared within one run.

    Python's own str hash (SipHash, keyed per process) costs a third of BLAKE2b, and this runs
    once per example. With 64 bits, a false duplicate among 10 million examples
    has odds of about 3 in a million.
    """
    return hash(_canonical(obj))


# ---------------------------------------------------------------------------------------------
# Reading: bounded lines, decoded and parsed, or the problem that stopped them.


def check_data_file(path: str | Path, name: str | None = None) -> None:
    """The one check of a data file's path, for every verb that reads one (`validate`, `train`):
    it exists, is a regular file (not a directory, a device such as /dev/zero, or a pipe) and can
    be opened. Messages call it `name` (an upload's own filename), default the path.

    Raises:
        TuneryError: exit code 2, what is wrong with the path and how to fix it.
    """
    path = Path(path)
    name = name or str(path)
    if path.is_symlink() and not path.exists():
        raise TuneryError(f"{name} is a broken symbolic link (to {os.readlink(path)})", hint="point it at the file")
    if not path.exists():
        raise TuneryError(f"{name} does not exist", hint="check the path (one JSON example per line)")
    if path.is_dir():
        raise TuneryError(f"{name} is a directory, not a JSONL file", hint="pass the .jsonl file inside it")
    if not path.is_file():
        raise TuneryError(f"{name} is not a regular file (a device, pipe or socket)", hint="pass a .jsonl file")
    if not os.access(path, os.R_OK):
        raise TuneryError(f"cannot read {name}: permission denied")


def _open(path: Path, name: str | None = None) -> BinaryIO:
    """`path` opened for the scan; errors call it `name` (an upload's own filename), default the path."""
    check_data_file(path, name)
    try:
        return path.open("rb", buffering=1 << 20)
    except OSError as exc:
        raise TuneryError(f"cannot read {name or path}: {exc.strerror}") from None


def _binary_reason(head: bytes) -> str | None:
    """Why the first bytes show this is not JSONL text, or None."""
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed (decompress it first)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it is UTF-16 text"
    if b"\x00" in head:
        return "it holds NUL bytes, so it is binary"
    return None


def _read_lines(fh: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Yield (1-based line, raw bytes), with None in place of a line over MAX_LINE_BYTES."""
    readline = fh.readline
    number = 0
    while True:
        raw = readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
                pass
            raw = None
        yield number, raw


def _parse(raw: bytes, number: int) -> tuple[object, tuple[str, str, int | None] | None]:
    """Decode and parse one line: (value, None) or (None, (code, message, column))."""
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start : exc.start + 1].hex()
        column = exc.start + 1
        return None, ("invalid_utf8", f"invalid UTF-8 at byte {column} (0x{byte})", column)
    try:
        value = json.loads(text)
    except RecursionError:
        return None, ("invalid_json", "the JSON is nested too deeply to parse", None)
    except ValueError:  # JSONDecodeError, and ints beyond Python's digit limit
        return None, _json_problem(text.rstrip("\r\n"))
    # JSON may spell half a UTF-16 surrogate pair ("\ud800"); it parses, but it is not a character,
    # and the tokenizer refuses it at training time. The substring test keeps valid lines fast.
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        column = _lone_surrogate_column(text)
        return None, ("invalid_utf8", f"the \\u escape at column {column} is half of a UTF-16 surrogate pair", column)
    return value, None


_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _has_lone_surrogate(value: object) -> bool:
    try:
        _canonical_utf8(value).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate_column(text: str) -> int | None:
    """1-based column of the first surrogate escape that is not part of a pair."""
    for match in _SURROGATE_ESCAPE.finditer(text):
        if len(match.group()) == 6:
            return match.start() + 1
    return None


def _json_problem(text: str) -> tuple[str, str, int | None]:
    """Why `text` is not JSON, from a parse without the line ending (which would shift the column)."""
    column, reason = None, "unparseable"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        column, reason = exc.colno, exc.msg
    except ValueError as exc:
        reason = str(exc)
    where = f" at column {column}" if column else ""
    context = ""
    if text.strip() in ("[", "{", "]", "}"):
        context = " (this looks like pretty-printed JSON, not one object per line)"
    elif column == len(text) + 1:
        context = " (the line ends before the JSON does: is it cut off, or split over several lines?)"
    return "invalid_json", f"not valid JSON{where}: {reason}{context}", column


# ---------------------------------------------------------------------------------------------
# Turn markers inside message text.

# Without a tokenizer: the turn markers of the common chat templates (ChatML, Llama 3, Mistral,
# Phi-3, Gemma). With one, its own special tokens.
COMMON_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "[INST]",
    "[/INST]",
)


class _Markers:
    """Finds a chat template's special tokens in the text of an example's messages."""

    def __init__(self, tokens: Sequence[str]):
        self.pattern = re.compile("|".join(re.escape(t) for t in sorted(set(tokens), key=len, reverse=True) if t))

    @classmethod
    def of(cls, tokenizer: ChatTokenizer | None) -> _Markers:
        if tokenizer is None:
            return cls(COMMON_MARKERS)
        added = tokenizer.tokenizer.get_added_tokens_decoder().values()
        return cls([t.content for t in added if t.special] + list(tokenizer.special_tokens.values()))

    def find(self, obj: dict, fmt: Format) -> str | None:
        """'<token>' in messages[i] for the first special token in a (valid) example's text."""
        if fmt == "preference":
            groups = [("input.messages", obj["input"]["messages"])]
            groups += [(key, obj[key]) for key in ("preferred_output", "non_preferred_output")]
        else:
            groups = [("messages", obj["messages"])]
        for where, messages in groups:
            for i, message in enumerate(messages, start=1):
                content = message.get("content")
                match = self.pattern.search(content) if type(content) is str else None
                if match:
                    return f"{json.dumps(match.group())} in {where}[{i}] ({message.get('role')})"
        return None


# ---------------------------------------------------------------------------------------------
# One pass over one file.


class _IssueSink:
    """Collects issues, keeping at most `cap` per code and counting all of them; codes in
    `refused` are errors whatever their rule's default severity."""

    def __init__(self, cap: int, refused: frozenset[str] = frozenset()):
        self.cap = cap
        self.refused = refused
        self.issues: list[Issue] = []
        self.counts: Counter[str] = Counter()

    def add(self, file: str, line: int | None, code: str, what: str, column: int | None = None) -> None:
        """Record `what` is wrong; the message adds how to fix it, from RULES."""
        self.counts[code] += 1
        if self.counts[code] <= self.cap:
            severity, fix = RULES[code]
            severity = "error" if code in self.refused else severity
            message = f"{what}; fix: {fix}"
            self.issues.append(
                Issue(file=file, line=line, column=column, code=code, severity=severity, message=message)
            )


@dataclass
class _FileScan:
    """What one pass over a file keeps: counts, hashes and line numbers, never the lines."""

    name: str
    format: Format | None = None
    lines: int = 0  # non-empty lines
    # one entry per valid example
    message_counts: array = field(default_factory=lambda: array("I"))
    hashes: array = field(default_factory=lambda: array("q"))
    hash_lines: array = field(default_factory=lambda: array("I"))

    @property
    def examples(self) -> int:
        return len(self.hash_lines)


class _TokenCounter:
    """Renders each valid example with the chat template: per-role tokens, trained tokens, truncation."""

    def __init__(self, tok: ChatTokenizer, max_seq_len: int | None, sink: _IssueSink):
        self.tok, self.max_seq_len, self.sink = tok, max_seq_len, sink
        self.per_role: dict[str, array] = {}
        self.totals = array("I")
        self.trained = 0
        self.truncated_examples = 0
        self.no_eos: dict[str, list[int]] = {}  # file → [first line, count]
        # No token is longer than the vocabulary's longest entry, so text longer than max_seq_len of
        # them cannot fit: such an example is reported without tokenising it (a 5 MB line took 25 s
        # and 1.5 GB to tokenise, for tokens that training would cut off). Below TOKENISE_CHARS it is
        # tokenised all the same, so the rules that need its tokens (an answer cut away) still see them.
        longest = max(map(len, tok.tokenizer.get_vocab()))
        self.max_chars = max(max_seq_len * longest, TOKENISE_CHARS) if max_seq_len else None

    def add(self, file: str, line: int, obj: dict, fmt: Format, collect_stats: bool) -> None:
        from tunery.data.render import render_chat

        example = to_example(obj, line)
        if fmt == "preference":
            chats = [example.as_chat("chosen"), example.as_chat("rejected")]
            shown = [*example.prompt, example.chosen]
        else:
            chats, shown = [example], example.messages
        chars = max(sum(len(m.get("content") or "") for m in chat.messages) for chat in chats)
        if self.max_chars is not None and chars > self.max_chars:
            self.truncated_examples += 1
            what = (
                f"{chars:,} characters of text, more than max_seq_len {self.max_seq_len} tokens can hold: "
                "not tokenised, and training would cut most of it off"
            )
            self.sink.add(file, line, "example_too_long", what)
            return
        try:
            rendered = [render_chat(chat, self.tok) for chat in chats]
        except Exception as exc:  # noqa: BLE001 - the template is third-party code; any failure is a data issue
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.sink.add(file, line, "template_error", f"the chat template cannot render this example ({reason})")
            return
        length = max(len(r.input_ids) for r in rendered)
        limit = self.max_seq_len
        if limit is not None and length > limit:
            self.truncated_examples += 1
            excess = length - limit
            what = f"{length} tokens, {excess} more than max_seq_len {limit}: the last {excess} will be cut off"
            self.sink.add(file, line, "example_too_long", what)
            # Token t is trained when loss_mask[t] is set; truncation keeps tokens [0, limit).
            empty = [r for r in rendered if sum(r.loss_mask[1:]) and not sum(r.loss_mask[1:limit])]
            if empty:
                which = "answer" if fmt != "preference" else ("pair's answers" if len(empty) == 2 else "pair's answer")
                what = f"max_seq_len {limit} cuts away every trained token of the {which}: training drops it"
                self.sink.add(file, line, "no_trained_token", what)
        if not all(r.eos_trained for r in rendered):
            self.no_eos.setdefault(file, [line, 0])[1] += 1
        if not collect_stats:
            return
        self.trained += sum(sum(r.loss_mask[:limit]) for r in rendered)
        self.totals.append(length)
        counts = dict.fromkeys(self.per_role, 0)
        for m in shown:
            content = m.get("content")
            counts[m["role"]] = counts.get(m["role"], 0) + (self.tok.count(content) if content else 0)
        for role, n in counts.items():
            if role not in self.per_role:  # a role first seen now was absent (0) from earlier examples
                self.per_role[role] = array("I", [0]) * (len(self.totals) - 1)
            self.per_role[role].append(n)

    def report_no_eos(self) -> None:
        for file, (line, count) in self.no_eos.items():
            what = (
                f"the chat template puts no end-of-turn token after the assistant reply ({count} example(s), "
                "first here), so the tuned model would not learn to stop"
            )
            self.sink.add(file, line, "template_no_eos", what)


def _scan(
    path: Path,
    sink: _IssueSink,
    tokens: _TokenCounter | None,
    *,
    collect_token_stats: bool,
    markers: _Markers,
    name: str | None = None,
) -> _FileScan:
    name = name or str(path)
    scan = _FileScan(name=name)
    with _open(path, name) as fh:
        try:
            head = fh.peek(8192)[:8192]
        except OSError as exc:
            raise TuneryError(f"cannot read {name}: {exc.strerror}") from None
        reason = _binary_reason(head)
        if reason:
            sink.add(name, None, "binary_file", f"{Path(name).name} is not JSONL text: {reason}")
            return scan
        add = sink.add
        # bound once: this loop runs per line of multi-GB files
        count_messages, add_hash, add_line = scan.message_counts.append, scan.hashes.append, scan.hash_lines.append
        first_format_line = number = blanks = 0
        blank_run: list[int] = []  # first and last line of the current run of empty lines
        try:
            for number, raw in _read_lines(fh):
                if raw is None:
                    add(name, number, "line_too_long", f"the line is over the {MAX_LINE_BYTES // 2**20} MiB limit")
                    continue
                if raw.isspace():
                    blanks += 1
                    if blank_run:
                        blank_run[1] = number
                    else:
                        blank_run = [number, number]
                    continue
                if blank_run:  # empty lines followed by data: in the middle, not trailing
                    first, last = blank_run
                    span = "an empty line" if first == last else f"{last - first + 1} empty lines ({first}-{last})"
                    add(name, first, "empty_line", f"{span} between examples")
                    blank_run = []
                obj, problem = _parse(raw, number)
                if problem:
                    add(name, number, *problem)
                    continue
                fmt, n_messages, problems = check_example(obj)
                if fmt is not None and fmt != scan.format:
                    if scan.format is None:
                        scan.format, first_format_line = fmt, number
                    else:
                        what = f"found multiple dataset formats: this line is {fmt}, line {first_format_line} is "
                        problems.append(("mixed_formats", what + scan.format))
                if problems:
                    for code, message in problems:
                        add(name, number, code, message)
                    if any(CODES[code] == "error" for code, _ in problems):
                        continue
                forged = markers.find(obj, fmt)
                if forged:
                    add(name, number, "special_tokens_in_content", f"the chat template's special token {forged}")
                count_messages(n_messages)
                add_hash(_hash64(obj))
                add_line(number)
                if tokens is not None:
                    tokens.add(name, number, obj, fmt, collect_token_stats)
        except OSError as exc:
            raise TuneryError(f"cannot read {name}: {exc.strerror}") from None
        scan.lines = number - blanks
    if scan.lines == 0:
        sink.add(name, None, "empty_file", f"{Path(name).name} holds no examples")
    return scan


# ---------------------------------------------------------------------------------------------
# Across files: duplicates and leakage from the hashes.


def _duplicates(scan: _FileScan) -> Iterator[tuple[int, int]]:
    """(line, line of its first copy) for every exact duplicate, from the hashes alone."""
    if len(scan.hashes) < 2:
        return
    import numpy as np

    hashes = np.frombuffer(scan.hashes, dtype=np.int64)
    lines = np.frombuffer(scan.hash_lines, dtype=np.uint32)
    order = np.argsort(hashes, kind="stable")  # stable: the first copy of a group has the lowest line
    ordered = hashes[order]
    same = np.concatenate(([False], ordered[1:] == ordered[:-1]))
    group_start = np.maximum.accumulate(np.where(same, 0, np.arange(len(ordered))))
    for i in np.flatnonzero(same):
        yield int(lines[order[i]]), int(lines[order[group_start[i]]])


def _overlap(train: _FileScan, valid: _FileScan) -> Iterator[tuple[int, int]]:
    """(training line, validation line) for every training example also in the validation file."""
    if not len(train.hashes) or not len(valid.hashes):
        return
    import numpy as np

    valid_hashes = np.frombuffer(valid.hashes, dtype=np.int64)
    order = np.argsort(valid_hashes, kind="stable")
    ordered = valid_hashes[order]
    train_hashes = np.frombuffer(train.hashes, dtype=np.int64)
    pos = np.minimum(np.searchsorted(ordered, train_hashes), len(ordered) - 1)
    train_lines = np.frombuffer(train.hash_lines, dtype=np.uint32)
    valid_lines = np.frombuffer(valid.hash_lines, dtype=np.uint32)
    for i in np.flatnonzero(ordered[pos] == train_hashes):
        yield int(train_lines[i]), int(valid_lines[order[pos[i]]])


def validate_file(
    path: str | Path,
    *,
    validation: str | Path | None = None,
    tokenizer: ChatTokenizer | None = None,
    max_seq_len: int | None = None,
    max_issues_per_code: int = MAX_ISSUES_PER_CODE,
    name: str | None = None,
    special_tokens: Literal["warn", "refuse"] = "warn",
    epochs: Callable[[int], int] | None = None,
) -> ValidationReport:
    """Check a training file (and optionally its validation file) in one streaming pass each.

    Args:
        path: the training JSONL file.
        validation: a validation JSONL file; checked with the same rules, plus leakage.
        tokenizer: enables token statistics, trained tokens and the end-of-turn check.
        max_seq_len: with a tokenizer, warn about examples longer than this.
        max_issues_per_code: issues kept per code; the counts stay exact beyond it.
        name: what the report and its messages call the training file (the server passes an
            upload's own filename, never its temporary path); default the path.
        special_tokens: a chat template's special token in message text (`<|im_end|>`) can forge
            a turn: "warn" reports `special_tokens_in_content` as a warning, "refuse" as an error.
        epochs: the recipe's rule for `n_epochs="auto"` (`tunery.train.plan.auto_epochs`), for
            the report's estimated epochs and trained tokens; None leaves them out.

    Returns:
        The report; `report.ok` is False when any error was found.

    Raises:
        TuneryError: a file is missing, a directory or unreadable (I/O, not data, problems).
    """
    if max_seq_len is not None and max_seq_len < 1:
        raise TuneryError(f"max_seq_len must be at least 1, got {max_seq_len}")
    path = Path(path)
    refused = frozenset({"special_tokens_in_content"}) if special_tokens == "refuse" else frozenset()
    sink = _IssueSink(max_issues_per_code, refused)
    markers = _Markers.of(tokenizer)
    tokens = _TokenCounter(tokenizer, max_seq_len, sink) if tokenizer is not None else None
    train = _scan(path, sink, tokens, collect_token_stats=True, markers=markers, name=name)
    valid = None
    if validation is not None:
        valid = _scan(Path(validation), sink, tokens, collect_token_stats=False, markers=markers)
        if valid.format and train.format and valid.format != train.format:
            what = f"found multiple dataset formats: this file is {valid.format}, the training file {train.format}"
            sink.add(valid.name, None, "mixed_formats", what)
    for scan in (train, valid) if valid else (train,):
        for line, first in _duplicates(scan):
            sink.add(scan.name, line, "duplicate_example", f"exact duplicate of line {first}")
    if valid is not None:
        for line, valid_line in _overlap(train, valid):
            sink.add(train.name, line, "train_validation_overlap", f"also in the validation file, at line {valid_line}")
    if 0 < train.lines < MIN_EXAMPLES:
        found = f"{train.lines} example{'s' * (train.lines != 1)}"
        sink.add(train.name, None, "too_few_examples", f"{found}, fewer than the minimum of {MIN_EXAMPLES}")
    if tokens is not None:
        tokens.report_no_eos()

    file_order = {train.name: 0, valid.name if valid else None: 1}
    issues = sorted(sink.issues, key=lambda i: (file_order.get(i.file, 0), i.line or 0))
    stats = Stats(
        format=train.format,
        lines=train.lines,
        examples=train.examples,
        validation_examples=valid.examples if valid else None,
        messages_per_example=summarize(train.message_counts),
        estimated_epochs=epochs(train.examples) if epochs and train.examples else None,
    )
    if tokens is not None:
        order = {role: i for i, role in enumerate(ROLES)}
        per_role = {r: summarize(v) for r, v in sorted(tokens.per_role.items(), key=lambda rv: order[rv[0]])}
        stats.tokens_per_example = {**per_role, "total": summarize(tokens.totals)} if tokens.totals else None
        stats.trained_tokens = tokens.trained
        stats.max_seq_len = max_seq_len
        stats.truncated_examples = tokens.truncated_examples
        if stats.estimated_epochs:
            stats.estimated_trained_tokens = tokens.trained * stats.estimated_epochs
    return ValidationReport(
        file=train.name,
        validation_file=str(validation) if validation is not None else None,
        issues=issues,
        issue_counts=dict(sink.counts),
        refused=sorted(refused),
        issues_omitted=sum(sink.counts.values()) - len(sink.issues),
        stats=stats,
    )


def first_valid_examples(path: str | Path, n: int) -> list[tuple[int, dict]]:
    """The first `n` (line, example) pairs of a file that pass every per-line rule, for `--show`."""
    found: list[tuple[int, dict]] = []
    with _open(Path(path)) as fh:
        for number, raw in _read_lines(fh):
            if len(found) >= n:
                break
            if raw is None or raw.isspace():
                continue
            obj, problem = _parse(raw, number)
            if problem:
                continue
            fmt, _, problems = check_example(obj)
            if fmt and not any(CODES[code] == "error" for code, _ in problems):
                found.append((number, obj))
    return found
