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

from tunery.constraints import SchemaError, json_grammar
from tunery.data.render import render_prompt
from tunery.data.tool_format import ToolCallStream
from tunery.errors import TuneryError
from tunery.monitor.prompt_log import log_if_enabled
from tunery.serve.auth import current_org
from tunery.serve.deps import Server, server_of
from tunery.serve.engine import ChatJob, Controls, Sampling
from tunery.serve.errors import APIError
from tunery.serve.forwarding import Upstream, forward_chat_completion
from tunery.serve.tool_calls import ToolPlan, answer_of, plan_tools, tool_calls_of
from tunery.serve.types.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    StreamOptions,
    ToolCallDelta,
    Usage,
)

router = APIRouter(prefix="/chat/completions", tags=["chat"])


def refuse_unsupported(body: ChatCompletionRequest) -> None:
    """A 400 naming the first field set to something tunery does not do (nothing is silently dropped)."""
    refused = body.refused_field()
    if refused is not None:
        name, why = refused
        raise APIError(400, f"{name} is not supported: {why}", param=name, code="unsupported_parameter")


def controls_of(body: ChatCompletionRequest, vocabulary: int, tool_grammar: str | None = None) -> Controls:
    """The request's logprobs, penalties, logit bias and response format as engine `Controls`.

    A tool call that must be made (`tool_grammar`) is the completion's grammar; response_format then
    applies to none of it, as OpenAI's applies to content only.

    Raises:
        APIError: a logit_bias token outside the vocabulary, or a schema the grammar engine cannot
            enforce (400, naming it).
    """
    bias = tuple((int(token), float(value)) for token, value in (body.logit_bias or {}).items())
    for token, _ in bias:
        if token >= vocabulary:
            raise APIError(
                400,
                f"logit_bias: token {token} is not in this model's vocabulary (ids 0..{vocabulary - 1})",
                param="logit_bias",
            )
    grammar = tool_grammar
    fmt = body.response_format
    if grammar is None and fmt is not None and fmt.type != "text":
        schema = fmt.json_schema.schema_ if fmt.type == "json_schema" else None
        try:
            grammar = json_grammar(schema)
        except SchemaError as exc:
            raise APIError(
                400, f"response_format: this JSON schema cannot be enforced: {exc}", param="response_format"
            ) from None
    return Controls(
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        logit_bias=bias,
        grammar=grammar,
    )


def _prepare(server: Server, body: ChatCompletionRequest, org: str) -> tuple:
    """(served model, prompt token ids, max new tokens, controls, tool plan); 404 / 400 for unknown
    models, long prompts and unsupported fields."""
    refuse_unsupported(body)
    model = server.catalog.lookup(body.model, org)
    tokenizer = server.catalog.tokenizer(model.base_dir)
    tools = plan_tools(body, tokenizer.chat_template)
    controls = controls_of(body, len(tokenizer), tools.grammar)
    try:
        prompt = render_prompt([m.for_template() for m in body.messages], tokenizer, tools=tools.tools)
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
    log_if_enabled(body.model, [m.for_template() for m in body.messages], user=_user(body))  # TUNERY_LOG_PROMPTS=1
    return model, prompt, asked or min(server.settings.default_max_tokens, room), controls, tools


def _user(body: ChatCompletionRequest) -> dict | None:
    ids = {"user": body.user, "safety_identifier": body.safety_identifier}
    return {k: v for k, v in ids.items() if v is not None} or None


def _forwarded(server: Server, body: ChatCompletionRequest, org: str) -> Upstream | None:
    """The upstream that answers this model, if any; its prompts are logged like local ones."""
    upstream = server.catalog.upstream(body.model, org)
    if upstream is not None:
        log_if_enabled(
            body.model, [m.for_template() for m in body.messages], user=_user(body)
        )  # opt-in: TUNERY_LOG_PROMPTS=1
    return upstream


def _error_of(exc: Exception) -> APIError:
    return exc if isinstance(exc, APIError) else APIError(500, f"generation failed: {exc}", type="server_error")


