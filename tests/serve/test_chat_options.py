"""Chat completion options through the real server and the unmodified openai client: logprobs,
penalties, logit_bias, response_format, stream options, and every refused field named in its 400."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
import torch

from tunery.data.render import ChatTokenizer, render_prompt
from tunery.serve.types.chat import REFUSED

MESSAGES = [{"role": "user", "content": "hello world"}]
LABEL_SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["billing", "account"]}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["label", "n"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def alpha(make_server):
    return make_server(workers=0).client("sk-alpha")


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), ChatTokenizer.from_dir(tiny_model_dir)


def greedy(model, steps: int, *, frequency=0.0, presence=0.0, bias=None):
    """The reference: greedy decoding by hand, OpenAI's penalties applied to the logits; returns
    (token ids, raw log-softmax of each step)."""
    net, tok = model
    ids = render_prompt(MESSAGES, tok)
    out, steps_logprobs = [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = net(torch.tensor([ids + out])).logits[0, -1].float()
            steps_logprobs.append(torch.log_softmax(logits, -1))
            for token in set(out):
                logits[token] -= out.count(token) * frequency + presence
            for token, value in (bias or {}).items():
                logits[token] += value
            token = int(logits.argmax())
            if token in tok.stop_ids:
                break
            out.append(token)
    return out, steps_logprobs


def test_logprobs_are_the_models_own_log_softmax_streamed_and_not(alpha, model):
    reply = alpha.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, logprobs=True, top_logprobs=5
    )
    entries = reply.choices[0].logprobs.content
    ids, expected = greedy(model, 8)
    tok = model[1]
    assert len(entries) == len(ids) == reply.usage.completion_tokens
    for entry, token, logprobs in zip(entries, ids, expected, strict=True):
        assert entry.logprob == pytest.approx(float(logprobs[token]), abs=1e-4)
        assert bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token
        assert tok.decode([token]) in (entry.token, entry.token.strip())
        values, top_ids = logprobs.topk(5)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(values.tolist(), abs=1e-4)
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-6)  # greedy took the top one
    assert "".join(e.token for e in entries) == reply.choices[0].message.content

    streamed = []
    for chunk in alpha.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, logprobs=True, top_logprobs=5, stream=True
    ):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += chunk.choices[0].logprobs.content
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in entries]

    plain = alpha.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
    assert plain.choices[0].logprobs is None


def test_penalties_and_logit_bias_change_the_logits_as_openai_defines(alpha, model):
    tok = model[1]
    ids, _ = greedy(model, 12, frequency=0.7, presence=0.4)
    reply = alpha.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=12, temperature=0, frequency_penalty=0.7, presence_penalty=0.4
    )
    assert reply.choices[0].message.content == tok.decode(ids)
    assert ids != greedy(model, 12)[0]  # the penalties changed this completion

    forced = tok.tokenizer.token_to_id("a")
    banned = greedy(model, 1)[0][0]
    bias = {forced: 100.0, banned: -100.0}
    ids, _ = greedy(model, 6, bias=bias)
    reply = alpha.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=6,
        temperature=0,
        logit_bias={str(k): int(v) for k, v in bias.items()},
    )
    assert reply.choices[0].message.content == tok.decode(ids) == "a" * 6


@pytest.mark.parametrize("stream", [False, True])
def test_a_json_schema_response_format_always_validates(alpha, stream):
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": LABEL_SCHEMA, "strict": True}}
    for seed in range(3):
        request = dict(model="tiny", messages=MESSAGES, max_tokens=60, temperature=1.0, seed=seed, response_format=fmt)
        if stream:
            chunks = list(alpha.chat.completions.create(**request, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        else:
            reply = alpha.chat.completions.create(**request)
            text, reason = reply.choices[0].message.content, [reply.choices[0].finish_reason]
        assert reason == ["stop"], text
        jsonschema.validate(json.loads(text), LABEL_SCHEMA)


def test_unsupported_schema_features_and_refused_fields_are_400s_naming_them(alpha):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as err:
        alpha.chat.completions.create(model="tiny", messages=MESSAGES, response_format=fmt)
    assert "uniqueItems" in err.value.message and err.value.param == "response_format"

    values = {name: {"type": "x"} for name in REFUSED} | {
        "store": True,
        "modalities": ["text", "audio"],
        "service_tier": "flex",
    }
    for name, value in values.items():
        with pytest.raises(openai.BadRequestError) as err:
            alpha.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1, extra_body={name: value})
        assert err.value.param == name and name in err.value.message, (name, err.value.message)

    for extra, param in [
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"100000": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"no_such_field": 1}, "no_such_field"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            alpha.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1, extra_body=extra)
        assert err.value.param == param, (extra, err.value.message)

    # What tunery does do is accepted: harmless values of those fields, and end-user identifiers.
    reply = alpha.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=2, store=False, modalities=["text"], service_tier="auto", user="u1"
    )
    assert reply.choices[0].message.content is not None


def test_stream_options_usage_and_obfuscation(alpha):
    chunks = list(
        alpha.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True, "include_obfuscation": True},
        )
    )
    assert chunks[-1].usage.completion_tokens == 4 and not chunks[-1].choices
    assert all(c.obfuscation for c in chunks)
    plain = list(alpha.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, stream=True))
    assert all(c.obfuscation is None and c.usage is None for c in plain)
