"""Structured outputs, logprobs and tools on the real default model, SmolLM2-135M-Instruct, through
the unmodified openai client; a tiny tool-use task is fine-tuned through the API and called."""

from __future__ import annotations

import json

import jsonschema
import pytest
from serving import wait_for_status

pytestmark = pytest.mark.real_model

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Alice is 31 years old. Give her name and age as JSON."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CITIES = ["Paris", "Rome", "Berlin", "Madrid", "Lisbon", "Vienna", "Prague", "Oslo", "Dublin", "Athens"]
ASKS = ["What's the weather in {}?", "How is the weather in {} today?", "Is it raining in {}?", "Weather for {}."]


@pytest.fixture(scope="module")
def server(make_server, smollm2_dir):
    return make_server(workers=1)


def test_structured_outputs_and_logprobs_on_the_default_model(server):
    client = server.client()
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=ASK,
        response_format=fmt,
        max_tokens=40,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    jsonschema.validate(json.loads(choice.message.content), PERSON)
    entries = choice.logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    assert all(e.logprob <= 0 and len(e.top_logprobs) == 3 for e in entries)

    streamed = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=ASK,
            response_format=fmt,
            max_tokens=40,
            temperature=0,
            stream=True,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == choice.message.content

    anything = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=ASK,
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    assert isinstance(json.loads(anything.choices[0].message.content), dict)


def test_a_tool_use_task_is_fine_tuned_served_and_called(server, tmp_path):
    client = server.client()
    rows = []
    for i in range(32):
        city = CITIES[i % len(CITIES)]
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
        }
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": ASKS[i % len(ASKS)].format(city)},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                ],
                "tools": [WEATHER],
            }
        )
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    training = client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert training.status == "processed", training.status_details
    job = client.fine_tuning.jobs.create(
        model="smollm2-135m-instruct",
        training_file=training.id,
        suffix="weather",
        seed=980253174,  # a fixed seed: jobs without one draw a random seed, as OpenAI's do
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed"}, timeout=420)
    assert done.status == "succeeded", done.error

    ask = [{"role": "user", "content": "What's the weather in Tokyo?"}]  # a city it never saw
    reply = client.chat.completions.create(
        model=done.fine_tuned_model, messages=ask, tools=[WEATHER], max_tokens=40, temperature=0
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    [call] = choice.message.tool_calls
    # A 135M model may pad or case the name it copies (seen: " Tokyo "); the call and the city are what count.
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and list(arguments) == ["city"]
    assert arguments["city"].strip().casefold() == "tokyo"

    deltas, reasons = [], []
    for chunk in client.chat.completions.create(
        model=done.fine_tuned_model, messages=ask, tools=[WEATHER], max_tokens=40, temperature=0, stream=True
    ):
        deltas += chunk.choices[0].delta.tool_calls or []
        reasons += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert reasons == ["tool_calls"] and [d.function.arguments for d in deltas] == [call.function.arguments]

    # The base model, never trained on tools, still makes a valid call when one is required.
    forced = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=ask,
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=40,
        temperature=0,
    )
    [call] = forced.choices[0].message.tool_calls
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
