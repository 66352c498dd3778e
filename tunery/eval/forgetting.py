"""Forgetting: what did fine-tuning cost the model's general skills? Two measures.

**The distribution shift** (`distribution_shift`): `general.jsonl` holds 310 general prompts in six
skills (see general_prompts.py). The base model answers them greedily once, cached per base
(keyed by its weight hash; tunery/data/prompt_sets.py, shared with replay in training); then the tuned model reads those same answers, and the per-token KL
divergence KL(base ‖ tuned) of its next-token distribution from the base's, and its extra NLL on
the base's answers, are reported with bootstrap intervals over the prompts, overall and per skill.
One forward pass per model, and far more sensitive than grading generations: it sees a shift long
before an answer flips.

**The generative probe** (`run_probe`): `probe.jsonl` holds 240 short questions in eight skills
(30 each). Each names the grader that checks it and the reference that grader needs (mostly a
/PATTERN/, see graders/regex.py), plus an `example_answer` that passes (the tests hold every item
to it). Base and tuned answer the same items; the drop in score, overall and per skill with paired
bootstrap intervals, is the forgetting you can read. With 30 items a skill, a fall like 0.70 →
0.30 is outside the noise and the verdict names it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources

from pydantic import BaseModel, Field

from tunery.data import prompt_sets
from tunery.data.prompt_sets import first_per_skill
from tunery.eval.heldout import HeldoutExample
from tunery.eval.report import Score
from tunery.eval.stats import bootstrap_ci, paired_bootstrap_diff
from tunery.graders import BUILTIN

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
    by_skill: dict[str, dict[str, float]] = Field(
        description="skill → {'base', 'tuned'} mean score, and the paired interval of the drop ('low', 'high')"
    )
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


def forgetting_verdict(base: float, tuned: float, drop, by_skill: dict[str, dict[str, float]] | None = None) -> str:
    """One sentence on the probe result; `drop` is the paired interval of base − tuned.

    `by_skill` (skill → base, tuned, and the drop's interval low/high) adds the skill that moved
    most, and every skill whose own drop is outside the noise, whatever the total says.

    >>> from tunery.eval.stats import Interval
    >>> forgetting_verdict(0.5, 0.5, Interval(0.0, 0.0, 0.0))
    'no measurable forgetting: probe score 0.50 → 0.50, no change (CI 0.00..0.00)'
    >>> skills = {"facts": {"base": 0.7, "tuned": 0.3, "low": 0.2, "high": 0.6},
    ...           "arithmetic": {"base": 0.5, "tuned": 0.6, "low": -0.3, "high": 0.1}}
    >>> forgetting_verdict(0.6, 0.45, Interval(0.15, -0.02, 0.3), skills)
    'no measurable forgetting overall: probe score 0.60 → 0.45, a drop within noise (CI -0.02..0.30); but facts fell 0.70 → 0.30 (CI of the drop 0.20..0.60); moved most: facts'
    """
    scores = f"probe score {base:.2f} → {tuned:.2f}"
    if drop.low > 0:
        text = f"general skills dropped by {drop.estimate:.2f} (CI {drop.low:.2f}..{drop.high:.2f}): {scores}"
    elif drop.high < 0:
        text = f"general skills improved by {-drop.estimate:.2f} (CI {-drop.high:.2f}..{-drop.low:.2f}): {scores}"
    else:
        # Said by the scores as printed, so the words never contradict the numbers beside them.
        shown_base, shown_tuned = round(base, 2), round(tuned, 2)
        change = "a drop" if shown_tuned < shown_base else "a rise" if shown_tuned > shown_base else "no change"
        within = f"{change} within noise" if change != "no change" else change
        overall = " overall" if by_skill else ""
        text = f"no measurable forgetting{overall}: {scores}, {within} (CI {drop.low:.2f}..{drop.high:.2f})"
    if not by_skill:
        return text
    fell = [
        f"{skill} fell {v['base']:.2f} → {v['tuned']:.2f} (CI of the drop {v['low']:.2f}..{v['high']:.2f})"
        for skill, v in by_skill.items()
        if v.get("low", 0) > 0
    ]
    if fell:
        text += ("; but " if drop.low <= 0 else "; ") + "; ".join(fell)
    moved = max(by_skill, key=lambda skill: abs(by_skill[skill]["base"] - by_skill[skill]["tuned"]))
    if by_skill[moved]["base"] != by_skill[moved]["tuned"]:
        text += f"; moved most: {moved}"
    return text


def run_probe(base, tuned, *, per_skill: int | None = None, log=None, progress=None) -> ForgettingReport:
    """Answer the probe with both systems and report the drop.

    The items go in batches of 64: their prompts are a sentence or two, so memory is never the
    limit, and big batches mean the fewest decoding steps.

    Args:
        base, tuned: (generator, adapter name or None) pairs; both may share one generator.
        per_skill: answer only the first N items of each skill (None: all 30).
        progress: called as progress("probe base", done, total) while answers come in.
    """
    import time

    started = time.perf_counter()
    items = first_per_skill(load_probe(), per_skill)
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
            batch_size=64,
            on_progress=(lambda done, total, name=name: progress(f"probe {name}", done, total)) if progress else None,
        )
        outputs[name] = [c.text.strip() for c in completions]
        scores[name] = grade_probe(items, outputs[name])
    base_ci, tuned_ci = bootstrap_ci(scores["base"]), bootstrap_ci(scores["tuned"])
    drop = paired_bootstrap_diff(scores["base"], scores["tuned"])
    by_skill = {}
    for skill in dict.fromkeys(item.skill for item in items):
        mine = [i for i, item in enumerate(items) if item.skill == skill]
        base, tuned = [scores["base"][i] for i in mine], [scores["tuned"][i] for i in mine]
        skill_drop = paired_bootstrap_diff(base, tuned)
        by_skill[skill] = {
            "base": sum(base) / len(mine),
            "tuned": sum(tuned) / len(mine),
            "low": skill_drop.low,
            "high": skill_drop.high,
        }
    return ForgettingReport(
        n=len(items),
        base=Score.of(base_ci),
        tuned=Score.of(tuned_ci),
        drop=Score.of(drop),
        by_skill=by_skill,
        verdict=forgetting_verdict(base_ci.estimate, tuned_ci.estimate, drop, by_skill),
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


# ---- the distribution shift on the base model's own answers ----------------------------------


class DistributionShift(BaseModel):
    n: int = Field(description="general prompts the base answered")
    tokens: int = Field(description="answer tokens the measures average over")
    kl: Score = Field(description="per-token KL(base ‖ tuned) on the base's own answers, nats")
    extra_nll: Score = Field(description="the tuned model's NLL minus the base's on those answers, nats per token")
    by_skill: dict[str, dict[str, float]] = Field(description="skill → {'kl', 'extra_nll'} per-token means")
    verdict: str
    seconds: float


def base_answers(
    generator, name: str = "general", *, per_skill: int | None = None, log=None
) -> list[tuple[str, HeldoutExample]]:
    """(skill, HeldoutExample) for each prompt of a set, its reference the base model's greedy answer.

    The answers come from `tunery.data.prompt_sets.base_answers`: generated once per base model,
    then cached, so every later comparison on that base costs forward passes only.
    """
    return [
        (
            row["skill"],
            HeldoutExample(prompt=row["messages"], reference=row["answer"], where=f"{name}.jsonl:{row['line']}"),
        )
        for row in prompt_sets.base_answers(
            generator, name, per_skill=per_skill, log=(lambda line: log(f"forgetting: {line}")) if log else None
        )
        if row["answer"]  # an empty answer has no tokens to compare
    ]


def distribution_verdict(kl, extra_nll, by_skill: dict[str, dict[str, float]]) -> str:
    """One sentence on the distribution shift, naming the skill that moved most.

    >>> from tunery.eval.stats import Interval
    >>> distribution_verdict(Interval(0.02, 0.015, 0.025), Interval(0.03, 0.02, 0.04),
    ...                      {"code": {"kl": 0.05, "extra_nll": 0.08}, "facts": {"kl": 0.01, "extra_nll": 0.0}})
    "on the base model's own answers to general prompts, the tuned model is 0.020 nats/token from the base (KL, CI 0.015..0.025) and finds them 0.030 nats/token less likely (CI 0.020..0.040); moved most: code (KL 0.050)"
    """
    likely = "less" if extra_nll.estimate >= 0 else "more"
    moved = max(by_skill, key=lambda skill: by_skill[skill]["kl"])
    return (
        f"on the base model's own answers to general prompts, the tuned model is {kl.estimate:.3f} nats/token "
        f"from the base (KL, CI {kl.low:.3f}..{kl.high:.3f}) and finds them {abs(extra_nll.estimate):.3f} "
        f"nats/token {likely} likely (CI {extra_nll.low:.3f}..{extra_nll.high:.3f}); "
        f"moved most: {moved} (KL {by_skill[moved]['kl']:.3f})"
    )


def distribution_shift(base, tuned, *, per_skill: int | None = None, log=None) -> DistributionShift:
    """KL(base ‖ tuned) and the extra NLL on the base's own answers to the bundled general prompts.

    Args:
        base, tuned: (generator, adapter name or None) pairs; both may share one generator.
        per_skill: only the first N prompts of each skill (None: all 310).
    """
    import time

    import torch

    from tunery.eval.loss import reference_batches, reference_logits

    started = time.perf_counter()
    (base_generator, base_adapter), (tuned_generator, tuned_adapter) = base, tuned
    answered = base_answers(base_generator, per_skill=per_skill, log=log)
    skills, items = [s for s, _ in answered], [item for _, item in answered]
    if log:
        log(f"forgetting: KL of the tuned model from the base on {len(items)} of the base's answers")
    kl_sums, nll_sums, counts = [0.0] * len(items), [0.0] * len(items), [0] * len(items)
    device = base_generator.device
    for batch in reference_batches(base_generator.tokenizer, items, batch_size=8, device=device):
        with base_generator.use_adapter(base_adapter):
            base_logp = torch.log_softmax(reference_logits(base_generator.model, batch, device), dim=-1)
        with tuned_generator.use_adapter(tuned_adapter):
            tuned_logp = torch.log_softmax(reference_logits(tuned_generator.model, batch, device), dim=-1)
        kl = (base_logp.exp() * (base_logp - tuned_logp)).sum(-1)  # per position, over the vocabulary
        targets = batch.targets.unsqueeze(-1)
        extra = (base_logp.gather(-1, targets) - tuned_logp.gather(-1, targets)).squeeze(-1)
        for row, i in enumerate(batch.chunk):
            weights = batch.weights[row].float()
            kl_sums[i], nll_sums[i] = float((kl[row] * weights).sum()), float((extra[row] * weights).sum())
            counts[i] = int(weights.sum())
    kept = [i for i in range(len(items)) if counts[i]]
    per_token = lambda sums, idx: [sums[i] / counts[i] for i in idx]  # noqa: E731
    weights = [counts[i] for i in kept]
    kl_ci = bootstrap_ci(per_token(kl_sums, kept), weights=weights)
    nll_ci = bootstrap_ci(per_token(nll_sums, kept), weights=weights)
    by_skill = {}
    for skill in dict.fromkeys(skills):
        mine = [i for i in kept if skills[i] == skill]
        tokens = sum(counts[i] for i in mine)
        by_skill[skill] = {
            "kl": sum(kl_sums[i] for i in mine) / tokens,
            "extra_nll": sum(nll_sums[i] for i in mine) / tokens,
        }
    return DistributionShift(
        n=len(kept),
        tokens=sum(weights),
        kl=Score.of(kl_ci),
        extra_nll=Score.of(nll_ci),
        by_skill=by_skill,
        verdict=distribution_verdict(kl_ci, nll_ci, by_skill),
        seconds=round(time.perf_counter() - started, 2),
    )
