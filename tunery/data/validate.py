"""The scan: data files → a ValidationReport of line-level issues; reads each file once, never changes it.

The reader is tunery/data/jsonl.py, the rules (codes, fixes, per-line checks) tunery/data/rules.py;
this module applies them to whole files, with duplicates, train/validation leakage and tokens.

This is what `tunery validate` prints and what the server runs on uploaded files, so it never
prints and never raises on bad *data*: every problem becomes an `Issue` with its 1-based line, a
stable code (OpenAI's where one exists) and a message that says how to fix it. Only I/O problems
(no such file, a directory, unreadable) raise `TuneryError`.

Memory stays bounded on big files:
  * lines are read with a cap of `MAX_LINE_BYTES` (10 MiB) each; a longer line is one
    `line_too_long` error, skipped in 1 MiB chunks, never held whole;
  * duplicates and train/validation leakage are found from 8-byte hashes of each example's
    canonical JSON, kept with its line and message count (16 bytes per example), never from
    the lines themselves;
  * at most `max_issues_per_code` issues are kept per code; `issue_counts` stays exact.

Token statistics, truncation and the end-of-turn check need a `ChatTokenizer` (`--model`); they
use `tokenizers` and jinja2 only, never torch.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, computed_field

from tunery.data.formats import ROLES, Format, to_example
from tunery.data.jsonl import MAX_LINE_BYTES, binary_reason, canonical, open_data, parse_line, read_lines
from tunery.data.rules import CODES, MIN_EXAMPLES, RULES, Severity, SpecialTokens, check_example
from tunery.errors import TuneryError

if TYPE_CHECKING:
    from tunery.data.render import ChatTokenizer

TOKENISE_CHARS = 100_000  # text always tokenised (about 0.5 s); longer only if max_seq_len could hold it
MAX_ISSUES_PER_CODE = 100_000  # kept in the report; counts beyond this stay exact


class Issue(BaseModel):
    """One problem, at one line of one file."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int | None  # 1-based; None when it concerns the whole file
    column: int | None = None  # 1-based, where the line could not be decoded or parsed
    code: str
    severity: Severity
    message: str  # what is wrong and how to fix it


class Summary(BaseModel):
    """min / mean / p95 / max of a per-example count (p95 linearly interpolated, as numpy does)."""

    min: int
    mean: float
    p95: float
    max: int


def summarize(values: Sequence[int]) -> Summary | None:
    """Summary of `values`, or None when there are none."""
    if len(values) == 0:
        return None
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    return Summary(
        min=int(data.min()),
        mean=round(float(data.mean()), 2),
        p95=round(float(np.percentile(data, 95)), 2),
        max=int(data.max()),
    )


class Stats(BaseModel):
    """What the training file holds. Token fields are None without a tokenizer."""

    format: Format | None
    lines: int  # non-empty lines, valid or not
    examples: int  # lines without errors: what would be trained on
    validation_examples: int | None = None
    messages_per_example: Summary | None = None
    # role → content tokens per example, plus "total": the whole rendered conversation
    tokens_per_example: dict[str, Summary] | None = None
    # tokens with loss per epoch, after truncation; for preference data both answers count,
    # since DPO scores both
    trained_tokens: int | None = None
    max_seq_len: int | None = None
    truncated_examples: int | None = None
    estimated_epochs: int | None = None  # the recipe's `auto` epochs (tunery.train.plan.auto_epochs)
    estimated_trained_tokens: int | None = None  # trained_tokens × estimated_epochs


class ValidationReport(BaseModel):
    """Every issue found in one pass over the training (and validation) file, plus statistics."""

    file: str
    validation_file: str | None = None
    issues: list[Issue]
    issue_counts: dict[str, int]  # exact, even where `issues` was capped
    refused: list[str] = []  # codes made errors by the caller (special_tokens_in_content)
    issues_omitted: int = 0  # issues counted but not kept (beyond max_issues_per_code)
    stats: Stats

    @computed_field
    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return self.error_count == 0

    @computed_field
    @property
    def error_count(self) -> int:
        return sum(n for code, n in self.issue_counts.items() if self._severity(code) == "error")

    @computed_field
    @property
    def warning_count(self) -> int:
        return sum(n for code, n in self.issue_counts.items() if self._severity(code) == "warning")

    def _severity(self, code: str) -> Severity:
        return "error" if code in self.refused else CODES[code]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def _hash64(obj: object) -> int:
    """64-bit hash of the canonical JSON, only ever compared within one run.

    Python's own str hash (SipHash, keyed per process) costs a third of BLAKE2b, and this runs
    once per example. With 64 bits, a false duplicate among 10 million examples
    has odds of about 3 in a million.
    """
    return hash(canonical(obj))


