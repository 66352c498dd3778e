"""Chat completions, as openai-python's `types/chat/` (request params, completion, chunk)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# OpenAI's integer fields are 64-bit; a seed outside that range is a 400, not an overflow in torch.
INT64 = {"ge": -(2**63), "le": 2**63 - 1}
MAX_TOKENS = 2**31 - 1  # whatever is asked, the model's context bounds it further (context_length_exceeded)


class _Request(BaseModel):
    # NaN and infinity parse from JSON (Python reads `NaN`, `Infinity`, `1e999`) but are no setting.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    # A returned assistant message carries `refusal: null`; apps append it to the history as it is.
    refusal: str | None = None

    def for_template(self) -> dict:
        """The message as chat templates expect it: string content (a refusal is what the assistant
        said), `developer` read as `system`."""
        content = (
            self.content
            if isinstance(self.content, str) or self.content is None
            else "".join(part.text for part in self.content)
        )
        content = content or self.refusal
        message = {"role": "system" if self.role == "developer" else self.role, "content": content or ""}
        for key in ("name", "tool_calls", "tool_call_id"):
            if getattr(self, key) is not None:
                message[key] = getattr(self, key)
        return message


class StreamOptions(_Request):
    include_usage: bool = False
    include_obfuscation: bool = Field(
        False, description="pad each chunk with a random `obfuscation` string (OpenAI's default is on; tunery's is off)"
    )


class FunctionDefinition(_Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Request):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(_Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(_Request):
    type: Literal["text"]


class ResponseFormatJSONObject(_Request):
    type: Literal["json_object"]


class ResponseFormatJSONSchema(_Request):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema, Field(discriminator="type")
]

# Fields of openai's `CompletionCreateParams` that tunery declares but refuses when set, and why. A
# request that sets one gets a 400 naming it (see `refused_field`); nothing is accepted and dropped.
REFUSED = {
    "audio": "audio output is not supported; tunery serves text models",
    "function_call": "the deprecated functions API is not supported; send tools and tool_choice",
    "functions": "the deprecated functions API is not supported; send tools and tool_choice",
    "metadata": "metadata is kept with stored completions, and tunery does not store completions",
    "moderation": "moderation is not supported",
    "prediction": "predicted outputs are not supported",
    "prompt_cache_key": "tunery keeps no prompt cache across requests",
    "prompt_cache_options": "tunery keeps no prompt cache across requests",
    "prompt_cache_retention": "tunery keeps no prompt cache across requests",
    "reasoning_effort": "served models are not reasoning models",
    "verbosity": "served models are not reasoning models; say how long to answer in the messages",
    "web_search_options": "web search is not supported",
}
# Values of otherwise refused fields that ask for nothing tunery does not do.
HARMLESS = {"store": (False,), "modalities": (["text"],), "service_tier": ("auto", "default")}


class ChatCompletionRequest(_Request):
    """openai-python's `chat/completion_create_params.py`, field by field (docs/serving.md lists them)."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="deprecated alias of max_completion_tokens")
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, **INT64)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = Field(None, description="recorded in the prompt log (TUNERY_LOG_PROMPTS=1)")
    safety_identifier: str | None = Field(None, description="recorded in the prompt log (TUNERY_LOG_PROMPTS=1)")
    store: bool | None = None
    modalities: list[str] | None = None
    service_tier: str | None = None
    # Declared so that a request setting them is refused by name (REFUSED), not as an unknown field.
    audio: Any = None
    function_call: Any = None
    functions: Any = None
    metadata: Any = None
    moderation: Any = None
    prediction: Any = None
    prompt_cache_key: Any = None
    prompt_cache_options: Any = None
    prompt_cache_retention: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        stops = [value] if isinstance(value, str) else value
        if stops is not None and len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value):
        for token, bias in (value or {}).items():
            if not (token.isascii() and token.isdigit()):  # "²" is a digit to str.isdigit, not to int()
                raise ValueError(f"keys are token ids, and {token!r} is not one")
            if not -100 <= bias <= 100:
                raise ValueError(f"the bias of token {token} is {bias}; biases lie between -100 and 100")
        return value

    def refused_field(self) -> tuple[str, str] | None:
        """(field, why) for the first field set to something tunery does not do, or None."""
        for name, why in REFUSED.items():
            if getattr(self, name) is not None:
                return name, why
        for name, allowed in HARMLESS.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                return name, f"only {' or '.join(map(repr, allowed))} is supported"
        if self.top_logprobs and not self.logprobs:
            return "top_logprobs", "top_logprobs needs logprobs: true"
        return None


class TopLogprob(BaseModel):
    token: str
    bytes: list[int] | None
    logprob: float


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="a JSON object, as a string")


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


FinishReason = Literal["stop", "length", "tool_calls"]


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCall | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    obfuscation: str | None = None
