"""Bootstrap intervals: exact where the answer is known, close to theory where it is not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunery.eval.stats import bootstrap_ci, paired_bootstrap_diff


def test_a_constant_sample_has_a_zero_width_interval():
    for value in (0.0, 1.0, 0.1):
        ci = bootstrap_ci([value] * 25)
        assert (ci.estimate, ci.low, ci.high) == pytest.approx((value, value, value))


def test_percentile_interval_by_hand():
    """Scores [0, 0, 0, 1]: a resample of 4 draws holds K ones with K ~ Binomial(4, 1/4), so its mean
    is K/4 with P(K = 0..4) = 81, 108, 54, 12, 1 (/256), a CDF of 0.316, 0.738, 0.949, 0.996, 1.
    The 2.5th percentile is therefore 0 (the CDF passes 0.025 at K = 0) and the 97.5th is 0.75
    (0.949 < 0.975 <= 0.996). With 2000 resamples about 100 land at K >= 3 and 8 at K = 4, far
    from the 50 it would take to move either quantile. The estimate is the plain mean, 1/4.
    Pairing: a − b = [1,1,0,1] − [1,1,0,0] = [0, 0, 0, 1], so the same interval."""

    def triple(ci):
        return (ci.estimate, ci.low, ci.high)

    assert triple(bootstrap_ci([0.0, 0.0, 0.0, 1.0])) == (0.25, 0.0, 0.75)
    assert triple(paired_bootstrap_diff([1, 1, 0, 1], [1, 1, 0, 0])) == (0.25, 0.0, 0.75)
    # An 80% interval cuts at 10% and 90%: 0 (0.316 >= 0.10) and 0.5 (0.738 < 0.90 <= 0.949).
    assert triple(bootstrap_ci([0.0, 0.0, 0.0, 1.0], confidence=0.8)) == (0.25, 0.0, 0.5)


def test_same_seed_same_interval_and_the_interval_holds_the_mean():
    values = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    first, again = bootstrap_ci(values), bootstrap_ci(values)
    assert first == again
    assert first.estimate == 0.6
    assert 0 <= first.low < 0.6 < first.high <= 1
    # The seed drives the resampling (a continuous sample, so the quantiles are not lattice points).
    spread = [0.13, 0.52, 0.97, 0.31, 0.78, 0.05, 0.66, 0.44]
    assert bootstrap_ci(spread, seed=1) != bootstrap_ci(spread, seed=0)


def test_bernoulli_interval_matches_the_normal_approximation():
    """400 scores with mean 0.7: the normal interval is 0.7 ± 1.96·√(0.7·0.3/400) = 0.7 ± 0.0449.
    The percentile bootstrap should land within about 0.01 of both ends."""
    values = [1.0] * 280 + [0.0] * 120
    ci = bootstrap_ci(values)
    half = 1.96 * math.sqrt(0.7 * 0.3 / 400)
    assert ci.low == pytest.approx(0.7 - half, abs=0.01)
    assert ci.high == pytest.approx(0.7 + half, abs=0.01)


def test_more_examples_give_a_narrower_interval():
    small = bootstrap_ci([1.0, 0.0] * 10)
    large = bootstrap_ci([1.0, 0.0] * 200)
    assert (large.high - large.low) < (small.high - small.low) / 3  # width shrinks like 1/√n: √20 ≈ 4.5


def test_weighted_mean_is_the_per_token_mean():
    """Losses 1.0 over 3 tokens and 3.0 over 1 token: (3·1 + 1·3) / 4 = 1.5 nats per token."""
    ci = bootstrap_ci([1.0, 3.0], weights=[3, 1])
    assert ci.estimate == 1.5
    assert 1.0 <= ci.low <= 1.5 <= ci.high <= 3.0


def test_identical_systems_differ_by_exactly_zero():
    scores = [1, 0, 1, 1, 0]
    ci = paired_bootstrap_diff(scores, scores)
    assert (ci.estimate, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert not ci.excludes_zero()


def test_pairing_sees_a_consistent_small_gain_that_separate_intervals_miss():
    """System a is right on every example b gets right, plus 8 more of 100. Separately the two
    intervals (about ±0.1 each) overlap; paired, every resample's difference is positive."""
    rng = np.random.default_rng(0)
    b = (rng.random(100) < 0.5).astype(float)
    a = b.copy()
    a[np.flatnonzero(b == 0)[:8]] = 1.0
    diff = paired_bootstrap_diff(a, b)
    assert diff.estimate == pytest.approx(0.08)
    assert diff.excludes_zero() and diff.low > 0
    ci_a, ci_b = bootstrap_ci(a), bootstrap_ci(b)
    assert ci_a.low < ci_b.high  # unpaired, the gain would look like noise


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], weights=[1.0])
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap_diff([1.0, 0.0], [1.0])
