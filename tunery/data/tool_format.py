"""How tools and tool calls read in a prompt, and how calls are read back out of a completion.

Chat templates such as Qwen 2.5's render `tools` and `tool_calls` themselves. Others, SmolLM2's and
plain ChatML among them, ignore both: a model trained through them would see an empty assistant turn
where the call was, and no tools at all. For those templates tunery writes the tools into the system
message and each call into the assistant's content, in the Hermes format that Qwen 2.5, Hermes 3 and
SmolLM3 were trained on, before the template runs. Training, evaluation and serving all render
through `ChatTokenizer.apply_template`, so they read the same text:

    <tools>
    {"type": "function", "function": {"name": "get_weather", ...}}
    </tools>
    ...
    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A tool's result is a message with role "tool"; the template writes the role as given.
"""

from __future__ import annotations

import json
import re

OPEN, CLOSE = "<tool_call>", "</tool_call>"
TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n'
    "</tool_call>"
)
_CALL = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


def template_renders_tools(template: str) -> bool:
    """Whether a chat template writes tools and tool calls itself (it reads the variables)."""
    return "tool_calls" in template or re.search(r"\btools\b", template) is not None


def calls_parse_back(template: str) -> bool:
    """Whether tool calls written through this template can be read back by `split_tool_calls`:
    the inline Hermes format, or a template that writes that format itself."""
    return not template_renders_tools(template) or OPEN in template


def call_text(name: str, arguments) -> str:
    """One call in the Hermes format; `arguments` is an object or OpenAI's JSON string of one."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass  # not JSON: written as given, as the training data has it
    return f"{OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CLOSE}"


def inline_tools(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """The conversation with tools in the system message and tool calls in the assistant's content.

    >>> tools = [{"type": "function", "function": {"name": "f"}}]
    >>> call = {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    >>> out = inline_tools([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]}], tools)
    >>> [m["role"] for m in out], out[2]["content"]
    (['system', 'user', 'assistant'], '<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')
    """
    out = []
    for message in messages:
        calls = message.get("tool_calls") or []
        if calls:
            written = [call_text(c["function"]["name"], c["function"].get("arguments", {})) for c in calls]
            content = message.get("content") or ""
            message = {k: v for k, v in message.items() if k != "tool_calls"}
            message["content"] = "\n".join(([content] if content else []) + written)
        out.append(message)
    if tools:
        header = TOOLS_HEADER.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{header}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": header})
    return out


def split_tool_calls(text: str) -> tuple[str | None, list[dict]]:
    """(the content outside calls or None, [{"name", "arguments" as a JSON string}]) from a completion.

    A block whose JSON does not parse, or names no function, stays in the content: it is not a call.

    >>> split_tool_calls('<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')
    (None, [{'name': 'f', 'arguments': '{"x": 1}'}])
    >>> split_tool_calls("no call here")
    ('no call here', [])
    """
    calls, kept, last = [], [], 0
    for match in _CALL.finditer(text):
        try:
            value = json.loads(match.group(1))
        except ValueError:
            continue
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            continue
        arguments = value.get("arguments", value.get("parameters", {}))
        calls.append({"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)})
        kept.append(text[last : match.start()])
        last = match.end()
    kept.append(text[last:])
    content = "".join(kept).strip()
    return (content or None) if calls else (text if text else None), calls


class ToolCallStream:
    """Streams a completion's content while holding back what may be a tool call.

    Text is released until a tool call could begin (a tail that is a prefix of `<tool_call>`);
    from the first call on, everything is held and read by `finish`.
    """

    def __init__(self):
        self.text = ""
        self.released = 0
        self.in_call = False

    def push(self, delta: str) -> str:
        self.text += delta
        if self.in_call:
            return ""
        start = self.text.find(OPEN, self.released)
        if start >= 0:
            self.in_call = True
            return self._release(start)
        held = next((k for k in range(min(len(OPEN) - 1, len(self.text)), 0, -1) if self.text.endswith(OPEN[:k])), 0)
        return self._release(len(self.text) - held)

    def finish(self) -> tuple[str, list[dict]]:
        """(the content not released yet, the calls): what `split_tool_calls` finds in the held text."""
        rest, calls = split_tool_calls(self.text[self.released :])
        self.released = len(self.text)
        return rest or "", calls

    def _release(self, upto: int) -> str:
        out = self.text[self.released : upto]
        self.released = max(self.released, upto)
        return out
