"""The report's intervals: Student-t for a mean over seeds, and for a difference of means over
the seeds' paired differences (Welch over runs where the seeds do not pair).

Seeds are few (often 1–5), so a normal interval would be far too narrow; the t quantile makes the
width honest. One observation, or observations that tie, show no spread to bound anything
with, so their interval is NaN rather than of zero width; only a measure every run of a
configuration repeats, such as its FLOPs, is exact (zero width), from one run on.

Runs of one seed share their initial weights (a converted network keeps its baseline's) and the
order of their batches, so the runs of the configurations a group pools are not independent
samples: the seed is. A difference taken within each seed cancels the seed's luck, and the
seeds' differences are the samples (:func:`paired_difference`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import mpmath
import numpy as np
import pandas as pd

from ablate.spec import DETERMINISTIC_METRICS, METRIC_BOUNDS

CONFIDENCE = 0.95
#: The column of `blocks` that names a run's seed: the independent sample.
SEED = "seed"


@lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (p in (0.5, 1), df > 0).

    Cached: a report asks for the same few (p, n-1) pairs hundreds of times.
    """
    if not 0.5 < p < 1:
        raise ValueError(f"p={p!r} must lie in (0.5, 1)")
    if not df > 0:
        raise ValueError(f"df={df!r} must be positive")

    def cdf_minus_p(t: float) -> float:
        return 1 - 0.5 * mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True) - p

    # Start from the first Cornish-Fisher term, close enough for the secant to converge.
    z = NormalDist().inv_cdf(p)
    return float(mpmath.findroot(cdf_minus_p, z + (z**3 + z) / (4 * df)))


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def mean_interval(
    values: Sequence[float] | np.ndarray, deterministic: bool = False
) -> tuple[float, float]:
    """The 95 % t-interval `(low, high)` of the mean of `values`, NaN entries dropped.

    As for a difference (:func:`welch_difference`): a `deterministic` measure's values, tied,
    give the mean exactly, from one value on; otherwise one value, or values that tie, give
    NaN bounds. Usable directly as a seaborn `errorbar=` callable.
    """
    finite = _finite(values)
    n = finite.size
    if n == 0 or (n == 1 and not deterministic):
        return (math.nan, math.nan)
    mean = float(finite.mean())
    spread = float(finite.std(ddof=1)) if n > 1 else 0.0
    if spread == 0:
        return (mean, mean) if deterministic else (math.nan, math.nan)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * spread / math.sqrt(n)
    return (mean - half, mean + half)


def metric_interval(values: Sequence[float] | np.ndarray, metric: str) -> tuple[float, float]:
    """:func:`mean_interval` of a metric's values, exact for a `DETERMINISTIC_METRICS` one and
    cut to its range (`METRIC_BOUNDS`): a bound past 0 or 100 % says nothing more."""
    low, high = mean_interval(values, metric in DETERMINISTIC_METRICS)
    if metric in METRIC_BOUNDS:
        low, high = (float(bound) for bound in np.clip([low, high], *METRIC_BOUNDS[metric]))
    return low, high


@dataclass(frozen=True)
class Difference:
    """`treated` mean minus `control` mean with its 95 % interval, the two means, the runs each
    side counted, and the seeds the interval paired them by (0: Welch over runs)."""

    estimate: float
    low: float
    high: float
    n_treated: int
    n_control: int
    treated_mean: float
    control_mean: float
    seeds: int = 0

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def clearly_ahead(self, higher: bool) -> bool:
        """Whether treated is clearly ahead of control: the interval excludes zero on the side
        where better is `higher` (above zero) or not (below zero)."""
        return self.excludes_zero and (self.estimate > 0) == higher


