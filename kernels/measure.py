"""How the benchmarks and the tuner measure a call: the shapes, dtypes and inputs they take, a
call's median time (CUDA events on a GPU, a CPU clock otherwise) and its peak device memory."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from kernels.layout import in_layout

#: The dtypes the benchmarks and the tuner measure, by their command-line names.
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"NxCxHxW"`` -> (N, C, H, W); ``ValueError`` naming the text otherwise."""
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"shape {text!r}: expected four positive integers as NxCxHxW")
    n, c, h, w = (int(p) for p in parts)
    return n, c, h, w


def random_input(shape: tuple[int, ...], dtype: str, layout: str, device: torch.device, *,
                 seed: int = 0) -> torch.Tensor:
    """Standard normal values of ``shape``, seeded, in ``layout``: what a sweep times an op on."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return in_layout(torch.randn(shape, generator=generator, device=device, dtype=DTYPES[dtype]),
                     layout)  # fmt: skip


def time_ms(fn: Callable[[], Any], device: torch.device, *, rep_ms: int = 50) -> float:
    """Median milliseconds of ``fn`` after warm-up: CUDA events on a GPU, a CPU clock otherwise."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=max(5, rep_ms // 4), rep=rep_ms, return_mode="median"))
    fn()
    samples = []
    deadline = time.perf_counter() + rep_ms / 1e3
    while not samples or (time.perf_counter() < deadline and len(samples) < 100):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Device memory (MiB) ``fn`` allocates at its peak beyond what was live before; NaN on CPU."""
    if device.type != "cuda":
        return math.nan
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20
