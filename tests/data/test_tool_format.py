"""Tool calls written inline for templates that ignore tools, and read back out of completions."""

from __future__ import annotations

from tunery.data.formats import ChatExample
from tunery.data.render import ChatTokenizer, render_chat, render_prompt
from tunery.data.tool_format import ToolCallStream, split_tool_calls

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_a_template_without_tools_gets_them_inline_and_trains_on_the_call(tiny_model_dir):
    tok = ChatTokenizer.from_dir(tiny_model_dir)  # ChatML: no tools, no tool_calls
    assert not tok.renders_tools
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
        {"role": "assistant", "content": "It is 21C."},
    ]
    example = ChatExample(line=1, messages=messages, tools=TOOLS)
    rendered = render_chat(example, tok)
    text = tok.decode(rendered.input_ids, skip_special_tokens=False)
    assert '"name": "get_weather"' in text and "<tools>" in text and "<|im_start|>tool\n21C" in text
    trained = tok.decode([t for t, m in zip(rendered.input_ids, rendered.loss_mask, strict=True) if m])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in trained
    assert "<tools>" not in trained  # the definitions are prompt, not target
    # Serving renders the same prefix for the same conversation.
    prompt = render_prompt(messages[:1], tok, tools=TOOLS)
    assert rendered.input_ids[: len(prompt)] == prompt


def test_calls_are_read_back_and_the_stream_holds_back_only_what_may_be_a_call():
    text = 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, calls = split_tool_calls(text)
    assert content == "Let me look." and calls == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert split_tool_calls("<tool_call>\nnot json\n</tool_call>") == ("<tool_call>\nnot json\n</tool_call>", [])

    stream = ToolCallStream()
    released = [stream.push(piece) for piece in ["Let me", " look.\n<tool", '_call>\n{"name": ', '"get_weather"}']]
    assert released == ["Let me", " look.\n", "", ""]
    assert stream.finish() == ("", [{"name": "get_weather", "arguments": "{}"}])

    plain = ToolCallStream()
    assert [plain.push(p) for p in ["a <", "b"]] == ["a ", "<b"] and plain.finish() == ("", [])
