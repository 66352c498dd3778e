"""Chat generation for the server: one worker thread, a fair queue, micro-batches, cached models.

Requests never run on the event loop. They wait in one FIFO queue; the generation thread takes
the oldest, adds every queued request it can run in the same forward passes (same base model,
same sampling settings, no per-request seed), and generates them together. Requests on
different LoRA adapters of one base batch too: each row gets its own adapter through the batch's
stacked LoRA weights (`stacked_lora`), or peft's `adapter_names` for adapters those cannot express.

Loaded weights are two LRU caches: base models (`base_cache_size`) and, per base, adapters
(`adapter_cache_size`). A model that finished training a second ago is loaded on first use.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunery.constraints import Constraint
from tunery.serve.catalog import ServedModel
from tunery.serve.decoding import TextStream
from tunery.serve.stacked_lora import StackedLora, stackable

log = logging.getLogger("tunery.serve")

BASE = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch
GATHER_S = 0.025  # how long a batch waits for requests arriving together; small next to a forward pass


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def batch_key(self):
        """Requests with equal keys can share a batch; None means this one runs alone."""
        if self.seed is not None:
            return None  # a seed promises a reproducible answer, which batch-mates would change
        return ("greedy",) if self.temperature == 0 else (self.temperature, self.top_p)


@dataclass(frozen=True)
class Controls:
    """Per-request changes to the next-token distribution, and what to report about it.

    They act on each row of a batch separately (`_RowControls`), so requests with different controls
    still share forward passes.
    """

    logprobs: bool = False
    top_logprobs: int = 0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    grammar: str | None = None  # an llguidance grammar the completion must match (tunery.constraints)

    def active(self) -> bool:
        return self != Controls()


@dataclass
class ChatJob:
    """One chat request: `n` completions of one prompt. Results arrive through `emit`:

    ("delta", index, text, logprobs or None) · ("finish", index, finish_reason) · ("done", usage dict) ·
    ("error", exception). With `controls.logprobs`, each delta carries the entries of the tokens whose
    text it releases (OpenAI's `ChatCompletionTokenLogprob` as dicts).
    """

    model: ServedModel
    prompt: list[int]
    max_tokens: int
    emit: Callable[[tuple], None]
    n: int = 1
    stop: list[str] = field(default_factory=list)
    sampling: Sampling = field(default_factory=Sampling)
    controls: Controls = field(default_factory=Controls)
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Row:
    """One completion being generated in the current batch."""

    job: ChatJob
    index: int
    stream: TextStream
    constraint: Constraint | None = None
    finish_reason: str | None = None
    step_logprobs: object = None  # this step's log-softmax over the vocabulary (a tensor), when asked for
    pending: list[dict] = field(default_factory=list)  # logprob entries whose text is not released yet

    def release(self, text: str) -> None:
        if text or self.pending:
            self.job.emit(("delta", self.index, text, self.pending if self.job.controls.logprobs else None))
            self.pending = []

    def finish(self, reason: str) -> None:
        if self.finish_reason is None:
            self.finish_reason = reason
            self.release(self.stream.finish())
            self.job.emit(("finish", self.index, reason))


class _RowStreamer:
    """transformers streamer: routes each step's new token of every row to that row."""

    def __init__(self, rows: list[_Row], tokenizer):
        self.rows = rows
        self.tokenizer = tokenizer
        self.stop_ids = tokenizer.stop_ids
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        for row, token in zip(self.rows, value.tolist(), strict=True):
            if row.finish_reason is not None:
                continue
            if token in self.stop_ids:
                row.finish("stop")
                continue
            if row.constraint is not None:
                row.constraint.advance(token)
            if row.job.controls.logprobs:
                row.pending.append(
                    logprob_entry(self.tokenizer, row.step_logprobs, token, row.job.controls.top_logprobs)
                )
            delta = row.stream.push(token)
            if delta:
                row.release(delta)
            if row.stream.stopped:
                row.finish("stop")
            elif len(row.stream.ids) >= row.job.max_tokens:
                row.finish("length")

    def end(self) -> None:
        pass


def logprob_entry(tokenizer, logprobs, token: int, top: int) -> dict:
    """OpenAI's `ChatCompletionTokenLogprob` for `token`, from one step's log-softmax.

    A token's text is its own bytes decoded as UTF-8 (a token holding part of a character shows
    U+FFFD, and `bytes` has the exact bytes, as OpenAI's does).
    """
    from tunery.constraints import ll_tokenizer

    ll = ll_tokenizer(tokenizer)

    def one(token_id: int, value: float) -> dict:
        raw = ll.decode_bytes([token_id])
        return {"token": raw.decode("utf-8", errors="replace"), "bytes": list(raw), "logprob": value}

    entry = one(token, float(logprobs[token]))
    if top:
        values, ids = logprobs.topk(top)
        entry["top_logprobs"] = [one(i, v) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
    else:
        entry["top_logprobs"] = []
    return entry


def _row_controls(rows: list[_Row]):
    """Logits processor applying each row's `Controls`; it runs before temperature and top_p.

    Logprobs are the model's own log-softmax, taken before any penalty, bias or grammar changes the
    scores. Penalties follow OpenAI's definition: each logit drops by count × frequency_penalty, plus
    presence_penalty once the token has appeared in the completion.
    """
    import torch
    from transformers import LogitsProcessor

    class RowControls(LogitsProcessor):
        def __call__(self, input_ids, scores):
            logprobs = torch.log_softmax(scores.float(), dim=-1) if any(r.job.controls.logprobs for r in rows) else None
            for i, row in enumerate(rows):
                controls = row.job.controls
                if row.finish_reason is not None or not controls.active():
                    continue
                if controls.logprobs:
                    row.step_logprobs = logprobs[i]
                if (controls.frequency_penalty or controls.presence_penalty) and row.stream.ids:
                    seen, counts = torch.tensor(row.stream.ids).unique(return_counts=True)
                    seen = seen.to(scores.device)
                    scores[i, seen] -= counts.to(scores) * controls.frequency_penalty + controls.presence_penalty
                if controls.logit_bias:
                    ids, biases = zip(*controls.logit_bias, strict=True)
                    scores[i, list(ids)] += torch.tensor(biases, dtype=scores.dtype, device=scores.device)
                if row.constraint is not None:
                    allowed = row.constraint.allowed(scores.shape[1]).to(scores.device)
                    scores[i] = scores[i].masked_fill(~allowed, float("-inf"))
            return scores

    return RowControls()


def _row_stopping(rows: list[_Row]):
    """Stopping criterion: a row is done when it finished or its client went away."""
    import torch
    from transformers import StoppingCriteria

    class RowsDone(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = [r.finish_reason is not None or r.job.cancelled.is_set() for r in rows]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return RowsDone()


def settle_heap() -> None:
    """Take the loaded models' Python objects out of the cyclic garbage collector's scans.

    A base model with eight adapters is about 500,000 Python objects, and a full collection walks
    them all: about 260 ms on a CPU, during which no thread runs Python, so `/health` and every
    stream stalled that long at random moments of the serving benchmark. The objects live until
    their model is unloaded, so they are frozen after each load; each unload or eviction unfreezes
    first, so that what it dropped is collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def pick_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ChatEngine:
    def __init__(
        self,
        *,
        device: str = "auto",
        base_cache_size: int = 2,
        adapter_cache_size: int = 8,
        max_batch_size: int = 8,
        threads: int | None = None,
    ):
        self.device_setting = device
        # Training jobs share the machine. Oversubscribed OpenMP threads spin against each
        # other (10x slower generation measured on 2 busy cores), so generation takes half.
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.base_cache_size = base_cache_size
        self.adapter_cache_size = adapter_cache_size
        self.max_batch_size = max_batch_size
        self._queue: deque[ChatJob] = deque()
        self._forget: set[Path] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._bases: OrderedDict[Path, object] = OrderedDict()  # base dir → Generator
        self._adapters: dict[Path, OrderedDict[Path, str]] = {}  # base dir → adapter dir → adapter name
        self._stacked: dict[Path, StackedLora] = {}  # base dir → its adapters' stacked weights
        self._stackable: dict[str, bool] = {}  # adapter name → whether stacking can express it
        self._adapter_ids = 0
        self._expected = max_batch_size  # requests the next batch waits (briefly) for
        self._thread: threading.Thread | None = None

    # -- called from request handlers -----------------------------------------------------------

    def submit(self, job: ChatJob) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tunery-generate", daemon=True)
                self._thread.start()
            self._queue.append(job)
            self._cond.notify()

    def forget(self, path: Path) -> None:
        """Unload a deleted model's weights (done by the generation thread between batches)."""
        with self._cond:
            self._forget.add(Path(path).resolve())
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- the generation thread ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._forget and not self._stopping:
                    self._cond.wait()
                # Wait briefly for as many requests as the last batch expects (see below), or the
                # next batch would be one request followed by the rest.
                deadline = time.monotonic() + GATHER_S
                while 0 < len(self._queue) < self._expected and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping:
                    for job in self._queue:
                        job.emit(("error", RuntimeError("the server is shutting down")))
                    return
                forget, self._forget = self._forget, set()
                batch = self._take_batch() if self._queue else []
            for path in forget:
                self._unload(path)
            if batch:
                try:
                    self._generate(batch)
                except Exception as exc:  # one bad batch must not kill the thread
                    log.exception("generation failed")
                    for job in batch:
                        job.emit(("error", exc))

    def _expect_next(self, answering: int) -> None:
        """Set how many requests the next batch waits for, just before `answering` requests get their answers.

        Those clients send their next requests a few ms later; with the requests that arrived while
        this batch ran, that is the next batch. Waiting for this batch's size alone let clients
        settle into two cohorts that never merge: 8 clients served as alternating batches of 4, at
        0.57x the throughput of batches of 8. A lone client, answered with nothing queued, never waits.
        """
        with self._cond:
            self._expected = min(self.max_batch_size, len(self._queue) + answering)

    def _take_batch(self) -> list[ChatJob]:
        """The oldest request, plus queued ones that can share its forward passes."""
        head = self._queue.popleft()
        batch, rows, key = [head], head.n, head.sampling.batch_key()
        adapters = {head.model.adapter_dir} - {None}
        if key is None:
            return batch
        for job in list(self._queue):
            if rows + job.n > self.max_batch_size:
                break
            # A batch never needs more adapters than the cache holds, so loading one of them
            # cannot evict another that the same batch is about to use.
            needed = adapters | ({job.model.adapter_dir} - {None})
            if (
                job.model.base_dir == head.model.base_dir
                and job.sampling.batch_key() == key
                and (len(needed) <= self.adapter_cache_size)
            ):
                self._queue.remove(job)
                batch.append(job)
                rows += job.n
                adapters = needed
        return batch

    def _generator(self, base_dir: Path):
        from tunery.inference import Generator

        if base_dir in self._bases:
            self._bases.move_to_end(base_dir)
            return self._bases[base_dir]
        if len(self._bases) >= self.base_cache_size:
            old, _ = self._bases.popitem(last=False)
            self._adapters.pop(old, None)
            self._stacked.pop(old, None)
            log.info("unloaded base model %s", old)
        device = pick_device(self.device_setting)
        import torch

        torch.set_num_threads(self.threads)  # process-wide; this thread is the API's only torch user
        dtype = None
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        generator = Generator(base_dir, device=device, dtype=dtype)
        self._bases[base_dir] = generator
        self._adapters[base_dir] = OrderedDict()
        self._stacked[base_dir] = StackedLora()
        log.info("loaded base model %s on %s", base_dir, device)
        settle_heap()
        return generator

    def _adapter(self, generator, base_dir: Path, adapter_dir: Path) -> str:
        loaded = self._adapters[base_dir]
        if adapter_dir in loaded:
            loaded.move_to_end(adapter_dir)
            return loaded[adapter_dir]
        self._adapter_ids += 1
        name = f"adapter{self._adapter_ids}"
        generator.add_adapter(name, adapter_dir)
        loaded[adapter_dir] = name
        self._stackable[name] = stackable(generator.model, name)
        self._stacked[base_dir].forget()
        # Evict after adding: peft cannot go back to a model with no adapter at all.
        while len(loaded) > self.adapter_cache_size:
            old_dir, old_name = loaded.popitem(last=False)
            generator.remove_adapter(old_name)
            self._stackable.pop(old_name, None)
            log.info("unloaded adapter %s", old_dir)
        settle_heap()
        return name

    def _unload(self, path: Path) -> None:
        dropped = path in self._bases
        if dropped:
            del self._bases[path]
            self._adapters.pop(path, None)
            self._stacked.pop(path, None)
        for base_dir, loaded in self._adapters.items():
            # peft cannot drop a model's last adapter; an unreachable one ages out of the LRU instead.
            if path in loaded and len(loaded) > 1:
                name = loaded.pop(path)
                self._bases[base_dir].remove_adapter(name)
                self._stackable.pop(name, None)
                self._stacked[base_dir].forget()
                dropped = True
        if dropped:
            settle_heap()

    def _generate(self, batch: list[ChatJob]) -> None:
        import torch

        base_dir = batch[0].model.base_dir
        generator = self._generator(base_dir)
        names = [
            self._adapter(generator, base_dir, j.model.adapter_dir) if j.model.adapter_dir else None for j in batch
        ]
        tok = generator.tokenizer
        rows, prompts, row_names = [], [], []
        for job, name in zip(batch, names, strict=True):
            for index in range(job.n):
                constraint = Constraint(job.controls.grammar, tok) if job.controls.grammar else None
                rows.append(_Row(job, index, TextStream(tok.decode, job.stop), constraint))
                prompts.append(job.prompt)
                row_names.append(name)
        width = max(len(p) for p in prompts)
        pad = tok.pad_id
        device = generator.device
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        sampling = batch[0].sampling
        if sampling.temperature > 0:
            options = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
        else:
            options = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        row_adapters = contextlib.nullcontext()
        if generator.adapters and all(self._stackable[n] for n in row_names if n):
            row_adapters = self._stacked[base_dir].rows(generator.model, row_names)
        elif generator.adapters:
            options["adapter_names"] = [n or BASE for n in row_names]  # peft's per-row adapters
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        from transformers import LogitsProcessorList, StoppingCriteriaList

        if any(job.controls.active() for job in batch):
            options["logits_processor"] = LogitsProcessorList([_row_controls(rows)])

        with torch.inference_mode(), row_adapters:
            generator.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max(j.max_tokens for j in batch),
                eos_token_id=sorted(tok.stop_ids),
                pad_token_id=pad,
                streamer=_RowStreamer(rows, tok),
                stopping_criteria=StoppingCriteriaList([_row_stopping(rows)]),
                **options,
            )
        self._expect_next(len(batch))
        for row in rows:
            row.finish("length" if len(row.stream.ids) >= row.job.max_tokens else "stop")
        for job in batch:
            completion = sum(len(r.stream.ids) for r in rows if r.job is job)
            job.emit(
                (
                    "done",
                    {
                        "prompt_tokens": len(job.prompt),
                        "completion_tokens": completion,
                        "total_tokens": len(job.prompt) + completion,
                    },
                )
            )
