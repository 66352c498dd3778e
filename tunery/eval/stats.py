"""Confidence intervals by bootstrap: for one system's mean score, and for a paired difference.

Percentile bootstrap (Efron & Tibshirani 1993, ch. 13): resample the examples with replacement,
recompute the statistic, take the 2.5th and 97.5th percentiles. The seed is fixed, so the same
scores always give the same interval. The paired version resamples *examples*, keeping both
systems' scores on an example together; that removes the per-example difficulty both systems
share, which makes the interval on a difference much tighter than two separate intervals suggest.

Hand-written with numpy rather than `scipy.stats.bootstrap`: scipy is not a tunery dependency, and
its default BCa method returns NaN for the constant samples (all correct, all wrong) that small
evaluations produce all the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def bootstrap_ci(
    values: Sequence[float],
    *,
    weights: Sequence[float] | None = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The mean of `values` (weighted, if `weights` are given) and its percentile bootstrap interval.

    With weights the statistic is Σwᵢvᵢ / Σwᵢ over each resample: the per-token mean loss, say,
    where each example contributes its token count as weight.

    Raises:
        ValueError: no values, mismatched weights, or a confidence outside (0, 1).

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    Interval(estimate=1.0, low=1.0, high=1.0)
    >>> bootstrap_ci([2.0, 4.0], weights=[3, 1]).estimate   # (3·2 + 1·4) / 4
    2.5
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D sequence of values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), not {confidence}")
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != v.shape or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per value, and not all zero")
    estimate = float((w * v).sum() / w.sum())
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, v.size, size=(n_resamples, v.size))
    resampled_w = w[rows].sum(axis=1)
    # A resample that drew only zero-weight examples has no mean; it carries no information.
    keep = resampled_w > 0
    stats = (w * v)[rows].sum(axis=1)[keep] / resampled_w[keep]
    alpha = 1 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    # Rounding in the sums can put a constant sample's bounds a hair off the estimate.
    return Interval(estimate, min(float(low), estimate), max(float(high), estimate))


def paired_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """Mean of a − b over the same examples, with a paired bootstrap interval.

    Resampling examples and taking the mean of the per-example differences is exactly resampling
    the pairs, so this is `bootstrap_ci` on aᵢ − bᵢ.

    Raises:
        ValueError: the two systems were scored on different numbers of examples.

    >>> paired_bootstrap_diff([1, 1, 0, 1], [0, 1, 0, 0]).estimate   # (1 + 0 + 0 + 1) / 4
    0.5
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same examples: {len(a)} vs {len(b)} scores")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return bootstrap_ci(diff, confidence=confidence, n_resamples=n_resamples, seed=seed)
