"""Forwarding chat completions to an upstream OpenAI-compatible server: a second real `tunery
serve` stands in for vLLM, and the real openai client talks to the front server."""

from __future__ import annotations

import json

import openai
import pytest
from serving import KEYS, ServerProcess, free_port, server_env

from tunery.errors import TuneryError
from tunery.serve.forwarding import parse_upstream_flag
from tunery.serve.settings import load_settings

MESSAGES = [{"role": "user", "content": "Classify the ticket: my invoice is wrong."}]
GREEDY = {"messages": MESSAGES, "temperature": 0, "max_tokens": 12, "seed": 1}


@pytest.fixture(scope="module")
def upstream(make_server) -> ServerProcess:
    return make_server(keys=KEYS)  # serves the tiny model as "tiny", behind keys


@pytest.fixture(scope="module")
def front(upstream, tiny_model_dir, tmp_path_factory):
    """A front server that forwards "remote-tiny" (key from the environment), a model the upstream
    does not have, and one on a port nothing listens on; it logs prompts into its own home."""
    root = tmp_path_factory.mktemp("front")
    config = root / "server.yaml"
    config.write_text(
        json.dumps(
            {
                "upstreams": {
                    "remote-tiny": {"url": upstream.base_url, "model": "tiny", "api_key_env": "UPSTREAM_KEY"},
                    "remote-missing": {"url": upstream.base_url, "model": "nope", "api_key_env": "UPSTREAM_KEY"},
                }
            }
        )
    )
    env = {
        **server_env(KEYS),
        "UPSTREAM_KEY": "sk-alpha",
        "TUNERY_LOG_PROMPTS": "1",
        "TUNERY_HOME": str(root / "tunery-home"),
    }
    dead = f"http://127.0.0.1:{free_port()}/v1"
    server = ServerProcess(
        home=root / "server",
        args=[
            "--workers",
            "0",
            "--model",
            f"tiny={tiny_model_dir}",
            "--config",
            str(config),
            "--upstream",
            f"dead={dead}",
        ],
        env=env,
        log=root / "front.log",
    )
    server.start()
    yield server
    server.stop()


def test_a_forwarded_completion_is_the_upstreams_own_answer(front, upstream):
    forwarded = front.client().chat.completions.create(model="remote-tiny", **GREEDY)
    direct = upstream.client().chat.completions.create(model="tiny", **GREEDY)
    assert forwarded.model == "remote-tiny" and direct.model == "tiny"
    assert forwarded.choices[0].message.content == direct.choices[0].message.content != ""
    assert forwarded.choices[0].finish_reason == direct.choices[0].finish_reason
    assert forwarded.usage == direct.usage


def test_a_forwarded_stream_is_the_upstreams_own_stream(front, upstream):
    def collect(client, model):
        chunks = list(
            client.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True}, **GREEDY)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        return chunks, text, finish, chunks[-1].usage

    forwarded, text, finish, usage = collect(front.client(), "remote-tiny")
    direct, direct_text, direct_finish, direct_usage = collect(upstream.client(), "tiny")
    assert {c.model for c in forwarded} == {"remote-tiny"}
    assert (len(forwarded), text, finish, usage) == (len(direct), direct_text, direct_finish, direct_usage)
    assert text and usage is not None


def test_the_front_server_keeps_auth_and_lists_forwarded_models(front):
    with pytest.raises(openai.AuthenticationError):
        front.client("sk-wrong").chat.completions.create(model="remote-tiny", **GREEDY)
    listed = {m.id for m in front.client("sk-beta").models.list()}
    assert {"remote-tiny", "remote-missing", "dead", "tiny"} <= listed
    assert front.client().models.retrieve("remote-tiny").id == "remote-tiny"
    with pytest.raises(openai.PermissionDeniedError, match="forwarded"):
        front.client().models.delete("remote-tiny")


def test_an_unreachable_upstream_is_a_clean_502_naming_it(front):
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            front.client().chat.completions.create(model="dead", stream=stream, **GREEDY)
        assert caught.value.status_code == 502
        assert "unreachable" in caught.value.message and "'dead'" in caught.value.message
        assert "/chat/completions" in caught.value.message  # the upstream's address


def test_upstream_errors_map_to_openai_errors(front):
    # The request's own fault passes through with its status; the upstream's words, our prefix.
    with pytest.raises(openai.BadRequestError) as caught:
        front.client().chat.completions.create(model="remote-tiny", messages=MESSAGES, max_tokens=100_000)
    assert "refused the request" in caught.value.message and "maximum context length" in caught.value.message
    # A misconfigured upstream (it has no such model) is the server's fault: 502.
    with pytest.raises(openai.InternalServerError) as caught:
        front.client().chat.completions.create(model="remote-missing", **GREEDY)
    assert caught.value.status_code == 502 and "HTTP 404" in caught.value.message


def test_forwarded_prompts_are_logged_for_drift(front):
    from tunery.monitor.prompt_log import logged_models, read_log

    front.client().chat.completions.create(model="remote-tiny", **GREEDY)
    logs = logged_models(front.env["TUNERY_HOME"])
    assert "remote-tiny" in logs
    assert any(entry.messages == MESSAGES for entry in read_log(logs["remote-tiny"]))


def test_upstream_settings_are_checked(monkeypatch, tmp_path):
    name, upstream = parse_upstream_flag("bot=http://gpu-box:8000/v1,org/model")
    assert (name, upstream.url, upstream.model) == ("bot", "http://gpu-box:8000/v1", "org/model")
    assert upstream.endpoint == "http://gpu-box:8000/v1/chat/completions"
    with pytest.raises(TuneryError, match="NAME=URL"):
        parse_upstream_flag("http://gpu-box:8000/v1")
    with pytest.raises(TuneryError, match="http"):
        parse_upstream_flag("bot=gpu-box:8000")
    with pytest.raises(TuneryError, match="both a local base model"):
        load_settings(
            None, home=tmp_path, models={"tiny": "x"}, upstreams=dict([parse_upstream_flag("tiny=http://h/v1")])
        )
    config = tmp_path / "server.yaml"
    config.write_text("upstreams: {bot: {url: 'http://h/v1', api_key_env: NOT_SET_ANYWHERE}}\n")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(TuneryError, match="NOT_SET_ANYWHERE"):
        load_settings(config, home=tmp_path)


def test_a_forwarded_fine_tuned_model_stays_with_its_organisation(tmp_path):
    from tunery.serve.catalog import Catalog
    from tunery.serve.errors import APIError
    from tunery.store import open_store
    from tunery.store.records import ModelRecord

    name = "ft:tiny:org-alpha:bot:ftjob-abc"
    settings = load_settings(
        None, home=tmp_path, upstreams=dict([parse_upstream_flag(f"{name}=http://gpu:8000/v1,bot")])
    )
    store = open_store(tmp_path / "store.sqlite")
    with store.transaction() as tx:
        tx.add_model(ModelRecord(id=name, org="org-alpha", base="tiny", kind="lora", path=str(tmp_path), created_at=0))
    catalog = Catalog(settings, store)
    assert catalog.upstream(name, "org-alpha").model == "bot"
    with pytest.raises(APIError) as caught:
        catalog.upstream(name, "org-beta")  # exactly what an unknown model gets
    assert caught.value.status == 404 and caught.value.code == "model_not_found"
    assert catalog.upstream("tiny", "org-beta") is None  # not forwarded: served here
