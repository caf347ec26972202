"""seed_statistics.py: IQM and its bootstrap interval on inputs worked out by hand."""

import numpy as np
import pytest

from seed_statistics import aggregate, bootstrap_ci, iqm, iqm_weights


def test_iqm_of_four_is_the_mean_of_the_middle_two():
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)
    assert iqm([4, 1, 3, 2]) == pytest.approx(2.5)  # order does not matter


def test_iqm_of_eight_drops_two_at_each_end():
    scores = [0.9, 0.1, 0.5, 1.0, 0.7, 0.3, 0.0, 0.8]
    # sorted: 0.0 0.1 | 0.3 0.5 0.7 0.8 | 0.9 1.0
    assert iqm(scores) == pytest.approx((0.3 + 0.5 + 0.7 + 0.8) / 4)


def test_iqm_of_five_weighs_the_quartile_scores_fractionally():
    # Five scores take fifths of [0, 1]; the middle half [0.25, 0.75] covers 0.15 of the second,
    # all 0.2 of the third and 0.15 of the fourth: weights 0.3, 0.4, 0.3 after dividing by 0.5.
    np.testing.assert_allclose(iqm_weights(5), [0.0, 0.3, 0.4, 0.3, 0.0], atol=1e-12)
    assert iqm([1.0, 0.1, 0.6, 0.9, 0.5]) == pytest.approx(0.3 * 0.5 + 0.4 * 0.6 + 0.3 * 0.9)  # 0.66
    # scipy.stats.trim_mean(x, 0.25) would drop one score at each end and give (0.5 + 0.6 + 0.9) / 3.
    assert iqm([1.0, 0.1, 0.6, 0.9, 0.5]) != pytest.approx((0.5 + 0.6 + 0.9) / 3)


@pytest.mark.parametrize("n", range(1, 13))
def test_iqm_weights_sum_to_one_and_are_symmetric(n):
    weights = iqm_weights(n)
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, weights[::-1], atol=1e-12)
    assert iqm([0.7] * n) == pytest.approx(0.7)


def test_bootstrap_of_identical_scores_collapses_to_them():
    low, high = bootstrap_ci([0.95, 0.95, 0.95, 0.95, 0.95])
    assert low == pytest.approx(0.95) and high == pytest.approx(0.95)


def test_bootstrap_is_reproducible_and_contains_the_iqm():
    scores = [0.62, 0.98, 0.85, 1.0, 0.71, 0.93, 0.88]
    first = bootstrap_ci(scores)
    assert bootstrap_ci(scores) == first  # same fixed seed, same interval, bit for bit
    low, high = first
    assert low < iqm(scores) < high
    assert min(scores) <= low and high <= max(scores)
    assert bootstrap_ci(scores, seed=1) != first  # the seed is what fixes it


def test_aggregate_reports_iqm_interval_min_mean():
    result = aggregate([1.0, 0.99, 0.98])
    assert result["n_runs"] == 3
    assert result["iqm"] == pytest.approx(0.99)  # n = 3: weights 1/6, 2/3, 1/6
    assert result["min"] == pytest.approx(0.98) and result["mean"] == pytest.approx(0.99)
    assert result["iqm_ci95"][0] <= result["iqm"] <= result["iqm_ci95"][1]
    assert result["bootstrap"]["resamples"] == 10_000 and "quantile" in result["iqm_definition"]


@pytest.mark.parametrize("scores", [[], [0.5, float("nan")], [[0.1, 0.2]]])
def test_bad_scores_are_refused(scores):
    with pytest.raises(ValueError):
        iqm(scores)
