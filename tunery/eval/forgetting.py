"""The forgetting probe: does fine-tuning cost the model its general skills?

`probe.jsonl`, bundled with tunery and written for it, holds 30 short general-skill questions in
three groups of ten: arithmetic, instruction following, short facts. Each line names the grader
that checks it and the reference that grader needs (mostly a /PATTERN/, see graders/regex.py),
plus an `example_answer` that passes (the tests hold every item to it). The base model and the
tuned model answer the same items; the drop in the probe score, with a paired bootstrap interval,
is the forgetting, the tutorial's "catastrophic forgetting" made visible.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources

from pydantic import BaseModel, Field

from tunery.eval.graders import BUILTIN
from tunery.eval.report import Score
from tunery.eval.stats import bootstrap_ci, paired_bootstrap_diff

MAX_NEW_TOKENS = 48  # every probe answer fits in a sentence


class ProbeItem(BaseModel, extra="forbid"):
    skill: str
    messages: list[dict] = Field(min_length=1)
    grader: str
    reference: str
    example_answer: str


class ForgettingReport(BaseModel):
    n: int
    base: Score
    tuned: Score
    drop: Score = Field(description="base score minus tuned score, with a paired bootstrap interval")
    by_skill: dict[str, dict[str, float]] = Field(description="skill → {'base', 'tuned'} mean score")
    verdict: str
    seconds: float
    examples: list[dict] = Field(default_factory=list, repr=False)

    def to_dict(self, examples: bool = False) -> dict:
        return self.model_dump(mode="json", exclude=None if examples else {"examples"})


def load_probe() -> list[ProbeItem]:
    """The bundled probe items (package data `tunery/eval/probe.jsonl`)."""
    text = resources.files("tunery.eval").joinpath("probe.jsonl").read_text(encoding="utf-8")
    return [ProbeItem.model_validate(json.loads(line)) for line in text.splitlines() if line.strip()]


def grade_probe(items: Sequence[ProbeItem], outputs: Sequence[str]) -> list[float]:
    """Each answer checked by its own item's grader."""
    return [
        BUILTIN[item.grader].score([item.messages], [output], [item.reference])[0]
        for item, output in zip(items, outputs, strict=True)
    ]


def forgetting_verdict(base: float, tuned: float, drop) -> str:
    """One sentence on the probe result; `drop` is the paired interval of base − tuned.

    >>> from tunery.eval.stats import Interval
    >>> forgetting_verdict(0.5, 0.5, Interval(0.0, 0.0, 0.0))
    'no measurable forgetting: probe score 0.50 → 0.50, no change (CI 0.00..0.00)'
    >>> forgetting_verdict(0.33, 0.43, Interval(-0.10, -0.27, 0.07))
    'no measurable forgetting: probe score 0.33 → 0.43, a rise within noise (CI -0.27..0.07)'
    >>> forgetting_verdict(0.33, 0.23, Interval(0.10, -0.10, 0.30))
    'no measurable forgetting: probe score 0.33 → 0.23, a drop within noise (CI -0.10..0.30)'
    """
    scores = f"probe score {base:.2f} → {tuned:.2f}"
    if drop.low > 0:
        return f"general skills dropped by {drop.estimate:.2f} (CI {drop.low:.2f}..{drop.high:.2f}): {scores}"
    if drop.high < 0:
        return f"general skills improved by {-drop.estimate:.2f} (CI {-drop.high:.2f}..{-drop.low:.2f}): {scores}"
    # Said by the scores as printed, so the words never contradict the numbers beside them.
    shown_base, shown_tuned = round(base, 2), round(tuned, 2)
    change = "a drop" if shown_tuned < shown_base else "a rise" if shown_tuned > shown_base else "no change"
    within = f"{change} within noise" if change != "no change" else change
    return f"no measurable forgetting: {scores}, {within} (CI {drop.low:.2f}..{drop.high:.2f})"


def run_probe(base, tuned, *, log=None, progress=None) -> ForgettingReport:
    """Answer the probe with both systems and report the drop.

    All 30 items go in one batch: their prompts are a sentence each, so memory is never the limit,
    and one batch means the fewest decoding steps.

    Args:
        base, tuned: (generator, adapter name or None) pairs; both may share one generator.
        progress: called as progress("probe base", done, total) while answers come in.
    """
    import time

    started = time.perf_counter()
    items = load_probe()
    scores, outputs = {}, {}
    for name, (generator, adapter) in (("base", base), ("tuned", tuned)):
        if log:
            log(f"forgetting probe: {name} answers {len(items)} general-skill questions")
        if progress:
            progress(f"probe {name}", 0, len(items))
        completions = generator.generate(
            [item.messages for item in items],
            adapter=adapter,
            max_new_tokens=MAX_NEW_TOKENS,
            on_progress=(lambda done, total, name=name: progress(f"probe {name}", done, total)) if progress else None,
        )
        outputs[name] = [c.text.strip() for c in completions]
        scores[name] = grade_probe(items, outputs[name])
    base_ci, tuned_ci = bootstrap_ci(scores["base"]), bootstrap_ci(scores["tuned"])
    drop = paired_bootstrap_diff(scores["base"], scores["tuned"])
    skills = dict.fromkeys(item.skill for item in items)
    by_skill = {
        skill: {
            name: sum(s for s, item in zip(scores[name], items, strict=True) if item.skill == skill)
            / sum(item.skill == skill for item in items)
            for name in ("base", "tuned")
        }
        for skill in skills
    }
    return ForgettingReport(
        n=len(items),
        base=Score.of(base_ci),
        tuned=Score.of(tuned_ci),
        drop=Score.of(drop),
        by_skill=by_skill,
        verdict=forgetting_verdict(base_ci.estimate, tuned_ci.estimate, drop),
        seconds=round(time.perf_counter() - started, 2),
        examples=[
            {
                "skill": item.skill,
                "question": item.messages[-1]["content"],
                "reference": item.reference,
                "base_output": outputs["base"][i],
                "base_score": scores["base"][i],
                "tuned_output": outputs["tuned"][i],
                "tuned_score": scores["tuned"][i],
            }
            for i, item in enumerate(items)
        ],
    )
