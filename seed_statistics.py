"""Statistics over training seeds, as "Deep RL at the Edge of the Statistical Precipice" (Agarwal et
al., NeurIPS 2021) recommends: report the interquartile mean (IQM) of the per-run scores with a
bootstrap confidence interval over runs, not the best seed or a bare mean; and a policy against its
base on the same episodes, as a paired difference (`paired_difference`).

A "run" here is one residual checkpoint (one training seed) and its score the success rate over
the same evaluation episodes. With three to ten runs the median throws away most of the data and
the mean follows one bad (or lucky) seed; the IQM sits between the two.

    from seed_statistics import aggregate, iqm, bootstrap_ci
    aggregate([0.98, 1.0, 0.99, 0.95])   # {"iqm": ..., "iqm_ci95": [lo, hi], "min": ..., "mean": ..., ...}

Pure numpy; imported by eval_policy.py and the tests, it imports no script.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
"""Fixed generator seed of the bootstrap, so that the same scores always print the same interval."""

IQM_DEFINITION = (
    "mean of the middle 50 % of the sorted scores: 2 x the integral of the empirical quantile function "
    "over [0.25, 0.75], so the scores at the quartiles count with fractional weights when the number of "
    "runs is not a multiple of 4 (scipy.stats.trim_mean(x, 0.25), used by rliable, drops whole scores instead; "
    "the two agree when it is a multiple of 4)"
)


def iqm_weights(n: int) -> np.ndarray:
    """Weights of the sorted scores in the IQM of `n` scores (they sum to 1).

    The empirical quantile function of n sorted scores x_0 <= ... <= x_{n-1} is the step function
    Q(u) = x_i on [i/n, (i+1)/n). The IQM is its mean over the middle half, 2 * integral of Q over
    [0.25, 0.75], so score i weighs 2 * |[i/n, (i+1)/n) intersected with [0.25, 0.75]|. For n = 5:
    0, 0.3, 0.4, 0.3, 0; for n = 8: 0, 0, 0.25, 0.25, 0.25, 0.25, 0, 0."""
    if n < 1:
        raise ValueError("the IQM needs at least one score")
    low = np.arange(n) / n
    high = np.arange(1, n + 1) / n
    return 2.0 * np.clip(np.minimum(high, 0.75) - np.maximum(low, 0.25), 0.0, None)


def _checked(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty list of scores, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"scores must be finite numbers, got {values.tolist()}")
    return values


def iqm(scores: Sequence[float]) -> float:
    """Interquartile mean of `scores`, with fractional weights at the quartiles (see `iqm_weights`):
    iqm([1, 2, 3, 4]) = 2.5, iqm([1, 2, 3, 4, 5]) = 0.3 * 2 + 0.4 * 3 + 0.3 * 4 = 3."""
    values = _checked(scores)
    return float(np.sort(values) @ iqm_weights(values.size))


def bootstrap_ci(scores: Sequence[float], statistic: str = "iqm", confidence: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM (or the mean) of `scores` over runs: draw len(scores)
    runs with replacement `resamples` times, compute the statistic of each draw, and take the
    (1 - confidence) / 2 and (1 + confidence) / 2 quantiles. The generator is seeded, so the same
    scores give the same interval.

    With few runs the interval is only as good as the runs: n = 3 has just 10 distinct resamples,
    so read it as a rough range, which is still more honest than one seed's number."""
    values = _checked(scores)
    if statistic not in ("iqm", "mean"):
        raise ValueError(f"statistic must be 'iqm' or 'mean', got {statistic!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, values.size, size=(resamples, values.size))]
    if statistic == "iqm":
        # All draws have n scores, so they share the weights: one sort and one matrix product.
        estimates = np.sort(draws, axis=1) @ iqm_weights(values.size)
    else:
        estimates = draws.mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(successes: Sequence[bool], base_successes: Sequence[bool], resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> dict:
    """Success rate of a policy minus its base's on the same episodes (entry i of each list is episode i),
    with a 95 % percentile bootstrap interval over episodes: pairs are resampled together, so the
    episodes that both policies solve (or both fail) narrow the interval, as they should."""
    ours, base = np.asarray(successes, dtype=bool), np.asarray(base_successes, dtype=bool)
    if ours.shape != base.shape or ours.ndim != 1 or ours.size == 0:
        raise ValueError(f"expected two equally long lists of episode successes, got shapes {ours.shape} and {base.shape}")
    low, high = bootstrap_ci(ours.astype(np.float64) - base, "mean", 0.95, resamples, seed)
    return {
        "difference": float(ours.mean() - base.mean()),
        "difference_ci95": [low, high],
        "gained": int((ours & ~base).sum()),
        "lost": int((~ours & base).sum()),
        "base_successes": int(base.sum()),
        "n_episodes": int(ours.size),
        "bootstrap": {"method": "percentile, episodes resampled with replacement in pairs", "resamples": resamples, "seed": seed},
    }


def aggregate(scores: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """IQM with its 95 % bootstrap interval, minimum and mean of per-run scores, with the settings
    that reproduce them (a plain dict for JSON)."""
    values = _checked(scores)
    low, high = bootstrap_ci(values, "iqm", 0.95, resamples, seed)
    return {
        "n_runs": int(values.size),
        "iqm": iqm(values),
        "iqm_ci95": [low, high],
        "min": float(values.min()),
        "mean": float(values.mean()),
        "bootstrap": {"method": "percentile, runs resampled with replacement", "resamples": resamples, "seed": seed},
        "iqm_definition": IQM_DEFINITION,
    }
