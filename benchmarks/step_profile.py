"""Where a training step's time goes, for ``python -m benchmarks.end_to_end --profile``.

Images/s say how much anti-aliasing costs a network, not where. This runs a few of the
training steps the speed is measured on (``ablate.speed.SpeedSteps``) under
``torch.profiler`` and keeps the operations that took the most time per step: on a GPU the
kernels, by device time (the profiler's CUDA activity alone, so no time is counted twice as
an operator's and its kernels'); on the CPU the operators, by their own CPU time. Comparing
a fused net's rows with its one-tap placement's shows what the blur ops take and what else
changed.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from ablate.speed import WARMUP_STEPS, synchronize

PROFILED_STEPS = 5
TOP_OPERATIONS = 25
COLUMNS = ("name", "ms_per_step", "calls_per_step", "share")


def step_profile(
    step: Callable[[], None],
    device: torch.device,
    *,
    steps: int = PROFILED_STEPS,
    top: int = TOP_OPERATIONS,
) -> pd.DataFrame:
    """The ``top`` operations by time per call of ``step``, profiled over ``steps`` calls after
    the speed measurement's warm-up: the :data:`COLUMNS`, ``share`` of all the time the profile
    holds (the operations left out included)."""
    cuda = device.type == "cuda"
    for _ in range(WARMUP_STEPS):
        step()
    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as run:
        for _ in range(steps):
            step()
        synchronize(device)
    rows = []
    for event in run.key_averages():
        us = event.self_device_time_total if cuda else event.self_cpu_time_total
        if us > 0:
            rows.append({"name": event.key, "ms_per_step": us / 1e3 / steps,
                         "calls_per_step": event.count / steps})  # fmt: skip
    table = pd.DataFrame(rows, columns=list(COLUMNS[:3]))
    table["share"] = table["ms_per_step"] / table["ms_per_step"].sum()
    table = table.sort_values("ms_per_step", ascending=False, kind="stable").head(top)
    return table.reset_index(drop=True)