# ---------------------------------------------------------------------------------------------
# Turn markers inside message text.

# Without a tokenizer: the turn markers of the common chat templates (ChatML, Llama 3, Mistral,
# Phi-3, Gemma). With one, its own special tokens.
COMMON_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "[INST]",
    "[/INST]",
)


# What the report says of a special token in message text when it is escaped: nothing to fix.
ESCAPED_FIX = {
    "special_tokens_in_content": "none needed: special_tokens=escape tokenises it as plain text, so it forges no turn"
}


class _Markers:
    """Finds a chat template's special tokens in the text of an example's messages."""

    def __init__(self, tokens: Sequence[str]):
        self.pattern = re.compile("|".join(re.escape(t) for t in sorted(set(tokens), key=len, reverse=True) if t))

    @classmethod
    def of(cls, tokenizer: ChatTokenizer | None) -> _Markers:
        return cls(COMMON_MARKERS if tokenizer is None else tokenizer.special_texts)

    def find(self, obj: dict, fmt: Format) -> str | None:
        """'<token>' in messages[i] for the first special token in a (valid) example's text."""
        if fmt == "preference":
            groups = [("input.messages", obj["input"]["messages"])]
            groups += [(key, obj[key]) for key in ("preferred_output", "non_preferred_output")]
        else:
            groups = [("messages", obj["messages"])]
        for where, messages in groups:
            for i, message in enumerate(messages, start=1):
                content = message.get("content")
                match = self.pattern.search(content) if type(content) is str else None
                if match:
                    return f"{json.dumps(match.group())} in {where}[{i}] ({message.get('role')})"
        return None


# ---------------------------------------------------------------------------------------------
# One pass over one file.


class _IssueSink:
    """Collects issues, keeping at most `cap` per code and counting all of them; codes in
    `refused` are errors whatever their rule's default severity, and `fixes` replaces a rule's fix
    where the caller's choice already handles the issue."""

    def __init__(self, cap: int, refused: frozenset[str] = frozenset(), fixes: dict[str, str] | None = None):
        self.cap = cap
        self.refused = refused
        self.fixes = fixes or {}
        self.issues: list[Issue] = []
        self.counts: Counter[str] = Counter()

    def add(self, file: str, line: int | None, code: str, what: str, column: int | None = None) -> None:
        """Record `what` is wrong; the message adds how to fix it, from RULES."""
        self.counts[code] += 1
        if self.counts[code] <= self.cap:
            severity, fix = RULES[code]
            severity = "error" if code in self.refused else severity
            fix = self.fixes.get(code, fix)
            message = f"{what}; fix: {fix}"
            self.issues.append(
                Issue(file=file, line=line, column=column, code=code, severity=severity, message=message)
            )


@dataclass
class _FileScan:
    """What one pass over a file keeps: counts, hashes and line numbers, never the lines."""

    name: str
    format: Format | None = None
    lines: int = 0  # non-empty lines
    # one entry per valid example
    message_counts: array = field(default_factory=lambda: array("I"))
    hashes: array = field(default_factory=lambda: array("q"))
    hash_lines: array = field(default_factory=lambda: array("I"))

    @property
    def examples(self) -> int:
        return len(self.hash_lines)


