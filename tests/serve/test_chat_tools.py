"""tools and tool_choice through the real server and the openai client, on the tiny random model:
the calls it must make are constrained to the functions' schemas, streamed and not."""

from __future__ import annotations

import json
import shutil

import jsonschema
import openai
import pytest

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"enum": ["Paris", "Rome"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "now", "parameters": {"type": "object", "properties": {}, "additionalProperties": False}},
}
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def alpha(make_server, tiny_model_dir, tmp_path_factory):
    """The tiny model with room for tool definitions: its 400-token vocabulary spends a token on
    every two characters, and RoPE positions need no weights, so the context can simply grow."""
    roomy = tmp_path_factory.mktemp("roomy") / "tiny"
    shutil.copytree(tiny_model_dir, roomy)
    config = json.loads((roomy / "config.json").read_text())
    (roomy / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    return make_server(workers=0, args=["--model", f"roomy={roomy}"]).client("sk-alpha")


def _check(calls, names):
    assert calls and all(c.type == "function" and c.id.startswith("call_") for c in calls)
    for call in calls:
        assert call.function.name in names
        arguments = json.loads(call.function.arguments)
        if call.function.name == "weather":
            jsonschema.validate(arguments, WEATHER["function"]["parameters"])
        else:
            assert arguments == {}


@pytest.mark.parametrize("seed", [0, 1])
def test_required_and_named_tool_choice_always_give_valid_calls(alpha, seed):
    common = dict(model="roomy", messages=MESSAGES, tools=[WEATHER, TIME], max_tokens=300, temperature=1.0, seed=seed)
    reply = alpha.chat.completions.create(**common, tool_choice="required")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    _check(choice.message.tool_calls, {"weather", "now"})

    named = alpha.chat.completions.create(**common, tool_choice={"type": "function", "function": {"name": "weather"}})
    assert named.choices[0].finish_reason == "tool_calls"
    assert len(named.choices[0].message.tool_calls) == 1
    _check(named.choices[0].message.tool_calls, {"weather"})

    single = alpha.chat.completions.create(**common, tool_choice="required", parallel_tool_calls=False)
    assert len(single.choices[0].message.tool_calls) == 1


def test_streamed_tool_calls_arrive_whole_with_their_finish_reason(alpha):
    stream = alpha.chat.completions.create(
        model="roomy",
        messages=MESSAGES,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,  # greedy decoding of a random model would repeat calls until the limit
        max_tokens=300,
        temperature=0,
        stream=True,
    )
    content, deltas, reasons = "", [], []
    for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        deltas += delta.tool_calls or []
        reasons += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert content == "" and reasons == ["tool_calls"], (content, reasons)
    assert [d.index for d in deltas] == list(range(len(deltas)))
    assert all(d.function.name == "weather" for d in deltas)
    for d in deltas:
        jsonschema.validate(json.loads(d.function.arguments), WEATHER["function"]["parameters"])

    plain = alpha.chat.completions.create(
        model="roomy",
        messages=MESSAGES,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=300,
        temperature=0,
    )
    assert [c.function.arguments for c in plain.choices[0].message.tool_calls] == [d.function.arguments for d in deltas]


def test_tools_reach_the_prompt_and_a_conversation_with_calls_and_results_goes_on(alpha):
    bare = alpha.chat.completions.create(model="roomy", messages=MESSAGES, max_tokens=1)
    shown = alpha.chat.completions.create(
        model="roomy", messages=MESSAGES, tools=[WEATHER], tool_choice="none", max_tokens=8
    )
    assert shown.usage.prompt_tokens > bare.usage.prompt_tokens + 50  # the definitions are in the prompt
    assert shown.choices[0].message.tool_calls is None and shown.choices[0].finish_reason in ("stop", "length")

    call = (
        alpha.chat.completions.create(
            model="roomy",
            messages=MESSAGES,
            tools=[WEATHER],
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=300,
            temperature=0,
        )
        .choices[0]
        .message
    )
    history = [
        *MESSAGES,
        call,  # the returned message as it is (refusal: null included), as apps append it
        {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": '{"temperature_c": 21}'},
    ]
    after = alpha.chat.completions.create(model="roomy", messages=history, tools=[WEATHER], max_tokens=4)
    assert after.usage.prompt_tokens > shown.usage.prompt_tokens  # the call and its result are in the prompt


def test_tool_requests_that_cannot_be_served_are_400s_naming_the_field(alpha):
    cases = [
        (dict(tool_choice="required"), "tool_choice"),
        (dict(parallel_tool_calls=False), "parallel_tool_calls"),
        (dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
        (
            dict(
                tools=[
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "array", "uniqueItems": True}},
                    }
                ],
                tool_choice="required",
            ),
            "tools",
        ),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            alpha.chat.completions.create(model="roomy", messages=MESSAGES, max_tokens=4, **extra)
        assert err.value.param == param, (extra, err.value.message)
