"""/v1/chat/completions on base models, fine-tuned models and checkpoints; JSON or SSE stream.

The handler renders the prompt with the model's chat template, checks it fits the context,
and hands a `ChatJob` to the engine's generation thread. Results come back through an asyncio
queue, so the event loop is never blocked by the model. A forwarded model (settings.upstreams)
is instead answered by its upstream server, through `tunery.serve.forwarding`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from tunery.data.render import render_prompt
from tunery.errors import TuneryError
from tunery.monitor.prompt_log import log_if_enabled
from tunery.serve.app import Server, server_of
from tunery.serve.auth import current_org
from tunery.serve.engine import ChatJob, Sampling
from tunery.serve.errors import APIError
from tunery.serve.forwarding import Upstream, forward_chat_completion
from tunery.serve.types.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
)

router = APIRouter(prefix="/chat/completions", tags=["chat"])


def _prepare(server: Server, body: ChatCompletionRequest, org: str) -> tuple:
    """(served model, prompt token ids, max new tokens); 404 / 400 for unknown models and long prompts."""
    model = server.catalog.lookup(body.model, org)
    tokenizer = server.catalog.tokenizer(model.base_dir)
    try:
        prompt = render_prompt([m.for_template() for m in body.messages], tokenizer)
    except TuneryError as exc:
        raise APIError(
            400, f"the model's chat template cannot render these messages: {exc}", param="messages"
        ) from None
    room = model.context_length - len(prompt)
    asked = body.max_completion_tokens or body.max_tokens
    if room < 1 or (asked is not None and asked > room):
        raise APIError(
            400,
            f"This model's maximum context length is {model.context_length} tokens. However, you requested "
            f"{len(prompt) + (asked or 1)} tokens ({len(prompt)} in the messages, {asked or 1} in the completion). "
            "Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    log_if_enabled(body.model, [m.for_template() for m in body.messages])  # opt-in: TUNERY_LOG_PROMPTS=1
    return model, prompt, asked or min(server.settings.default_max_tokens, room)


def _forwarded(server: Server, body: ChatCompletionRequest, org: str) -> Upstream | None:
    """The upstream that answers this model, if any; its prompts are logged like local ones."""
    upstream = server.catalog.upstream(body.model, org)
    if upstream is not None:
        log_if_enabled(body.model, [m.for_template() for m in body.messages])  # opt-in: TUNERY_LOG_PROMPTS=1
    return upstream


def _error_of(exc: Exception) -> APIError:
    return exc if isinstance(exc, APIError) else APIError(500, f"generation failed: {exc}", type="server_error")


@router.post("", response_model=ChatCompletion)
async def create_chat_completion(body: ChatCompletionRequest, request: Request, org: str = Depends(current_org)):
    server = server_of(request)
    upstream = await run_in_threadpool(_forwarded, server, body, org)
    if upstream is not None:
        return await forward_chat_completion(body.model, upstream, body.model_dump(exclude_unset=True))
    model, prompt, max_tokens = await run_in_threadpool(_prepare, server, body, org)
    loop = asyncio.get_running_loop()
    results: asyncio.Queue = asyncio.Queue()

    def emit(event: tuple) -> None:
        try:
            loop.call_soon_threadsafe(results.put_nowait, event)
        except RuntimeError:  # the event loop is gone (server shutting down)
            pass

    n = body.n or 1
    job = ChatJob(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        emit=emit,
        n=n,
        stop=body.stop or [],
        sampling=Sampling(
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            seed=body.seed,
        ),
    )
    server.engine.submit(job)
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _sse(job, results, completion_id, created, body.model, n, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    texts, reasons = [""] * n, ["stop"] * n
    try:
        while True:
            event = await results.get()
            if event[0] == "delta":
                texts[event[1]] += event[2]
            elif event[0] == "finish":
                reasons[event[1]] = event[2]
            elif event[0] == "error":
                raise _error_of(event[1])
            else:
                usage = event[1]
                break
    finally:
        job.cancelled.set()  # a client that hung up stops costing compute
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        usage=Usage(**usage),
        choices=[
            Choice(index=i, message=AssistantMessage(content=texts[i]), finish_reason=reasons[i]) for i in range(n)
        ],
    )


def _data(payload) -> str:
    body = payload.model_dump_json(exclude_none=False) if hasattr(payload, "model_dump_json") else json.dumps(payload)
    return f"data: {body}\n\n"


async def _sse(
    job: ChatJob, results: asyncio.Queue, completion_id: str, created: int, model: str, n: int, include_usage: bool
) -> AsyncIterator[str]:
    """OpenAI's stream: a role chunk per choice, content deltas, finish chunks, [usage], `data: [DONE]`."""

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        return _data(ChatCompletionChunk(id=completion_id, created=created, model=model, choices=choices, usage=usage))

    try:
        for i in range(n):
            yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
        while True:
            event = await results.get()
            if event[0] == "delta":
                yield chunk([ChunkChoice(index=event[1], delta=Delta(content=event[2]))])
            elif event[0] == "finish":
                yield chunk([ChunkChoice(index=event[1], delta=Delta(), finish_reason=event[2])])
            elif event[0] == "error":
                yield _data(_error_of(event[1]).body())
                break
            else:
                if include_usage:
                    yield chunk([], Usage(**event[1]))
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()