class _TokenCounter:
    """Renders each valid example with the chat template: per-role tokens, trained tokens, truncation."""

    def __init__(self, tok: ChatTokenizer, max_seq_len: int | None, sink: _IssueSink):
        self.tok, self.max_seq_len, self.sink = tok, max_seq_len, sink
        self.per_role: dict[str, array] = {}
        self.totals = array("I")
        self.trained = 0
        self.truncated_examples = 0
        self.no_eos: dict[str, list[int]] = {}  # file → [first line, count]
        # No token is longer than the vocabulary's longest entry, so text longer than max_seq_len of
        # them cannot fit: such an example is reported without tokenising it (a 5 MB line took 25 s
        # and 1.5 GB to tokenise, for tokens that training would cut off). Below TOKENISE_CHARS it is
        # tokenised all the same, so the rules that need its tokens (an answer cut away) still see them.
        longest = max(map(len, tok.tokenizer.get_vocab()))
        self.max_chars = max(max_seq_len * longest, TOKENISE_CHARS) if max_seq_len else None

    def add(self, file: str, line: int, obj: dict, fmt: Format, collect_stats: bool) -> None:
        from tunery.data.render import render_chat

        example = to_example(obj, line)
        if fmt == "preference":
            chats = [example.as_chat("chosen"), example.as_chat("rejected")]
            shown = [*example.prompt, example.chosen]
        else:
            chats, shown = [example], example.messages
        chars = max(sum(len(m.get("content") or "") for m in chat.messages) for chat in chats)
        if self.max_chars is not None and chars > self.max_chars:
            self.truncated_examples += 1
            what = (
                f"{chars:,} characters of text, more than max_seq_len {self.max_seq_len} tokens can hold: "
                "not tokenised, and training would cut most of it off"
            )
            self.sink.add(file, line, "example_too_long", what)
            return
        try:
            rendered = [render_chat(chat, self.tok) for chat in chats]
        except Exception as exc:  # noqa: BLE001 - the template is third-party code; any failure is a data issue
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.sink.add(file, line, "template_error", f"the chat template cannot render this example ({reason})")
            return
        length = max(len(r.input_ids) for r in rendered)
        limit = self.max_seq_len
        if limit is not None and length > limit:
            self.truncated_examples += 1
            excess = length - limit
            what = f"{length} tokens, {excess} more than max_seq_len {limit}: the last {excess} will be cut off"
            self.sink.add(file, line, "example_too_long", what)
            # Token t is trained when loss_mask[t] is set; truncation keeps tokens [0, limit).
            empty = [r for r in rendered if sum(r.loss_mask[1:]) and not sum(r.loss_mask[1:limit])]
            if empty:
                which = "answer" if fmt != "preference" else ("pair's answers" if len(empty) == 2 else "pair's answer")
                what = f"max_seq_len {limit} cuts away every trained token of the {which}: training drops it"
                self.sink.add(file, line, "no_trained_token", what)
        if not all(r.eos_trained for r in rendered):
            self.no_eos.setdefault(file, [line, 0])[1] += 1
        if not collect_stats:
            return
        self.trained += sum(sum(r.loss_mask[:limit]) for r in rendered)
        self.totals.append(length)
        counts = dict.fromkeys(self.per_role, 0)
        for m in shown:
            content = m.get("content")
            counts[m["role"]] = counts.get(m["role"], 0) + (self.tok.count(content) if content else 0)
        for role, n in counts.items():
            if role not in self.per_role:  # a role first seen now was absent (0) from earlier examples
                self.per_role[role] = array("I", [0]) * (len(self.totals) - 1)
            self.per_role[role].append(n)

    def report_no_eos(self) -> None:
        for file, (line, count) in self.no_eos.items():
            what = (
                f"the chat template puts no end-of-turn token after the assistant reply ({count} example(s), "
                "first here), so the tuned model would not learn to stop"
            )
            self.sink.add(file, line, "template_no_eos", what)


