"""Run an OpenAI grader object on model answers: one reward per answer, errors counted, never raised.

`Grading` holds what a grader needs while it runs (python sandboxes, the judge endpoint) and
grades one answer (`grade`) or many at once on a thread pool (`grade_many`), so that a slow
python or model grader never serialises a batch. Every answer gets a `GradeResult`; a failure
(a template naming a missing field, a crash, a timeout, an unparsable model reply, a formula
that divides by zero) is reported with OpenAI's error kind and rewards 0.

The pass threshold (`pass_threshold`) says when an answer counts as a success in pass rates: the
top of a score_model's range, else 1.0 (a string check or label that passed, a similarity of 1,
a python or multi grader's full score).
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tunery.errors import TuneryError
from tunery.graders.formula import FormulaError, evaluate_formula
from tunery.graders.objects import (
    GraderObject,
    LabelModelGrader,
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)
from tunery.graders.templates import TemplateError, make_sample, render, variables

ERROR_KINDS = (
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass
class GradeResult:
    reward: float
    sub_rewards: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # one of ERROR_KINDS
    details: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class _Failed(Exception):
    def __init__(self, kind: str, details: str):
        super().__init__(details)
        self.kind, self.details = kind, details


def pass_threshold(grader: GraderObject) -> float:
    return grader.bounds[1] if isinstance(grader, ScoreModelGrader) else 1.0


def item_fields(grader: GraderObject) -> set[str]:
    """The top-level `item` fields the grader's templates use (which every data line must have)."""
    texts: list[str] = []

    def collect(g) -> None:
        if isinstance(g, MultiGrader):
            for sub in g.named.values():
                collect(sub)
        elif isinstance(g, (StringCheckGrader, TextSimilarityGrader)):
            texts.extend([g.input, g.reference])
        elif isinstance(g, (ScoreModelGrader, LabelModelGrader)):
            texts.extend(json.dumps(m.content) for m in g.input)

    collect(grader)
    return {path.split(".")[1] for text in texts for path in variables(text) if path.startswith("item.")}


def _sub_graders(grader: GraderObject) -> list:
    return list(grader.named.values()) if isinstance(grader, MultiGrader) else [grader]


