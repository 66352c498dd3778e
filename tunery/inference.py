"""Generation from a base model with any number of LoRA adapters on top of it.

One base model is loaded once; adapters are attached by name and chosen per call, so evaluation
(base vs tuned) and the server (many fine-tuned models on one base) share a single copy of the
base weights. Batches are left-padded so that every row generates from its own last token.

Prompts in a batch usually share a long beginning (the system prompt, few-shot examples). That
shared prefix is run once per batch and its KV cache is copied to every row; the rows are laid
out as [prefix][padding][rest], and position ids come from the attention mask, so each row sees
exactly the positions it would alone. On a CPU, where the prompt dominates the cost, this makes
evaluation with long system prompts several times faster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunery.data.pack import MIN_SHARED_PREFIX, shared_prefix_length  # noqa: F401  (re-exported)
from tunery.data.render import ChatTokenizer, render_prompt


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str  # "stop" (a stop token or string) or "length"


def prefix_batch(rows: list[list[int]], prefix: int, pad_id: int, device: str):
    """(input_ids, attention_mask) with rows laid out as [shared prefix][padding][rest of row].

    With prefix 0 this is plain left padding. Position ids for these rows are the attention
    mask's cumulative sum minus one, which is what `generate` derives by itself.
    """
    import torch

    width = max(len(r) for r in rows)
    ids = [r[:prefix] + [pad_id] * (width - len(r)) + r[prefix:] for r in rows]
    mask = [[1] * prefix + [0] * (width - len(r)) + [1] * (len(r) - prefix) for r in rows]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


def prefill_prefix(model, prefix_ids: list[int], batch: int, device: str):
    """The KV cache of `prefix_ids`, computed once and repeated for `batch` rows (None if empty)."""
    import torch

    if not prefix_ids:
        return None
    cache = model(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True, logits_to_keep=1).cache
    cache.batch_repeat_interleave(batch)
    return cache


def generate_tokens(
    model,
    tokenizer: ChatTokenizer,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    device: str = "cpu",
    grammar: str | None = None,
) -> list[list[int]]:
    """New token ids for each prompt (one batch), up to its stop token or `max_new_tokens`.

    With `n` > 1 every prompt is answered n times (rows prompt-major: n rows of the first prompt,
    then of the second, ...), all in one batch: each prompt is run once, and its KV cache is
    repeated for its n rows. In both cases the prompts' shared prefix (a system prompt, few-shot
    turns) is run once and its KV cache repeated for every row. Greedy when temperature is 0;
    the sampling draws from torch's global generator, seeded here when `seed` is given. A row's
    ids are cut after its first stop token, which is kept. With `grammar` (`tunery.constraints`), every
    row is constrained to it, as the server constrains a `response_format`.
    """
    import torch

    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_id
    prefix = shared_prefix_length(prompts)
    input_ids, attention = prefix_batch(prompts, prefix, pad, device)
    if seed is not None:
        torch.manual_seed(seed)
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    if grammar is not None:
        from transformers import LogitsProcessorList

        from tunery.constraints import grammar_processor

        sampling["logits_processor"] = LogitsProcessorList(
            [grammar_processor(grammar, tokenizer, len(prompts) * n, input_ids.shape[1])]
        )
    with torch.inference_mode():
        if n == 1:
            cache = prefill_prefix(model, prompts[0][:prefix], len(prompts), device)
        else:
            cache = prefill_groups(model, input_ids, attention, n, prefix)
            input_ids, attention = input_ids.repeat_interleave(n, 0), attention.repeat_interleave(n, 0)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            cache=cache,
            max_new_tokens=max_new_tokens,
            eos_token_id=sorted(tokenizer.stop_ids),
            pad_token_id=pad,
            **sampling,
        )
    rows = []
    for row in out[:, width:].tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in tokenizer.stop_ids), len(row))
        rows.append(row[:end])
    return rows


def prefill_groups(model, input_ids, attention, n: int, prefix: int = 0):
    """The KV cache of every prompt but its last token, run once per prompt and repeated n times.

    `generate` then runs only each row's last prompt token before sampling, so the n samples of
    one prompt share one prompt pass. The rows' first `prefix` tokens (the layout of
    `prefix_batch`) are the same in every prompt: they are run once, for all prompts, and the
    rest of each prompt attends to their cache. With the few-shot turns every prompt of a task
    starts with, that is most of the prompt. Positions come from the attention mask, as
    `generate` derives them, so a left-padded row sees the positions it would alone.
    """
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    cache = prefill_prefix(model, input_ids[0, :prefix].tolist(), input_ids.shape[0], str(input_ids.device))
    if input_ids.shape[1] - 1 > prefix:
        cache = model(
            input_ids=input_ids[:, prefix:-1],
            attention_mask=attention[:, :-1],
            position_ids=positions[:, prefix:-1],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).cache
    cache.batch_repeat_interleave(n)
    return cache


def adapter_base(adapter_dir: Path) -> str | None:
    """The base model an adapter was trained on, as its adapter_config.json records it."""
    config = Path(adapter_dir) / "adapter_config.json"
    return json.loads(config.read_text()).get("base_model_name_or_path") if config.is_file() else None


class Generator:
    """A loaded base model, its chat tokenizer, and named adapters."""

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", dtype=None):
        from tunery.models import load_model

        self.model_dir = Path(model_dir)
        # Prompts read as the server reads them: message text is plain text, never a turn marker.
        self.tokenizer = ChatTokenizer.from_dir(self.model_dir, escape_special_tokens=True)
        self.device = device
        self.model = load_model(self.model_dir, dtype=dtype, device=device).eval()
        self.adapters: dict[str, Path] = {}

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Attach a PEFT adapter under `name` (a no-op if it is already attached)."""
        from peft import PeftModel

        if name in self.adapters:
            return
        if not self.adapters:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name).eval()
        else:
            self.model.load_adapter(str(path), adapter_name=name)
        self.adapters[name] = Path(path)

    def remove_adapter(self, name: str) -> None:
        if name in self.adapters:
            self.model.delete_adapter(name)
            del self.adapters[name]

    def generate(
        self,
        conversations: list[list[dict]],
        *,
        adapter: str | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
        batch_size: int | None = None,
        tools: list[list[dict] | None] | None = None,
        grammar: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Completion]:
        """Complete each conversation with one assistant turn. Greedy when temperature is 0.

        With `batch_size`, conversations are generated in batches of that many, grouped by prompt
        length so that little compute goes to padding; results keep the input order. `tools`, one
        entry per conversation, reach the chat template as the example's tool definitions, so a
        prompt reads as it did in training. `grammar` (`tunery.constraints.json_grammar`) constrains
        every answer, as a served `response_format` does. `on_progress(done, total)` is called after
        each batch.
        """
        if tools is not None and len(tools) != len(conversations):
            raise ValueError(f"{len(tools)} tool lists for {len(conversations)} conversations")
        per_prompt = tools or [None] * len(conversations)
        prompts = [
            render_prompt(messages, self.tokenizer, tools=t)
            for messages, t in zip(conversations, per_prompt, strict=True)
        ]
        size = batch_size or max(len(prompts), 1)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            batch = [prompts[i] for i in chunk]
            done = self._generate_batch(batch, adapter, max_new_tokens, temperature, top_p, seed, stop, grammar)
            for i, completion in zip(chunk, done, strict=True):
                results[i] = completion
            if on_progress is not None:
                on_progress(min(start + size, len(order)), len(order))
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, prompts, adapter, max_new_tokens, temperature, top_p, seed, stop, grammar=None
    ) -> list[Completion]:
        with self.use_adapter(adapter):
            rows = generate_tokens(
                self.model,
                self.tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                device=self.device,
                grammar=grammar,
            )
        return [self._completion(row, len(p), stop) for row, p in zip(rows, prompts, strict=True)]

    def use_adapter(self, name: str | None):
        """Context in which `name` is active; None means the plain base model.

        Public so that other forward passes on `self.model` (reference losses in evaluation) run
        under the same adapter choice as generation.
        """
        import contextlib

        if not self.adapters:
            if name is not None:
                raise KeyError(f"no adapter named {name!r} is loaded")
            return contextlib.nullcontext()
        if name is None:
            return self.model.disable_adapter()
        if name not in self.adapters:
            raise KeyError(f"no adapter named {name!r} is loaded")
        self.model.set_adapter(name)
        return contextlib.nullcontext()

    def _completion(self, ids: list[int], prompt_tokens: int, stop: list[str] | None) -> Completion:
        finish = "length"  # ids end at (and include) the first stop token, if any
        for i, token in enumerate(ids):
            if token in self.tokenizer.stop_ids:
                ids, finish = ids[:i], "stop"
                break
        text = self.tokenizer.decode(ids)
        for s in stop or []:
            if s and s in text:
                text, finish = text[: text.index(s)], "stop"
        return Completion(text=text, token_ids=ids, prompt_tokens=prompt_tokens, finish_reason=finish)
