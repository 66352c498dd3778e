"""Which metric answers "was fine-tuning worth it?", and the verdict in words.

A task usually gets several graders (json_valid and json_equal, exact and normalized), and they can
tell different stories: a JSON task's few-shot baseline may produce valid JSON every time (json_valid
1.00, like the tuned model) while getting the values right only half the time (json_equal 0.57 against
0.99). Taking the first metric of the table would then call the systems equal. So the deciding metric is:

1. the one the user names (`metric`), whatever the scores;
2. otherwise the strictest metric that separates the systems, in the order of `STRICTNESS`: the
   user's own graders, then equality before validity, exact before normalized, before overlap and
   similarity. A metric on which every compared system scores the same cannot decide anything and is
   passed over.

The verdict is worked out on every metric too; when they point different ways, `disagreement` says so,
naming each metric, so a reader never learns of it only from the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunery.eval.stats import Interval, paired_bootstrap_diff

BASELINE_WORDS = {"zero_shot": "zero-shot prompting", "few_shot": "few-shot prompting"}

# Strictest first. A grader the user wrote (module:function, or an OpenAI grader object such as the one
# a reinforcement fine-tuning run was trained against) is their own definition of right, so it comes
# before every built-in one; the judge is a model's opinion of equality, after the literal equalities.
STRICTNESS = [
    "exact",
    "json_equal",
    "regex",
    "normalized",
    "judge",
    "token_f1",
    "rouge_l",
    "embedding",
    "json_valid",
]


def strictness_rank(metric: str) -> int:
    """Position of `metric` in the strictness order; the user's own graders (any other name) first."""
    return STRICTNESS.index(metric) if metric in STRICTNESS else -1


@dataclass(frozen=True)
class MetricChoice:
    metric: str
    reason: str


def choose_metric(means: Mapping[str, Mapping[str, float]], metrics: Sequence[str], named: str | None) -> MetricChoice:
    """The metric the verdict is about, and why (a sentence for the report).

    Args:
        means: system → metric → mean score, for every compared system.
        metrics: the metrics that were graded.
        named: the metric the user asked for, or None.

    >>> means = {"few_shot": {"json_valid": 1.0, "json_equal": 0.57}, "tuned": {"json_valid": 1.0, "json_equal": 0.99}}
    >>> choose_metric(means, ["json_valid", "json_equal"], None).metric
    'json_equal'
    >>> choose_metric(means, ["json_valid", "json_equal"], "json_valid").reason
    'json_valid decided: named with --metric'
    """
    if named is not None:
        return MetricChoice(named, f"{named} decided: named with --metric")
    ranked = sorted(metrics, key=strictness_rank)
    tied = [m for m in ranked if len({round(scores[m], 9) for scores in means.values()}) == 1]
    separating = [m for m in ranked if m not in tied]
    if not separating:
        return MetricChoice(
            ranked[0], f"{ranked[0]} decided: the strictest metric of the task; every system scores the same on all"
        )
    metric = separating[0]
    passed = [m for m in ranked[: ranked.index(metric)] if m in tied]
    reason = f"{metric} decided: the strictest metric of the task"
    if passed:
        reason += f" that separates the systems ({', '.join(passed)}: every system scores the same)"
    elif len(ranked) > 1:
        reason += f" (stricter than {', '.join(m for m in ranked if m != metric)})"
    return MetricChoice(metric, reason)


def pick_baseline(means: Mapping[str, Mapping[str, float]], metric: str) -> str:
    """The better prompting system on `metric` (few-shot on a tie: it is the stronger habit to beat)."""
    return max(BASELINE_WORDS.keys() & means.keys(), key=lambda n: (means[n][metric], n == "few_shot"))


def outcome(diff: Interval) -> str:
    """'better', 'worse' or 'within noise', for tuned − baseline."""
    return "better" if diff.low > 0 else "worse" if diff.high < 0 else "within noise"


def compare_verdict(metric: str, baseline: str, diff: Interval) -> str:
    """The plain-language verdict on tuned − baseline.

    The first two forms begin with exactly the issue's wording; the metric follows, since "by 0.62"
    means nothing without it. When prompting is clearly *better*, the third form says so.

    >>> compare_verdict("exact", "few_shot", Interval(0.62, 0.5, 0.73))
    'fine-tuning beats few-shot prompting by 0.62 (CI 0.50..0.73) on exact'
    >>> compare_verdict("exact", "few_shot", Interval(0.03, -0.05, 0.12))
    'prompting is enough here: the difference is within noise (+0.03 on exact, CI -0.05..0.12)'
    >>> compare_verdict("token_f1", "zero_shot", Interval(-0.2, -0.3, -0.1))
    'prompting is enough here, and better: zero-shot prompting beats fine-tuning by 0.20 (CI 0.10..0.30) on token_f1'
    """
    words = BASELINE_WORDS[baseline]
    if diff.low > 0:
        return f"fine-tuning beats {words} by {diff.estimate:.2f} (CI {diff.low:.2f}..{diff.high:.2f}) on {metric}"
    if diff.high < 0:
        return (
            f"prompting is enough here, and better: {words} beats fine-tuning by {-diff.estimate:.2f} "
            f"(CI {-diff.high:.2f}..{-diff.low:.2f}) on {metric}"
        )
    return (
        f"prompting is enough here: the difference is within noise "
        f"({diff.estimate:+.2f} on {metric}, CI {diff.low:.2f}..{diff.high:.2f})"
    )


@dataclass(frozen=True)
class Decision:
    metric: str
    reason: str
    baseline: str
    difference: Interval
    verdict: str
    differences: dict[str, Interval]  # tuned − baseline on every metric (the same baseline)
    disagreement: str | None


def decide(scores: Mapping[str, Mapping[str, Sequence[float]]], metrics: Sequence[str], named: str | None) -> Decision:
    """The whole verdict from per-example scores.

    Args:
        scores: system → metric → one score per held-out example (same examples, same order); the
            systems are "tuned" and one or both of "zero_shot", "few_shot".
        metrics: the graded metrics, in the table's order.
        named: the metric the user named, or None to choose one.
    """
    means = {system: {m: sum(v) / len(v) for m, v in by_metric.items()} for system, by_metric in scores.items()}
    choice = choose_metric(means, metrics, named)
    baseline = pick_baseline(means, choice.metric)
    differences = {m: paired_bootstrap_diff(scores["tuned"][m], scores[baseline][m]) for m in metrics}
    outcomes = {m: outcome(d) for m, d in differences.items()}
    disagreement = None
    if len(set(outcomes.values())) > 1:
        words = BASELINE_WORDS[baseline]
        disagreement = "the metrics disagree: " + "; ".join(
            f"on {m} fine-tuning is {_said(outcomes[m], words)} ({differences[m].estimate:+.2f})" for m in metrics
        )
    return Decision(
        metric=choice.metric,
        reason=choice.reason,
        baseline=baseline,
        difference=differences[choice.metric],
        verdict=compare_verdict(choice.metric, baseline, differences[choice.metric]),
        differences=differences,
        disagreement=disagreement,
    )


def _said(result: str, words: str) -> str:
    return {"better": f"better than {words}", "worse": f"worse than {words}"}.get(result, f"level with {words}")
