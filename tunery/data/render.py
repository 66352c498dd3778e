"""Chat template → (input_ids, loss_mask): exactly which tokens are trained.

The mask is derived from the template's own rendering of each prefix, never from hard-coded
markers, so any template that renders conversations prefix-stably works:

    text(messages[:i], add_generation_prompt=True)  ends where assistant turn i begins
    text(messages[:i+1])                             ends where that turn (and its EOS) ends

Every assistant turn with weight 1 is trained, including its end-of-turn token, so tuned models
learn to stop. System, user and tool turns, and the template's role headers, are never trained.

A special token written inside message text (`<|im_end|>` in a user's message) is, by default,
the special token itself, so the text can forge a turn. A `ChatTokenizer` made with
`escape_special_tokens=True` tokenises message text as plain text instead: `ChatTokenizer.escape`
swaps each such occurrence for a private-use character before the template renders, and `encode`
gives that character the token's plain-text ids (the tokenizer's own `encode_special_tokens`), so
a forged marker is never its special id and the loss mask still lines up with the rendered text.

Torch-free on purpose: `tunery validate --model` renders with `tokenizers` and jinja2 alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path

from tunery.data.formats import ChatExample
from tunery.data.tool_format import inline_tools, template_renders_tools
from tunery.errors import TuneryError
from tunery.models import read_chat_template

# Used when a model ships no chat template (base models): plain ChatML.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateError(TuneryError):
    """The chat template cannot render this conversation in a way we can mask."""


@dataclass(frozen=True)
class Rendered:
    """One example as the trainer sees it.

    `loss_mask[i] == 1` means token i is a training target (predicted from tokens before it).
    """

    input_ids: list[int]
    loss_mask: list[int]
    truncated: int = 0  # tokens cut off the end by max_seq_len
    eos_trained: bool = True  # every trained turn ends in a stop token

    @property
    def trained_tokens(self) -> int:
        return sum(self.loss_mask)


class ChatTokenizer:
    """A `tokenizers.Tokenizer` plus the model's chat template and its special tokens.

    `escape_special_tokens`: message text is tokenised as plain text, so a special token written in
    it never becomes its special id (the run config's `special_tokens: escape`, and serving).
    """

    def __init__(
        self,
        tokenizer,
        chat_template: str,
        special_tokens: dict[str, str],
        stop_ids: set[int],
        *,
        escape_special_tokens: bool = False,
    ):
        self.tokenizer = tokenizer
        self.escape_special_tokens = escape_special_tokens
        self.chat_template = chat_template
        self.special_tokens = special_tokens
        self.stop_ids = frozenset(stop_ids)
        eos = special_tokens.get("eos_token")
        self.eos_id = tokenizer.token_to_id(eos) if eos else None
        pad = special_tokens.get("pad_token") or eos
        self.pad_id = tokenizer.token_to_id(pad) if pad else 0

    @classmethod
    def from_dir(cls, path: str | Path, *, escape_special_tokens: bool = False) -> ChatTokenizer:
        """Load `tokenizer.json`, `tokenizer_config.json` and the chat template from a model directory."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not (path / "tokenizer.json").is_file():
            raise TuneryError(f"{path} has no tokenizer.json (a fast tokenizer is required)")
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        config = _read_json(path / "tokenizer_config.json")
        # bos_token, eos_token, ...: what transformers hands the template. Not the add_bos_token flags.
        special = {
            k: _token_text(v) for k, v in config.items() if k.endswith("_token") and isinstance(v, str | dict) and v
        }
        stop_ids = set()
        for source in (_read_json(path / "generation_config.json"), _read_json(path / "config.json")):
            eos = source.get("eos_token_id")
            stop_ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if special.get("eos_token") and tokenizer.token_to_id(special["eos_token"]) is not None:
            stop_ids.add(tokenizer.token_to_id(special["eos_token"]))
        template = read_chat_template(path) or CHATML_TEMPLATE
        return cls(tokenizer, template, special, stop_ids, escape_special_tokens=escape_special_tokens)

    @cached_property
    def special_texts(self) -> list[str]:
        """The text of every special token (added tokens marked special, and the template's
        bos/eos/... tokens): what a message must not smuggle in as a turn marker."""
        added = self.tokenizer.get_added_tokens_decoder().values()
        texts = [t.content for t in added if t.special] + list(self.special_tokens.values())
        return sorted({t for t in texts if t}, key=len, reverse=True)  # longest first: <|im_end|> before <|im

    @cached_property
    def _special_pattern(self) -> re.Pattern | None:
        return re.compile("|".join(map(re.escape, self.special_texts))) if self.special_texts else None

    def special_token_in(self, text: str) -> str | None:
        """The first special token written in `text`, if any."""
        match = self._special_pattern.search(text) if self._special_pattern else None
        return match.group() if match else None

    @cached_property
    def _plain(self):
        """A copy of the tokenizer that reads special tokens' text as ordinary characters."""
        from tokenizers import Tokenizer

        plain = Tokenizer.from_str(self.tokenizer.to_str())
        plain.encode_special_tokens = True
        return plain

    @cached_property
    def renders_tools(self) -> bool:
        return template_renders_tools(self.chat_template)

    @cached_property
    def _template(self):
        # The same environment transformers uses, so templates render identically.
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TemplateError(f"chat template refused the conversation: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        return env.from_string(self.chat_template)

    def apply_template(self, messages: list[dict], *, tools=None, add_generation_prompt: bool = False) -> str:
        """The template's text; tools and tool calls are written inline when the template ignores them
        (`tunery.data.tool_format`), so a tool-use conversation never renders as empty turns."""
        if not self.renders_tools and (tools or any(m.get("tool_calls") for m in messages)):
            messages, tools = inline_tools(messages, tools), None
        return self._template.render(
            messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, **self.special_tokens
        )

    def escape(self, messages: list[dict], tools: list | None = None) -> tuple[list[dict], list | None, dict[str, str]]:
        """The messages and tools with every special token in their text (content, tool calls and
        their arguments, tool definitions) swapped for a stand-in character, and the stand-ins →
        the tokens' text, for `encode`. Unchanged unless `escape_special_tokens`.

        A stand-in is a private-use character (plane 15) that the conversation does not hold itself,
        one per distinct token, so it survives the template and marks exactly the escaped text.
        """
        if not self.escape_special_tokens or self._special_pattern is None:
            return messages, tools, {}
        texts = list(_strings([messages, tools]))
        found = sorted({token for text in texts for token in self._special_pattern.findall(text)})
        if not found:
            return messages, tools, {}
        used = set("".join(texts))
        free = (chr(c) for c in range(0xF0000, 0xFFFFE) if chr(c) not in used)
        stand_in = {token: next(free) for token in found}

        def swap(value, key: str | None = None):
            if isinstance(value, str):  # a role is a name the template reads, never text to escape
                return value if key == "role" else self._special_pattern.sub(lambda m: stand_in[m.group()], value)
            if isinstance(value, dict):
                return {swap(k): swap(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [swap(v) for v in value]
            return value

        return swap(messages), swap(tools), {char: token for token, char in stand_in.items()}

    def encode(self, text: str, escaped: dict[str, str] | None = None) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of `text`; `escaped` (from `escape`) maps stand-ins to the
        text they encode as plain characters, each of their tokens spanning the stand-in."""
        # Special tokens come from the template text itself; adding them again would double BOS.
        if not escaped:
            enc = self.tokenizer.encode(text, add_special_tokens=False)
            return enc.ids, enc.offsets
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        start = 0
        # The tokenizer splits its input at every special token anyway, so cutting the text where
        # one stood and encoding the pieces apart tokenises the rest exactly as before.
        for match in re.finditer("|".join(escaped), text):
            piece = self.tokenizer.encode(text[start : match.start()], add_special_tokens=False)
            ids += piece.ids
            offsets += [(s + start, e + start) for s, e in piece.offsets]
            plain = self._plain.encode(escaped[match.group()], add_special_tokens=False)
            ids += plain.ids
            offsets += [match.span()] * len(plain.ids)
            start = match.end()
        piece = self.tokenizer.encode(text[start:], add_special_tokens=False)
        ids += piece.ids
        offsets += [(s + start, e + start) for s, e in piece.offsets]
        return ids, offsets

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)


def _strings(value) -> Iterator[str]:
    """Every string inside nested lists and dicts, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _token_text(value) -> str:
    return value["content"] if isinstance(value, dict) else str(value)


def trained_spans(example: ChatExample, tok: ChatTokenizer) -> tuple[str, list[tuple[int, int]]]:
    """Render the conversation and return it with the character spans that are trained.

    Raises:
        TemplateError: the template renders a prefix differently from the whole conversation,
            so the assistant turns cannot be located.
    """
    messages = [_for_template(m) for m in example.messages]
    full = tok.apply_template(messages, tools=example.tools)
    spans = []
    for i, message in enumerate(example.messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        start_text = tok.apply_template(messages[:i], tools=example.tools, add_generation_prompt=True)
        end_text = tok.apply_template(messages[: i + 1], tools=example.tools)
        if not (full.startswith(start_text) and full.startswith(end_text) and len(end_text) >= len(start_text)):
            raise TemplateError(
                f"line {example.line}: the chat template renders assistant turn {i + 1} differently "
                "inside the whole conversation than on its own, so its tokens cannot be masked",
                hint="use a template that renders conversations prefix by prefix (ChatML does)",
            )
        # Train through the end-of-turn token, but not the whitespace the template puts between turns.
        end = len(end_text.rstrip()) if end_text.rstrip() else len(end_text)
        spans.append((len(start_text), max(end, len(start_text))))
    return full, spans


def _for_template(message: dict) -> dict:
    """The message as chat templates expect it.

    `content` is a string (tool-call messages may carry none). A tool call's `arguments` is an
    object: OpenAI's format spells it as a JSON string, but templates (Llama 3.1, Qwen 2.5, …)
    write `arguments | tojson`, which would encode the string a second time and train the model
    on a quoted, escaped call it never sees at inference.
    """
    clean = {k: v for k, v in message.items() if k != "weight"}
    if clean.get("content") is None:
        clean["content"] = ""
    if isinstance(clean.get("tool_calls"), list):
        clean["tool_calls"] = [_arguments_as_object(call) for call in clean["tool_calls"]]
    return clean


def _arguments_as_object(call):
    function = call.get("function") if isinstance(call, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if not isinstance(arguments, str):
        return call
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return call  # not JSON: the template gets it as written
    if not isinstance(parsed, dict):
        return call
    return {**call, "function": {**function, "arguments": parsed}}


def render_chat(example: ChatExample, tok: ChatTokenizer, max_seq_len: int | None = None) -> Rendered:
    """Tokenise one conversation and mark the tokens that are trained.

    A token is trained when any of its characters lies inside a trained span. A token can
    straddle the start of a reply: after a generation prompt that ends in a space
    ("Assistant: "), byte-level BPE makes " Paris" one token that begins in the prompt. It is
    the reply's first word, so it is trained; skipping it would never teach how a reply begins.
    Truncation keeps the beginning.
    """
    messages, tools, escaped = tok.escape(example.messages, example.tools)
    text, spans = trained_spans(replace(example, messages=messages, tools=tools), tok)
    ids, offsets = tok.encode(text, escaped)
    mask = [0] * len(ids)
    eos_trained = True
    for start, end in spans:
        turn = [i for i, (s, e) in enumerate(offsets) if s < end and max(e, s + 1) > start]
        for i in turn:
            mask[i] = 1
        if not turn or ids[turn[-1]] not in tok.stop_ids:
            eos_trained = False
    truncated = 0
    if max_seq_len is not None and len(ids) > max_seq_len:
        truncated = len(ids) - max_seq_len
        ids, mask = ids[:max_seq_len], mask[:max_seq_len]
    # The first token has nothing before it to predict it from.
    if mask:
        mask[0] = 0
    return Rendered(input_ids=ids, loss_mask=mask, truncated=truncated, eos_trained=eos_trained)


def render_prompt(messages: list[dict], tok: ChatTokenizer, tools=None) -> list[int]:
    """Token ids of a conversation followed by the assistant header, ready for generation."""
    messages, tools, escaped = tok.escape(messages, tools)
    text = tok.apply_template([_for_template(m) for m in messages], tools=tools, add_generation_prompt=True)
    return tok.encode(text, escaped)[0]


def show_tokens(rendered: Rendered, tok: ChatTokenizer) -> list[tuple[str, bool]]:
    """(token text, trained?) pairs, for the token view in the CLI and the dashboard."""
    pieces = []
    for token_id, trained in zip(rendered.input_ids, rendered.loss_mask, strict=True):
        pieces.append((tok.decode([token_id], skip_special_tokens=False), bool(trained)))
    return pieces