class Grading:
    """A grader ready to run. Use as a context manager: python graders hold worker processes.

    Args:
        grader: the grader object.
        workers: answers graded at once (threads; python graders also get this many processes,
            at most 4).
        python_time_limit_s: wall-clock limit per sample for python graders (default
            `sandbox.TIME_LIMIT_S`).
    """

    def __init__(self, grader: GraderObject, *, workers: int = 8, python_time_limit_s: float | None = None):
        from tunery.graders.sandbox import TIME_LIMIT_S, PythonSandbox

        self.grader = grader
        self.workers = max(1, workers)
        self._sandboxes = {
            id(g): PythonSandbox(
                g.source, workers=min(self.workers, 4), time_limit_s=python_time_limit_s or TIME_LIMIT_S
            )
            for g in _sub_graders(grader)
            if isinstance(g, PythonGrader)
        }
        for g in _sub_graders(grader):
            if isinstance(g, (ScoreModelGrader, LabelModelGrader)):
                self._endpoint(g)  # fail before grading anything when no endpoint is configured

    def __enter__(self) -> Grading:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for sandbox in self._sandboxes.values():
            sandbox.close()

    def check(self) -> None:
        """Start every python grader once; raise TuneryError when its source does not load."""
        for g in _sub_graders(self.grader):
            if isinstance(g, PythonGrader):
                problem = self._sandboxes[id(g)].check()
                if problem is not None:
                    raise TuneryError(f"python grader {g.name!r}: {problem.details}", hint="define grade(sample, item)")

    # -- grading --------------------------------------------------------------------------------

    def grade(self, output_text: str, item: dict) -> GradeResult:
        started = time.monotonic()
        sample = make_sample(output_text)
        try:
            if isinstance(self.grader, MultiGrader):
                subs = {name: self._score(g, sample, item) for name, g in self.grader.named.items()}
                try:
                    reward = evaluate_formula(self.grader.calculate_output, subs)
                except FormulaError as exc:
                    raise _Failed("formula_parse_error", str(exc)) from None
                return GradeResult(reward, subs, seconds=time.monotonic() - started)
            reward = self._score(self.grader, sample, item)
            return GradeResult(reward, {self.grader.name: reward}, seconds=time.monotonic() - started)
        except _Failed as failure:
            return GradeResult(0.0, error=failure.kind, details=failure.details, seconds=time.monotonic() - started)

    def grade_many(self, outputs: list[str], items: list[dict]) -> list[GradeResult]:
        """Grade every (output, item) pair, `workers` at a time; results keep the input order."""
        if len(outputs) != len(items):
            raise ValueError(f"{len(outputs)} outputs for {len(items)} items")
        if self.workers == 1 or len(outputs) <= 1:
            return [self.grade(o, i) for o, i in zip(outputs, items, strict=True)]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self.grade, outputs, items))

    def _score(self, g, sample: dict, item: dict) -> float:
        def fill(text: str) -> str:
            try:
                return render(text, sample, item)
            except TemplateError as exc:
                raise _Failed("invalid_variable_error", str(exc)) from None

        if isinstance(g, StringCheckGrader):
            return string_check(fill(g.input), fill(g.reference), g.operation)
        if isinstance(g, TextSimilarityGrader):
            from tunery.graders.similarity import similarity

            return similarity(g.evaluation_metric, fill(g.input), fill(g.reference))
        if isinstance(g, PythonGrader):
            result = self._sandboxes[id(g)].grade(sample, item)
            if result.error:
                raise _Failed(result.error, f"{g.name}: {result.details}")
            return result.score
        if isinstance(g, ScoreModelGrader):
            return self._score_model(g, fill, g.sampling_params)
        if isinstance(g, LabelModelGrader):
            return self._label_model(g, fill)
        raise _Failed("other_error", f"cannot run a {g.type} grader here")

    # -- model graders --------------------------------------------------------------------------

    @staticmethod
    def _endpoint(g):
        from tunery.graders.judge import endpoint_for

        config = endpoint_for(g.model)
        if config is None:
            raise TuneryError(
                f"{g.type} grader {g.name!r} needs a model endpoint",
                hint="set TUNERY_JUDGE_BASE_URL to any OpenAI-compatible server (a `tunery serve` works), "
                "and TUNERY_JUDGE_API_KEY if it needs one",
            )
        return config

    def _ask(self, g, messages: list[dict], **sampling) -> str:
        from tunery.graders.judge import ask

        try:
            return ask(self._endpoint(g), messages, **sampling)
        except TuneryError as exc:
            raise _Failed("model_grader_server_error", str(exc)) from None

    @staticmethod
    def _messages(g, fill) -> list[dict]:
        return [{"role": m.role, "content": fill(content_text(m.content))} for m in g.input]

    def _score_model(self, g: ScoreModelGrader, fill, params) -> float:
        low, high = g.bounds
        sampling = {"temperature": 0.0, "max_tokens": 64}
        if params is not None:
            for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed")):
                if getattr(params, theirs) is not None:
                    sampling[ours] = getattr(params, theirs)
            if params.max_completions_tokens:
                sampling["max_tokens"] = params.max_completions_tokens
        reply = self._ask(g, self._messages(g, fill), **sampling)
        score = parse_score(reply)
        if score is None or not low <= score <= high:
            raise _Failed(
                "model_grader_parse_error", f"{g.name}: reply {reply[:80]!r} holds no score in [{low}, {high}]"
            )
        return score

    def _label_model(self, g: LabelModelGrader, fill) -> float:
        reply = self._ask(g, self._messages(g, fill), temperature=0.0, max_tokens=32)
        label = parse_label(reply, g.labels)
        if label is None:
            raise _Failed("model_grader_parse_error", f"{g.name}: reply {reply[:80]!r} is none of {g.labels}")
        return 1.0 if label in g.passing_labels else 0.0


def string_check(text: str, reference: str, operation: str) -> float:
    """OpenAI's string_check operations.

    >>> string_check("Answer: 4", "4", "like"), string_check("Paris", "paris", "ilike"), string_check("a", "a", "ne")
    (1.0, 1.0, 0.0)
    """
    if operation == "eq":
        return float(text == reference)
    if operation == "ne":
        return float(text != reference)
    if operation == "like":
        return float(reference in text)
    return float(reference.lower() in text.lower())  # ilike


def content_text(content) -> str:
    """A message's text: a string, one `{"type": "input_text", "text": ...}` part, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "\n".join(content_text(part) for part in content)


def parse_score(reply: str) -> float | None:
    """A model grader's score: JSON `{"result": x}` (OpenAI's structured reply) or the first number.

    >>> parse_score('{"steps": [], "result": 0.7}'), parse_score("Score: 3/5"), parse_score("none")
    (0.7, 3.0, None)
    """
    try:
        value = json.loads(reply)
        if isinstance(value, dict) and isinstance(value.get("result"), (int, float)):
            return float(value["result"])
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    except (json.JSONDecodeError, TypeError):
        pass
    found = _NUMBER.search(reply)
    return float(found.group()) if found else None


def parse_label(reply: str, labels: list[str]) -> str | None:
    """The one label the reply names: the whole reply, else the only label found in it as a word.

    >>> parse_label(" Positive.", ["positive", "negative"]), parse_label("it is negative", ["positive", "negative"])
    ('positive', 'negative')
    """
    text = reply.strip().strip(".!\"'`").strip()
    for label in labels:
        if text.lower() == label.lower():
            return label
    found = [label for label in labels if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", reply, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None