def welch_difference(
    treated: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    deterministic: bool = False,
) -> Difference:
    """Difference of means with the Welch–Satterthwaite t-interval (unequal variances).

    NaN entries are dropped. Where the measure is `deterministic` (the same for every run of a
    configuration, such as its FLOPs) one run measures its configuration exactly, and the
    bounds are not a t-interval but the exact range of the differences between a treated and
    a control value (the estimate itself where each side ties). Otherwise a side of one run
    gives a NaN interval (the data cannot bound the difference), and so do tied runs: a
    measure that varies by seed, tied, bounds nothing.
    """
    a, b = _finite(treated), _finite(control)
    sizes = (int(a.size), int(b.size))
    if a.size == 0 or b.size == 0:
        means = (float(a.mean()) if a.size else math.nan, float(b.mean()) if b.size else math.nan)
        return Difference(math.nan, math.nan, math.nan, *sizes, *means)
    means = (float(a.mean()), float(b.mean()))
    estimate = means[0] - means[1]
    if deterministic:
        # No seed noise to bound: a spread within a side is between its configurations, and
        # repeated seeds of one configuration are copies, not samples. The bounds are the exact
        # range of the differences between a treated and a control configuration.
        low, high = float(a.min() - b.max()), float(a.max() - b.min())
        if low == high:
            low = high = estimate
        return Difference(estimate, low, high, *sizes, *means)
    if a.size < 2 or b.size < 2:
        return Difference(estimate, math.nan, math.nan, *sizes, *means)
    # Each side's squared standard error, and its share of the Welch-Satterthwaite degrees of
    # freedom.
    sides = [(float(v.var(ddof=1)) / v.size, v.size - 1) for v in (a, b)]
    se = math.sqrt(sum(var for var, _ in sides))
    if se == 0:  # tied runs of a measure that varies by seed bound nothing
        return Difference(estimate, math.nan, math.nan, *sizes, *means)
    df = se**4 / sum(var**2 / dof for var, dof in sides)
    half = t_quantile(0.5 + CONFIDENCE / 2, df) * se
    return Difference(estimate, estimate - half, estimate + half, *sizes, *means)


def seed_means(values: pd.Series, blocks: pd.DataFrame) -> pd.Series:
    """The mean of `values` (per run, NaN and inf dropped) within each seed, seed-balanced:
    per block (a row of `blocks`: the run's seed, and the network or data it pairs within), the
    mean of its runs; per seed, the mean of its blocks. Indexed by seed."""
    finite = values.replace([np.inf, -np.inf], np.nan).dropna()
    block = _block_ids(blocks)
    seed_of_block = blocks[SEED].groupby(block).first()
    per_block = finite.groupby(block[finite.index]).mean()
    return per_block.groupby(seed_of_block[per_block.index]).mean()


def _block_ids(blocks: pd.DataFrame) -> pd.Series:
    """Per run, a number its block shares (a missing value, such as no data folder, a value)."""
    return blocks.groupby(list(blocks.columns), dropna=False).ngroup()


def paired_difference(
    treated: pd.Series,
    control: pd.Series,
    blocks: pd.DataFrame | None,
    deterministic: bool = False,
) -> Difference:
    """`treated` minus `control` (values per run) with a t-interval over the seeds' paired
    differences: per seed, its treated runs' mean minus its control runs' mean (each
    seed-balanced over the blocks both sides ran, :func:`seed_means`), and the seeds as samples.

    `blocks` holds, per run, its `seed` and the columns whose values are separate experiments
    (another network, other data): runs pair only within a block, and a seed's blocks are
    averaged, so the seed stays the sample. The means returned are the seeds' means of each
    side, so they differ by the estimate; the runs counted are those of the paired blocks.
    Where fewer than two seeds ran on both sides (or `blocks` is None), and for a
    `deterministic` measure (exact per configuration, no seed's luck to cancel), it is
    :func:`welch_difference` over the runs.
    """
    a = treated.replace([np.inf, -np.inf], np.nan).dropna()
    b = control.replace([np.inf, -np.inf], np.nan).dropna()
    if deterministic or blocks is None:
        return welch_difference(a, b, deterministic)
    block = _block_ids(blocks)
    paired = set(block[a.index]) & set(block[b.index])
    if blocks.loc[block.isin(paired), SEED].nunique() < 2:
        return welch_difference(a, b)
    a, b = (side[block[side.index].isin(paired)] for side in (a, b))
    sides = pd.DataFrame({"treated": seed_means(a, blocks), "control": seed_means(b, blocks)})
    per_seed = sides["treated"] - sides["control"]
    n = len(per_seed)
    estimate, spread = float(per_seed.mean()), float(per_seed.std(ddof=1))
    means = (float(sides["treated"].mean()), float(sides["control"].mean()))
    if spread == 0:  # every seed gave the same difference: that bounds nothing, as tied runs
        return Difference(estimate, math.nan, math.nan, a.size, b.size, *means, n)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * spread / math.sqrt(n)
    return Difference(estimate, estimate - half, estimate + half, a.size, b.size, *means, n)
