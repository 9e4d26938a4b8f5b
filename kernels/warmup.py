"""Compile ahead, in parallel, what a sweep will then time one item at a time.

Tuning or benchmarking on a fresh GPU machine spends most of its time compiling: every
candidate launch config is a Triton compile, every ``torch.compile`` case an Inductor one, each
about a second of one CPU core, while the timing itself takes milliseconds. Compiles land in
on-disk caches (Triton's, Inductor's) that every process shares, so running each item once in
a pool of processes first leaves the sweep only cache hits; its timings, taken afterwards in
the one process, are unchanged. Warming is an optimisation only: an item that fails here is
compiled (or fails for real) in the sweep itself.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from kernels.time_budget import TimeBudget

Item = TypeVar("Item")


def default_jobs(device_type: str) -> int:
    """Processes that warm in parallel: the CPU cores (at most 16) where a GPU is used, else 1
    (interpreted kernels compile nothing)."""
    return min(16, os.cpu_count() or 1) if device_type == "cuda" else 1


def warm_in_parallel(task: Callable[[Item], object], items: Sequence[Item], jobs: int, *,
                     seconds: float | None = None) -> list[str]:
    """Run ``task(item)`` for every item, in order, in ``jobs`` spawned processes (a
    module-level function, picklable items); nothing when ``jobs`` <= 1.

    An item starts only when a process is free and, with ``seconds``, only while the time left
    covers the slowest item so far: items under way are not cut short, so small items keep the
    end near ``seconds``. Returns one line per item that failed (a dead worker fails those it
    held) and one for the items left out; the caller goes on either way.
    """
    if jobs <= 1 or not items:
        return []
    budget = TimeBudget(seconds)
    todo = iter(items)
    lines = []
    slowest = 0.0
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    left = 0
    broken = False
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=context) as pool:
        running = {}

        def start_next() -> None:
            nonlocal left, broken
            if broken or not budget.covers(slowest):
                return
            for item in itertools.islice(todo, 1):
                try:
                    running[pool.submit(task, item)] = (item, time.monotonic())
                except BrokenProcessPool:  # a worker died: the rest is the sweep's
                    left += 1
                    broken = True

        for _ in range(jobs):
            start_next()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item, started = running.pop(future)
                slowest = max(slowest, time.monotonic() - started)  # a worker's start included
                try:
                    future.result()
                except Exception as error:
                    lines.append(f"warm-up of {item}: {type(error).__name__}: {error}")
                start_next()
    left += sum(1 for _ in todo)
    if left:
        lines.append(f"warm-up: {left} of {len(items)} items left to the sweep")
    return lines


def warm_ahead(task: Callable[[Item], object], items: Sequence[Item], *, jobs: int | None,
               device_type: str, budget: TimeBudget) -> None:
    """:func:`warm_in_parallel` as a sweep runs it: ``jobs`` processes (None:
    :func:`default_jobs`), at most half of what ``budget`` has left, its report printed."""
    jobs = default_jobs(device_type) if jobs is None else jobs
    left = budget.left()
    if left is not None and left <= 0:
        return
    for line in warm_in_parallel(task, items, jobs, seconds=None if left is None else left / 2):
        print(line)
