"""warm_in_parallel: items run once in spawned processes; failures and a deadline are
reported, never raised."""

import math
import os
import time
from pathlib import Path

from kernels.time_budget import TimeBudget
from kernels.warmup import default_jobs, warm_ahead, warm_in_parallel


def test_one_job_runs_nothing():
    assert warm_in_parallel(math.sqrt, [-1.0], 1) == []


def test_failures_are_reported_per_item():
    lines = warm_in_parallel(math.sqrt, [4.0, -1.0, 9.0], 2)
    assert lines == ["warm-up of -1.0: ValueError: math domain error"]


def test_items_not_started_by_the_deadline_are_left_to_the_sweep():
    lines = warm_in_parallel(time.sleep, [2.0, 2.0, 2.0, 2.0], 2, seconds=0.5)
    assert lines == ["warm-up: 2 of 4 items left to the sweep"]  # the two under way finished


def test_a_dead_worker_stops_the_warm_up_not_the_caller():
    lines = warm_in_parallel(os._exit, [1, 1, 1, 1], 2)
    assert lines and all("BrokenProcessPool" in line or "left to the sweep" in line
                         for line in lines)


def test_default_jobs():
    assert default_jobs("cpu") == 1
    assert 1 <= default_jobs("cuda") <= 16


def test_an_item_starts_only_while_the_time_left_covers_the_slowest_so_far():
    """Items under way finish: so none starts that the deadline would find half done."""
    lines = warm_in_parallel(time.sleep, [1.0] * 6, 2, seconds=1.9)
    assert lines == ["warm-up: 4 of 6 items left to the sweep"]


def test_a_spent_budget_warms_nothing(tmp_path):
    """What is left of a sweep's budget bounds its warm-up: none left, no item starts."""
    budget = TimeBudget(0.01)
    time.sleep(0.02)
    warm_ahead(Path.touch, [tmp_path / "a", tmp_path / "b"], jobs=2, device_type="cuda",
               budget=budget)
    assert list(tmp_path.iterdir()) == []


def test_the_time_left_covers_an_item_only_while_it_lasts():
    assert TimeBudget(None).covers(1e9)
    budget = TimeBudget(60.0)
    assert budget.covers(30.0) and not budget.covers(61.0)
