"""Did a run learn? Its test accuracy against that of a classifier that learned nothing.

A network still on the loss plateau of early training names one class, or a few, for almost
every image, and such a network is as shift-consistent as can be: both shifted copies of an image
get the same uninformed answer. Its consistency then says nothing about its design, so the engine
marks a design point with such a run infeasible (off the front, avoided by the samplers) and the
report leaves those runs' consistency out of every mean.

The test is one-sided and exact: the number of correct answers against a binomial draw at the
rate of always naming the test set's most frequent class (no answer that ignores the image does
better on average), at level `LEARNED_ALPHA`. With 1000 test images of ten balanced classes a run
must reach 13.1 % to count as learned.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the verdict is plain arithmetic
    import torch

#: The p-value below which a run's accuracy counts as above chance.
LEARNED_ALPHA = 1e-3
#: The Optuna constraint a trial gets: how many of its seeds did not learn (feasible at 0).
AT_CHANCE_CONSTRAINT = "seeds_at_chance<=0"


def chance_accuracy(labels: torch.Tensor) -> float:
    """% of `labels` in their most frequent class: what always naming that class scores."""
    if labels.numel() == 0:
        raise ValueError("labels must hold at least one label to define chance")
    return 100.0 * labels.flatten().long().bincount().max().item() / labels.numel()


def binomial_tail(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, rate), summed in log space: no overflow."""
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in 0..trials={trials}, got {successes}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    if successes == 0 or rate == 1.0:
        return 1.0
    if rate == 0.0:
        return 0.0
    log_p, log_q = math.log(rate), math.log1p(-rate)
    log_terms = [
        math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
        + k * log_p + (trials - k) * log_q
        for k in range(successes, trials + 1)
    ]
    peak = max(log_terms)
    return min(1.0, math.exp(peak) * math.fsum(math.exp(t - peak) for t in log_terms))


def learned(accuracy: float, n_test: int, chance: float) -> bool:
    """Whether `accuracy` (%) on `n_test` images beats `chance` (%) at level LEARNED_ALPHA."""
    if n_test < 1:
        raise ValueError(f"n_test must be >= 1, got {n_test}")
    correct = round(accuracy * n_test / 100)
    return binomial_tail(correct, n_test, chance / 100) < LEARNED_ALPHA
