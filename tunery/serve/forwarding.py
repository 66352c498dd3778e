"""Forwarding chat completions for some models to another OpenAI-compatible server (e.g. vLLM).

Heavy serving can run on a GPU inference server while tunery keeps the API keys, jobs, registry
and monitoring. A forwarded model is configured by name (`upstreams:` in the server YAML, or
`tunery serve --upstream NAME=URL[,MODEL]`); its requests pass tunery's auth and request
checks, are logged for drift like any other (when prompt logging is on), and are sent to the
upstream with the model renamed to the upstream's name. The answer comes back as the upstream
gave it, JSON or a server-sent-event stream, with the model renamed back. An upstream that cannot
be reached, times out or fails answers with a clean OpenAI error (502/504) naming the upstream;
its 400/413/422/429 pass through, since they are about the request, not the upstream.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunery.errors import TuneryError

CONNECT_TIMEOUT_S = 10.0
PASSED_THROUGH = {400, 413, 422, 429}  # the client's fault (or its rate): its status, the upstream's words


class Upstream(BaseModel):
    """Where one forwarded model is served."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="base URL of the OpenAI-compatible API, e.g. http://gpu-box:8000/v1")
    model: str | None = Field(None, description="the model's name on the upstream; default: the name served here")
    api_key_env: str | None = Field(
        None, description="environment variable that holds the upstream's API key (keys stay out of config files)"
    )
    timeout_s: float = Field(600.0, gt=0, description="longest wait for the answer, or for the next streamed chunk")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as http://gpu-box:8000/v1")
        return value

    @model_validator(mode="after")
    def _key_is_set(self):
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ValueError(f"api_key_env names {self.api_key_env}, which is not set in the environment")
        return self

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}


def parse_upstream_flag(text: str) -> tuple[str, Upstream]:
    """`NAME=URL` or `NAME=URL,MODEL` (from `tunery serve --upstream`) → (name, Upstream).

    Raises:
        TuneryError: not in that form, or not an http(s) URL.
    """
    name, sep, rest = text.partition("=")
    url, _, model = rest.partition(",")
    if not sep or not name.strip() or not url.strip():
        raise TuneryError(
            f"--upstream {text!r} is not NAME=URL[,MODEL]", hint="--upstream support-bot=http://gpu-box:8000/v1"
        )
    try:
        return name.strip(), Upstream(url=url.strip(), model=model.strip() or None)
    except ValueError as exc:
        raise TuneryError(f"--upstream {text!r}: {exc}") from None


@cache
def _tls_context():
    # Building the default context reads the CA bundle (~0.1 s); one for all requests.
    import httpx

    return httpx.create_ssl_context()


async def forward_chat_completion(name: str, upstream: Upstream, request: dict):
    """Send `request` (an OpenAI chat completion request for model `name`) to the upstream.

    Returns a FastAPI response: JSON, or a streaming response when `request["stream"]` is set.

    Raises:
        APIError: 502 (unreachable, or a failing upstream), 504 (timed out), or the upstream's own
            400/413/422/429, each message naming the upstream.
    """
    import httpx
    from fastapi.responses import JSONResponse, StreamingResponse

    payload = {**request, "model": upstream.model or name}
    # A client per request: nothing to close at shutdown, and a connect is cheap next to generation.
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(upstream.timeout_s, connect=CONNECT_TIMEOUT_S),
        headers=upstream.headers(),
        verify=_tls_context(),
    )
    try:
        response = await client.send(client.build_request("POST", upstream.endpoint, json=payload), stream=True)
        if response.status_code != 200:
            body = await response.aread()
            await response.aclose()
            raise _status_error(name, upstream, response.status_code, body)
        if not payload.get("stream"):
            body = await response.aread()
            await response.aclose()
            await client.aclose()
            return JSONResponse(_renamed(_json_or_error(name, upstream, body), name))
    except httpx.HTTPError as exc:
        await client.aclose()
        raise _transport_error(name, upstream, exc) from None
    except BaseException:
        await client.aclose()
        raise
    return StreamingResponse(
        _relay(name, upstream, client, response),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _relay(name: str, upstream: Upstream, client, response) -> AsyncIterator[str]:
    """The upstream's events, the model renamed in each; a failure mid-stream ends it with an
    OpenAI error event (the status line was already sent)."""
    import httpx

    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, event names: the client needs data only
            data = line[5:].strip()
            if data == "[DONE]":
                yield "data: [DONE]\n\n"
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                yield _event(_bad_answer(name, upstream, data).body())
                return
            yield _event(_renamed(event, name))
    except httpx.HTTPError as exc:
        yield _event(_transport_error(name, upstream, exc).body())
    finally:
        await response.aclose()
        await client.aclose()


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _renamed(answer: dict, name: str) -> dict:
    return {**answer, "model": name} if "model" in answer else answer


def _json_or_error(name: str, upstream: Upstream, body: bytes) -> dict:
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise _bad_answer(name, upstream, body.decode(errors="replace"))
    return answer


def _where(name: str, upstream: Upstream) -> str:
    return f"the upstream {upstream.endpoint} serving model {name!r}"


def _transport_error(name: str, upstream: Upstream, exc: Exception):
    import httpx

    from tunery.serve.errors import APIError

    if isinstance(exc, httpx.TimeoutException):
        return APIError(
            504, f"{_where(name, upstream)} did not answer within {upstream.timeout_s:g}s", code="upstream_timeout"
        )
    return APIError(
        502, f"{_where(name, upstream)} is unreachable: {type(exc).__name__}: {exc}", code="upstream_unreachable"
    )


def _bad_answer(name: str, upstream: Upstream, text: str):
    from tunery.serve.errors import APIError

    return APIError(
        502, f"{_where(name, upstream)} sent an answer that is not JSON: {text[:200]!r}", code="upstream_error"
    )


def _status_error(name: str, upstream: Upstream, status: int, body: bytes):
    """The upstream's error as ours: its message (OpenAI's or vLLM's older shape), our status."""
    from tunery.serve.errors import APIError

    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        parsed = None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or body.decode(errors="replace")[:300] or "(empty body)"
    if status in PASSED_THROUGH:
        return APIError(
            status,
            f"{_where(name, upstream)} refused the request: {message}",
            param=error.get("param"),
            code=None if error.get("code") is None else str(error["code"]),
        )
    return APIError(502, f"{_where(name, upstream)} failed with HTTP {status}: {message}", code="upstream_error")