def _scan(
    path: Path,
    sink: _IssueSink,
    tokens: _TokenCounter | None,
    *,
    collect_token_stats: bool,
    markers: _Markers,
    name: str | None = None,
) -> _FileScan:
    name = name or str(path)
    scan = _FileScan(name=name)
    with open_data(path, name) as fh:
        try:
            head = fh.peek(8192)[:8192]
        except OSError as exc:
            raise TuneryError(f"cannot read {name}: {exc.strerror}") from None
        reason = binary_reason(head)
        if reason:
            sink.add(name, None, "binary_file", f"{Path(name).name} is not JSONL text: {reason}")
            return scan
        add = sink.add
        # bound once: this loop runs per line of multi-GB files
        count_messages, add_hash, add_line = scan.message_counts.append, scan.hashes.append, scan.hash_lines.append
        first_format_line = number = blanks = 0
        blank_run: list[int] = []  # first and last line of the current run of empty lines
        try:
            for number, raw in read_lines(fh):
                if raw is None:
                    add(name, number, "line_too_long", f"the line is over the {MAX_LINE_BYTES // 2**20} MiB limit")
                    continue
                if raw.isspace():
                    blanks += 1
                    if blank_run:
                        blank_run[1] = number
                    else:
                        blank_run = [number, number]
                    continue
                if blank_run:  # empty lines followed by data: in the middle, not trailing
                    first, last = blank_run
                    span = "an empty line" if first == last else f"{last - first + 1} empty lines ({first}-{last})"
                    add(name, first, "empty_line", f"{span} between examples")
                    blank_run = []
                obj, problem = parse_line(raw, number)
                if problem:
                    add(name, number, *problem)
                    continue
                fmt, n_messages, problems = check_example(obj)
                if fmt is not None and fmt != scan.format:
                    if scan.format is None:
                        scan.format, first_format_line = fmt, number
                    else:
                        what = f"found multiple dataset formats: this line is {fmt}, line {first_format_line} is "
                        problems.append(("mixed_formats", what + scan.format))
                if problems:
                    for code, message in problems:
                        add(name, number, code, message)
                    if any(CODES[code] == "error" for code, _ in problems):
                        continue
                forged = markers.find(obj, fmt)
                if forged:
                    add(name, number, "special_tokens_in_content", f"the chat template's special token {forged}")
                count_messages(n_messages)
                add_hash(_hash64(obj))
                add_line(number)
                if tokens is not None:
                    tokens.add(name, number, obj, fmt, collect_token_stats)
        except OSError as exc:
            raise TuneryError(f"cannot read {name}: {exc.strerror}") from None
        scan.lines = number - blanks
    if scan.lines == 0:
        sink.add(name, None, "empty_file", f"{Path(name).name} holds no examples")
    return scan


# ---------------------------------------------------------------------------------------------
# Across files: duplicates and leakage from the hashes.


def _duplicates(scan: _FileScan) -> Iterator[tuple[int, int]]:
    """(line, line of its first copy) for every exact duplicate, from the hashes alone."""
    if len(scan.hashes) < 2:
        return
    import numpy as np

    hashes = np.frombuffer(scan.hashes, dtype=np.int64)
    lines = np.frombuffer(scan.hash_lines, dtype=np.uint32)
    order = np.argsort(hashes, kind="stable")  # stable: the first copy of a group has the lowest line
    ordered = hashes[order]
    same = np.concatenate(([False], ordered[1:] == ordered[:-1]))
    group_start = np.maximum.accumulate(np.where(same, 0, np.arange(len(ordered))))
    for i in np.flatnonzero(same):
        yield int(lines[order[i]]), int(lines[order[group_start[i]]])


def _overlap(train: _FileScan, valid: _FileScan) -> Iterator[tuple[int, int]]:
    """(training line, validation line) for every training example also in the validation file."""
    if not len(train.hashes) or not len(valid.hashes):
        return
    import numpy as np

    valid_hashes = np.frombuffer(valid.hashes, dtype=np.int64)
    order = np.argsort(valid_hashes, kind="stable")
    ordered = valid_hashes[order]
    train_hashes = np.frombuffer(train.hashes, dtype=np.int64)
    pos = np.minimum(np.searchsorted(ordered, train_hashes), len(ordered) - 1)
    train_lines = np.frombuffer(train.hash_lines, dtype=np.uint32)
    valid_lines = np.frombuffer(valid.hash_lines, dtype=np.uint32)
    for i in np.flatnonzero(ordered[pos] == train_hashes):
        yield int(train_lines[i]), int(valid_lines[order[pos[i]]])