@router.post("", response_model=ChatCompletion)
async def create_chat_completion(body: ChatCompletionRequest, request: Request, org: str = Depends(current_org)):
    server = server_of(request)
    upstream = await run_in_threadpool(_forwarded, server, body, org)
    if upstream is not None:
        return await forward_chat_completion(body.model, upstream, body.model_dump(exclude_unset=True, by_alias=True))
    model, prompt, max_tokens, controls, tools = await run_in_threadpool(_prepare, server, body, org)
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
        controls=controls,
    )
    server.engine.submit(job)
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    if body.stream:
        options = body.stream_options or StreamOptions()
        return StreamingResponse(
            _sse(job, results, completion_id, created, body.model, n, options, tools),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    texts, reasons = [""] * n, ["stop"] * n
    logprobs: list[list[dict]] = [[] for _ in range(n)]
    try:
        while True:
            event = await results.get()
            if event[0] == "delta":
                texts[event[1]] += event[2]
                logprobs[event[1]] += event[3] or []
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
        choices=[_choice(i, texts[i], reasons[i], logprobs[i] if controls.logprobs else None, tools) for i in range(n)],
    )


def _choice(index: int, text: str, reason: str, logprobs: list[dict] | None, tools: ToolPlan) -> Choice:
    content, calls = answer_of(text, tools)
    return Choice(
        index=index,
        message=AssistantMessage(content=content, tool_calls=calls or None),
        finish_reason="tool_calls" if calls and reason == "stop" else reason,
        logprobs=ChoiceLogprobs(content=logprobs) if logprobs is not None else None,
    )


def _data(payload) -> str:
    body = payload.model_dump_json(exclude_none=False) if hasattr(payload, "model_dump_json") else json.dumps(payload)
    return f"data: {body}\n\n"


async def _sse(
    job: ChatJob,
    results: asyncio.Queue,
    completion_id: str,
    created: int,
    model: str,
    n: int,
    options: StreamOptions,
    tools: ToolPlan,
) -> AsyncIterator[str]:
    """OpenAI's stream: a role chunk per choice, content deltas, finish chunks, [usage], `data: [DONE]`.

    With tools, text that may be a tool call is held back; the calls go out whole, one chunk per
    choice, before its finish chunk (`finish_reason: "tool_calls"`).
    """
    calls_of = [ToolCallStream() if tools.parse else None for _ in range(n)]

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        # Random padding of random length, so that chunk sizes do not reveal the tokens (OpenAI's reason).
        padding = secrets.token_urlsafe(secrets.randbelow(24) + 1) if options.include_obfuscation else None
        return _data(
            ChatCompletionChunk(
                id=completion_id, created=created, model=model, choices=choices, usage=usage, obfuscation=padding
            )
        )

    try:
        for i in range(n):
            yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
        while True:
            event = await results.get()
            if event[0] == "delta":
                index, text = event[1], event[2]
                if calls_of[index] is not None:
                    text = calls_of[index].push(text)
                logprobs = ChoiceLogprobs(content=event[3]) if event[3] else None
                if text or logprobs:
                    yield chunk([ChunkChoice(index=index, delta=Delta(content=text), logprobs=logprobs)])
            elif event[0] == "finish":
                index, reason = event[1], event[2]
                if calls_of[index] is not None:
                    rest, found = calls_of[index].finish()
                    if rest:
                        yield chunk([ChunkChoice(index=index, delta=Delta(content=rest))])
                    calls = tool_calls_of(found, tools)
                    if calls:
                        deltas = [ToolCallDelta(index=k, **call.model_dump()) for k, call in enumerate(calls)]
                        yield chunk([ChunkChoice(index=index, delta=Delta(tool_calls=deltas))])
                        reason = "tool_calls" if reason == "stop" else reason
                yield chunk([ChunkChoice(index=index, delta=Delta(), finish_reason=reason)])
            elif event[0] == "error":
                yield _data(_error_of(event[1]).body())
                break
            else:
                if options.include_usage:
                    yield chunk([], Usage(**event[1]))
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()
