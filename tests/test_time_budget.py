"""TimeBudget: a sweep takes its items in order while the time left covers one more."""

import pytest

from kernels import time_budget
from kernels.time_budget import TimeBudget


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock that the test moves by hand."""
    now = [0.0]
    monkeypatch.setattr(time_budget.time, "monotonic", lambda: now[0])
    return now


def test_no_limit_runs_everything():
    budget = TimeBudget(None)
    assert list(budget.over(range(5))) == [0, 1, 2, 3, 4]
    assert budget.skipped == 0 and budget.note("cases") is None


def test_stops_before_an_item_that_would_overrun(clock):
    budget = TimeBudget(10.0)
    durations = {"a": 2.0, "b": 4.0, "c": 1.0, "d": 1.0, "e": 1.0}
    ran = []
    for item in budget.over(list(durations)):
        ran.append(item)
        clock[0] += durations[item]
    # After a, b, c (7 s spent, slowest 4 s) one more could end at 11 s: d is held back.
    assert ran == ["a", "b", "c"]
    assert budget.skipped == 2
    assert budget.note("cases") == "2 of 5 cases left out: the time budget of 10 s was spent"


def test_the_first_item_always_runs(clock):
    budget = TimeBudget(1e-9)
    ran = []
    for item in budget.over(["a", "b", "c"]):
        ran.append(item)
        clock[0] += 5.0
    assert ran == ["a"] and budget.skipped == 2


def test_an_item_that_fits_runs(clock):
    budget = TimeBudget(10.0)
    for _ in budget.over(list(range(5))):
        clock[0] += 2.0  # each item ends exactly at a multiple of 2 s: all five fit in 10 s
    assert budget.skipped == 0


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan")])
def test_a_budget_must_be_positive(seconds):
    with pytest.raises(ValueError, match=r"budget of .* s: expected a positive number"):
        TimeBudget(seconds)
