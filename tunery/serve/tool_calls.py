"""`tools`, `tool_choice` and `parallel_tool_calls` of a chat request: what the prompt shows, what
the completion must be, and how its text becomes OpenAI's `tool_calls`.

The tools reach the prompt through the model's chat template exactly as training renders them
(`tunery.data.tool_format`). `tool_choice`:

- `auto` (the default with tools): the model decides; calls in its answer are parsed back;
- `none`: the tools are still shown, as OpenAI does, but the answer is returned as text;
- `required` or a named function: the answer is constrained to calls (of that function), with
  arguments that match the function's parameters schema.

`parallel_tool_calls: false` allows one call: it is the only one constrained decoding lets through,
and with `auto` the first call the model writes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tunery.constraints import SchemaError, tool_call_grammar
from tunery.data.tool_format import calls_parse_back, split_tool_calls
from tunery.serve.errors import APIError
from tunery.serve.types.chat import ChatCompletionRequest, FunctionCall, ToolCall


@dataclass(frozen=True)
class ToolPlan:
    tools: list[dict] | None  # OpenAI tool definitions, for the chat template
    parse: bool  # read calls back out of the completion
    single: bool  # at most one call
    grammar: str | None  # the completion must be calls (required / named function)


NO_TOOLS = ToolPlan(None, False, False, None)


def plan_tools(body: ChatCompletionRequest, template: str) -> ToolPlan:
    """The plan for this request on a model with this chat template.

    Raises:
        APIError: tool_choice without tools, a named function that is not among them, a template whose
            tool calls cannot be read back, or parameters that constrained decoding cannot enforce (400).
    """
    choice = body.tool_choice
    if not body.tools:
        if choice not in (None, "none"):
            raise APIError(400, "tool_choice needs tools: the request defines none", param="tool_choice")
        if body.parallel_tool_calls is not None:
            raise APIError(
                400, "parallel_tool_calls needs tools: the request defines none", param="parallel_tool_calls"
            )
        return NO_TOOLS
    tools = [tool.model_dump(exclude_none=True) for tool in body.tools]
    choice = choice or "auto"
    if choice == "none":
        return ToolPlan(tools, False, False, None)
    if not calls_parse_back(template):
        raise APIError(
            400,
            "tools: this model's chat template writes tool calls in its own format, which tunery cannot read back "
            "(it reads <tool_call> blocks)",
            param="tools",
        )
    single = body.parallel_tool_calls is False
    if choice == "auto":
        return ToolPlan(tools, True, single, None)
    functions = [t["function"] for t in tools]
    if choice != "required":
        functions = [f for f in functions if f["name"] == choice.function.name]
        if not functions:
            raise APIError(
                400,
                f"tool_choice names the function {choice.function.name!r}, which is not among the tools "
                f"({', '.join(t['function']['name'] for t in tools)})",
                param="tool_choice",
            )
        single = True
    try:
        grammar = tool_call_grammar(functions, parallel=not single)
    except SchemaError as exc:
        message = str(exc).splitlines()[0]
        raise APIError(400, f"tools: a function's parameters cannot be enforced: {message}", param="tools") from None
    return ToolPlan(tools, True, single, grammar)


def tool_calls_of(calls: list[dict], plan: ToolPlan) -> list[ToolCall]:
    """OpenAI's `tool_calls` for calls parsed from a completion, each with a fresh id."""
    kept = calls[:1] if plan.single else calls
    return [
        ToolCall(id="call_" + secrets.token_hex(12), function=FunctionCall(name=c["name"], arguments=c["arguments"]))
        for c in kept
    ]


def answer_of(text: str, plan: ToolPlan) -> tuple[str | None, list[ToolCall]]:
    """(content, tool calls) of a whole completion."""
    if not plan.parse:
        return text, []
    content, calls = split_tool_calls(text)
    return content, tool_calls_of(calls, plan)
