"""Which configurations off the Pareto front no configuration on it clearly beats.

The front is computed on means over a few seeds, so a configuration just off it may be no worse
within the seeds' noise: the front's order among close configurations is partly luck. A front
configuration clearly beats another where it is at least as good on every objective's mean,
and ahead on one by a difference whose 95 % interval excludes zero (paired by seed, as the
report's answers are: `report_stats.paired_difference`). A feasible configuration off the front
that none clearly beats is near the front: the study cannot tell it from the front's members,
and more seeds would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ablate.report_stats import paired_difference
from ablate.report_table import CONFIG_KEY
from ablate.spec import DETERMINISTIC_METRICS, Objective


def near_front(
    configs: pd.DataFrame, runs: pd.DataFrame, objectives: Sequence[Objective]
) -> pd.Series:
    """Per row of `configs` (marked by `report.mark_front`: `pareto`, `feasible`), whether it is
    feasible, measured on every objective, off the front, and clearly beaten by none of the
    front's configurations; `runs` are the runs `configs` aggregates (one per configuration and
    seed; without a `seed` column, compared over the runs)."""
    near = pd.Series(False, index=configs.index, name="near_front")
    front = configs[configs["pareto"]]
    if front.empty:
        return near
    means = configs[[f"{objective.metric}_mean" for objective in objectives]]
    candidates = configs["feasible"] & ~configs["pareto"] & np.isfinite(means).all(axis=1)
    runs_of = dict(iter(runs.groupby(CONFIG_KEY, sort=False)))
    for index, config in configs[candidates].iterrows():
        near[index] = not any(
            _clearly_beats(runs_of[leader[CONFIG_KEY]], runs_of[config[CONFIG_KEY]], objectives)
            for _, leader in front.iterrows()
            if _no_worse_on_means(leader, config, objectives)
        )
    return near


def _no_worse_on_means(
    leader: pd.Series, other: pd.Series, objectives: Sequence[Objective]
) -> bool:
    """Whether `leader`'s mean is at least as good as `other`'s on every objective."""
    return all(
        (leader[column] >= other[column])
        if objective.direction == "maximize"
        else (leader[column] <= other[column])
        for objective in objectives
        for column in [f"{objective.metric}_mean"]
    )


def _clearly_beats(
    leader: pd.DataFrame, other: pd.DataFrame, objectives: Sequence[Objective]
) -> bool:
    """Whether `leader`'s runs are ahead of `other`'s on some objective by a difference (paired
    by seed) whose interval excludes zero, or exactly ahead on a measure every run repeats."""
    both = pd.concat([leader, other], ignore_index=True)
    mine = pd.Series([True] * len(leader) + [False] * len(other))
    seeds = both[["seed"]] if "seed" in both else None  # none: Welch over the runs
    for objective in objectives:
        values = pd.to_numeric(both[objective.metric], errors="coerce")
        diff = paired_difference(values[mine], values[~mine], seeds,
                                 objective.metric in DETERMINISTIC_METRICS)  # fmt: skip
        if diff.clearly_ahead(objective.direction == "maximize"):
            return True
    return False