def validate_file(
    path: str | Path,
    *,
    validation: str | Path | None = None,
    tokenizer: ChatTokenizer | None = None,
    max_seq_len: int | None = None,
    max_issues_per_code: int = MAX_ISSUES_PER_CODE,
    name: str | None = None,
    special_tokens: SpecialTokens = "warn",
    special_texts: Sequence[str] | None = None,
    epochs: Callable[[int], int] | None = None,
) -> ValidationReport:
    """Check a training file (and optionally its validation file) in one streaming pass each.

    Args:
        path: the training JSONL file.
        validation: a validation JSONL file; checked with the same rules, plus leakage.
        tokenizer: enables token statistics, trained tokens and the end-of-turn check.
        max_seq_len: with a tokenizer, warn about examples longer than this.
        max_issues_per_code: issues kept per code; the counts stay exact beyond it.
        name: what the report and its messages call the training file (the server passes an
            upload's own filename, never its temporary path); default the path.
        special_tokens: a chat template's special token in message text (`<|im_end|>`) can forge
            a turn: "warn" reports `special_tokens_in_content` as a warning, "refuse" as an error,
            "escape" as a warning that says the text is trained as plain text (`ChatTokenizer.escape`).
        special_texts: the special tokens to look for in message text; default the tokenizer's,
            else the common templates' turn markers (`COMMON_MARKERS`).
        epochs: the recipe's rule for `n_epochs="auto"` (`tunery.train.plan.auto_epochs`), for
            the report's estimated epochs and trained tokens; None leaves them out.

    Returns:
        The report; `report.ok` is False when any error was found.

    Raises:
        TuneryError: a file is missing, a directory or unreadable (I/O, not data, problems).
    """
    if max_seq_len is not None and max_seq_len < 1:
        raise TuneryError(f"max_seq_len must be at least 1, got {max_seq_len}")
    path = Path(path)
    refused = frozenset({"special_tokens_in_content"}) if special_tokens == "refuse" else frozenset()
    sink = _IssueSink(max_issues_per_code, refused, ESCAPED_FIX if special_tokens == "escape" else None)
    markers = _Markers(special_texts) if special_texts is not None else _Markers.of(tokenizer)
    tokens = _TokenCounter(tokenizer, max_seq_len, sink) if tokenizer is not None else None
    train = _scan(path, sink, tokens, collect_token_stats=True, markers=markers, name=name)
    valid = None
    if validation is not None:
        valid = _scan(Path(validation), sink, tokens, collect_token_stats=False, markers=markers)
        if valid.format and train.format and valid.format != train.format:
            what = f"found multiple dataset formats: this file is {valid.format}, the training file {train.format}"
            sink.add(valid.name, None, "mixed_formats", what)
    for scan in (train, valid) if valid else (train,):
        for line, first in _duplicates(scan):
            sink.add(scan.name, line, "duplicate_example", f"exact duplicate of line {first}")
    if valid is not None:
        for line, valid_line in _overlap(train, valid):
            sink.add(train.name, line, "train_validation_overlap", f"also in the validation file, at line {valid_line}")
    if 0 < train.lines < MIN_EXAMPLES:
        found = f"{train.lines} example{'s' * (train.lines != 1)}"
        sink.add(train.name, None, "too_few_examples", f"{found}, fewer than the minimum of {MIN_EXAMPLES}")
    if tokens is not None:
        tokens.report_no_eos()

    file_order = {train.name: 0, valid.name if valid else None: 1}
    issues = sorted(sink.issues, key=lambda i: (file_order.get(i.file, 0), i.line or 0))
    stats = Stats(
        format=train.format,
        lines=train.lines,
        examples=train.examples,
        validation_examples=valid.examples if valid else None,
        messages_per_example=summarize(train.message_counts),
        estimated_epochs=epochs(train.examples) if epochs and train.examples else None,
    )
    if tokens is not None:
        order = {role: i for i, role in enumerate(ROLES)}
        per_role = {r: summarize(v) for r, v in sorted(tokens.per_role.items(), key=lambda rv: order[rv[0]])}
        stats.tokens_per_example = {**per_role, "total": summarize(tokens.totals)} if tokens.totals else None
        stats.trained_tokens = tokens.trained
        stats.max_seq_len = max_seq_len
        stats.truncated_examples = tokens.truncated_examples
        if stats.estimated_epochs:
            stats.estimated_trained_tokens = tokens.trained * stats.estimated_epochs
    return ValidationReport(
        file=train.name,
        validation_file=str(validation) if validation is not None else None,
        issues=issues,
        issue_counts=dict(sink.counts),
        refused=sorted(refused),
        issues_omitted=sum(sink.counts.values()) - len(sink.issues),
        stats=stats,
    )


def first_valid_examples(path: str | Path, n: int) -> list[tuple[int, dict]]:
    """The first `n` (line, example) pairs of a file that pass every per-line rule, for `--show`."""
    found: list[tuple[int, dict]] = []
    with open_data(Path(path)) as fh:
        for number, raw in read_lines(fh):
            if len(found) >= n:
                break
            if raw is None or raw.isspace():
                continue
            obj, problem = parse_line(raw, number)
            if problem:
                continue
            fmt, _, problems = check_example(obj)
            if fmt and not any(CODES[code] == "error" for code, _ in problems):
                found.append((number, obj))
    return found
