"""A sweep that must end in time (a benchmark or tuning run on a machine lent for minutes).

Killing a sweep at a deadline loses the item under way and, unless results are written as
they come, everything before it. A sweep that checks its budget before each item instead ends
on its own, with the items it ran measured whole; putting the items that matter most first
makes that a useful subset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

Item = TypeVar("Item")


class TimeBudget:
    """``seconds`` a sweep may take from the budget's creation (None: no limit).

    :meth:`over` hands out the items in order while the time left covers one more of the
    slowest so far (the first item always runs); ``skipped`` then says how many it held back.
    """

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and not seconds > 0:
            raise ValueError(f"budget of {seconds!r} s: expected a positive number of seconds")
        self.seconds = seconds
        self.start = time.monotonic()
        self.skipped = 0
        self.total = 0

    def left(self) -> float | None:
        """Seconds left (None: no limit)."""
        return None if self.seconds is None else self.seconds - (time.monotonic() - self.start)

    def covers(self, seconds: float) -> bool:
        """Whether the time left covers ``seconds`` more (always, with no limit): an item as
        slow as the slowest so far starts only then, so none is cut short at the deadline."""
        left = self.left()
        return left is None or seconds <= left

    def over(self, items: Sequence[Item]) -> Iterator[Item]:
        self.total = len(items)
        slowest = 0.0
        for index, item in enumerate(items):
            if index and not self.covers(slowest):
                self.skipped = len(items) - index
                return
            began = time.monotonic()
            yield item
            slowest = max(slowest, time.monotonic() - began)

    def note(self, what: str) -> str | None:
        """A line saying what the budget left out, or None if it left nothing out."""
        if not self.skipped:
            return None
        return (f"{self.skipped} of {self.total} {what} left out: the time budget of "
                f"{self.seconds:g} s was spent")
