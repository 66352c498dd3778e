"""Constrained decoding: a JSON schema becomes a grammar that masks the logits token by token.

`response_format` (`json_object`, `json_schema`) and forced tool calls are enforced this way, so the
output always parses and validates, whatever a small model would have said unconstrained. The grammar
engine is llguidance (the Rust library behind guidance, also used by vLLM, SGLang and llama.cpp): it
is one wheel with no Python dependencies (xgrammar pulls in triton, outlines pulls in a dozen
packages), builds its token index from the model's own `tokenizer.json`, compiles a schema in
milliseconds and computes a mask in about a millisecond on a CPU (bench/constrained_decoding.py), and
names the schema keywords it does not implement, which become a 400.

Whitespace between JSON tokens is bounded: a small model asked for JSON can otherwise emit newlines
until it runs out of tokens, and the output would never close.
"""

from __future__ import annotations

import json
from functools import cache

from tunery.data.render import ChatTokenizer

# Up to 8 spaces/newlines/tabs between JSON tokens: enough for pretty-printed output, never unbounded.
JSON_OPTIONS = {"whitespace_pattern": r"[\x20\x0A\x0D\x09]{0,8}"}
# A tool call is one line, as training writes it (json.dumps: `{"name": "f", "arguments": {"x": 1}}`).
CALL_OPTIONS = {"whitespace_pattern": r"\x20?"}
ANY_OBJECT = {"type": "object"}


class SchemaError(ValueError):
    """A schema the grammar engine cannot enforce; the message names what is unsupported."""


@cache
def ll_tokenizer(tokenizer: ChatTokenizer):
    """llguidance's view of a model's tokenizer (about 1.5 s to build for a 49k vocabulary; cached)."""
    import llguidance

    return llguidance.LLTokenizer(tokenizer.tokenizer.to_str(), eos_token=sorted(tokenizer.stop_ids))


def json_grammar(schema: dict | None) -> str:
    """The llguidance grammar for JSON matching `schema` (None: any JSON object).

    Raises:
        SchemaError: the schema is not an object, or uses keywords llguidance does not implement
            (the message names them, e.g. `Unimplemented keys: ["uniqueItems"]`).
    """
    import llguidance

    if schema is not None and not isinstance(schema, dict):
        raise SchemaError("a JSON schema is a JSON object")
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema or ANY_OBJECT, overrides=JSON_OPTIONS)
    except ValueError as exc:
        raise SchemaError(str(exc)) from None
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        raise SchemaError("; ".join(messages))
    return grammar


def tool_call_grammar(functions: list[dict], parallel: bool) -> str:
    """The grammar of a completion that is only tool calls (Hermes format, `tunery.data.tool_format`):
    one call, or with `parallel` one or more, each naming one of `functions` (OpenAI's function
    definitions) with arguments that match its parameters schema.

    Raises:
        SchemaError: a function's parameters use keywords llguidance does not implement.
    """
    import llguidance

    from tunery.data.tool_format import CLOSE, OPEN

    calls = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": f["name"]}, "arguments": f.get("parameters") or {"type": "object"}},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for f in functions
        ],
        "x-guidance": CALL_OPTIONS,
    }
    repeat = ' ("\\n" call)*' if parallel else ""
    lark = f"start: call{repeat}\ncall: {json.dumps(OPEN + chr(10))} body {json.dumps(chr(10) + CLOSE)}\n"
    lark += f"body: %json {json.dumps(calls)}\n"
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        raise SchemaError("; ".join(messages))
    return grammar


class Constraint:
    """One completion's grammar state: which tokens may come next, advanced by each chosen token."""

    def __init__(self, grammar: str, tokenizer: ChatTokenizer):
        import llguidance

        self._tokenizer = ll_tokenizer(tokenizer)
        self._matcher = llguidance.LLMatcher(self._tokenizer, grammar)
        if self._matcher.is_error():
            raise SchemaError(self._matcher.get_error())

    def allowed(self, width: int):
        """A bool tensor of `width` (the logits' width): True where a token may come next.

        When the grammar is complete only the stop tokens are allowed, so the completion ends there.
        """
        import numpy as np
        import torch

        if self._matcher.is_error():  # cannot happen for a consumed allowed token; end cleanly if it does
            allowed = np.zeros(width, dtype=bool)
            allowed[self._tokenizer.eos_tokens] = True
            return torch.from_numpy(allowed)
        bits = np.unpackbits(np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = np.zeros(width, dtype=bool)
        n = min(width, self._tokenizer.vocab_size)
        allowed[:n] = bits[:n].astype(bool)
        return torch.from_numpy(allowed)

    def advance(self, token: int) -> None:
        self._matcher.consume_token(token)


def grammar_processor(grammar: str, tokenizer: ChatTokenizer, rows: int, prompt_width: int):
    """A transformers logits processor holding every row of a `generate` batch to `grammar`.

    Each row has its own `Constraint`, advanced by the token the row chose last step (the last
    column of `input_ids` once it is longer than the prompts). A row that has produced a stop token
    is finished; its padding is not fed to the grammar.
    """
    from transformers import LogitsProcessor

    constraints = [Constraint(grammar, tokenizer) for _ in range(rows)]
    finished = [False] * rows

    class GrammarMask(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for i, constraint in enumerate(constraints):
                if input_ids.shape[1] > prompt_width and not finished[i]:
                    token = int(input_ids[i, -1])
                    if token in tokenizer.stop_ids:
                        finished[i] = True
                    else:
                        constraint.advance(token)
                if not finished[i]:
                    allowed = constraint.allowed(scores.shape[1]).to(scores.device)
                    scores[i] = scores[i].masked_fill(~allowed, float("-inf"))
            return scores

    return GrammarMask()
