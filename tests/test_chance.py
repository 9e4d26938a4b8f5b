"""Did a run learn: the exact binomial tail, the chance level of a test set, the verdict."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ablate.chance import LEARNED_ALPHA, binomial_tail, chance_accuracy, learned


def direct_tail(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) summed term by term, as the textbook writes it."""
    return sum(
        math.comb(trials, k) * rate**k * (1 - rate) ** (trials - k)
        for k in range(successes, trials + 1)
    )


@pytest.mark.parametrize("seed", range(5))
def test_binomial_tail_matches_the_direct_sum(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        trials = rng.randint(1, 120)
        successes, rate = rng.randint(0, trials), rng.uniform(0.01, 0.99)
        assert binomial_tail(successes, trials, rate) == pytest.approx(
            direct_tail(successes, trials, rate), rel=1e-9, abs=1e-300
        )


def test_binomial_tail_edges_and_large_counts() -> None:
    assert binomial_tail(0, 10, 0.3) == 1.0
    assert binomial_tail(3, 10, 1.0) == 1.0
    assert binomial_tail(3, 10, 0.0) == 0.0
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    # 10 000 trials: no overflow, and the tail falls through 1/2 around the mean
    assert binomial_tail(1000, 10_000, 0.1) == pytest.approx(0.5, abs=0.02)
    assert 0.0 <= binomial_tail(2000, 10_000, 0.1) < 1e-100


@pytest.mark.parametrize(
    ("successes", "trials", "rate", "field"),
    [(-1, 5, 0.5, "successes"), (6, 5, 0.5, "successes"), (2, 5, 1.5, "rate")],
)
def test_binomial_tail_rejects_bad_arguments(successes, trials, rate, field) -> None:
    with pytest.raises(ValueError, match=field):
        binomial_tail(successes, trials, rate)


def test_chance_is_the_share_of_the_most_frequent_class() -> None:
    labels = torch.tensor([0, 1, 1, 2, 1, 3, 3, 1])
    assert chance_accuracy(labels) == 50.0
    assert chance_accuracy(torch.arange(10).repeat(7)) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="at least one label"):
        chance_accuracy(torch.tensor([], dtype=torch.long))


def test_chance_counts_every_label_of_a_batch_of_any_shape() -> None:
    """Labels kept as a 2×4 grid are the same eight labels: chance is 4 of 8, 50 %, not a
    share of the grid's two rows."""
    labels = torch.tensor([0, 1, 1, 2, 1, 3, 3, 1])
    assert chance_accuracy(labels.reshape(2, 4)) == chance_accuracy(labels) == 50.0


def test_binomial_tail_is_a_probability_even_where_its_terms_round_up() -> None:
    """P(X >= 1) at a rate of 0.5 over 10 trials is 1023/1024. Near 1 the summed terms round
    past it (at a rate of 0.3 over 88 trials, for one): a p-value is held to 1 at most."""
    assert binomial_tail(1, 10, 0.5) == pytest.approx(1023 / 1024)
    assert all(binomial_tail(1, n, 0.3) <= 1.0 for n in range(1, 200))


def test_learned_is_the_first_accuracy_whose_tail_is_below_alpha() -> None:
    """1000 test images of ten balanced classes: 13.1 % is the first accuracy that counts."""
    assert not learned(13.0, 1000, 10.0)
    assert learned(13.1, 1000, 10.0)
    assert binomial_tail(131, 1000, 0.1) < LEARNED_ALPHA <= binomial_tail(130, 1000, 0.1)
    # as a run measures it, a float32 mean: 131 hits of 1000 read 13.0999997..., 131 images
    assert learned(100.0 * torch.tensor([1.0] * 131 + [0.0] * 869).mean().item(), 1000, 10.0)
    # a network that names one class for every image scores chance exactly
    assert not learned(10.0, 1000, 10.0)
    # an imbalanced test set raises the bar: 30 % is chance when 30 % of images are one class
    assert learned(30.0, 1000, 10.0) and not learned(30.0, 1000, 30.0)
    with pytest.raises(ValueError, match="n_test"):
        learned(50.0, 0, 10.0)
