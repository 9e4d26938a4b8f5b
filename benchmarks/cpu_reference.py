"""Time the CPU path of the blur-pool ops beside plain max-pooling and the usual formulation.

Forward (under no_grad) and forward+backward, median over repeats after warm-up, for:
plain ``MaxPool2d(2, 2)``; the common MaxBlurPool formulation (``MaxPool2d(2, 1)`` -> reflect
pad -> depthwise ``conv2d``) and its BlurPool counterpart (pad -> depthwise conv); this
project's ``max_blur_pool2d`` and ``blur_pool2d`` (torch backend); each in NCHW and
channels_last. The cases are timed round-robin, so a busy machine slows them alike; the
ratios to ``MaxPool2d(2, 2)`` on the same layout are the numbers to compare across machines.

    python -m benchmarks.cpu_reference --threads 2 --csv benchmarks/results/cpu/reference.csv
"""

import argparse
import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from benchmarks.table_output import write_csv
from kernels import blur_pool2d, max_blur_pool2d
from kernels.baselines import pad_conv_formulation, smallest_side
from kernels.cli_types import non_negative, output_file, positive, shape_text
from kernels.layout import LAYOUTS, in_layout
from kernels.measure import DTYPES, parse_shape

Op = Callable[[torch.Tensor], torch.Tensor]
CPU = torch.device("cpu")


def cases(filter_size: int, channels: int, dtype: torch.dtype) -> dict[str, Op]:
    k = filter_size
    return {
        "MaxPool2d(2,2)": lambda x: F.max_pool2d(x, 2, 2),
        "MaxPool2d(2,1)+pad+dwconv": pad_conv_formulation("max_blur_pool", k, channels, dtype, CPU),
        "pad+dwconv": pad_conv_formulation("blur_pool", k, channels, dtype, CPU),
        "max_blur_pool2d": lambda x: max_blur_pool2d(x, k, 2, "reflect", backend="torch"),
        "blur_pool2d": lambda x: blur_pool2d(x, k, 2, "reflect", backend="torch"),
    }


def forward(op: Op, x: torch.Tensor) -> None:
    with torch.no_grad():
        op(x)


def forward_backward(op: Op, x: torch.Tensor) -> None:
    leaf = x.detach().requires_grad_()
    out = op(leaf)
    out.backward(torch.ones_like(out))


def measure(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    filter_size: int,
    warmup: int,
    repeats: int,
) -> pd.DataFrame:
    """Median ms per op, layout and pass, and each as a multiple of ``MaxPool2d(2, 2)``'s."""
    base = torch.randn(shape, dtype=dtype)
    inputs = {layout: in_layout(base, layout) for layout in LAYOUTS}
    runs = [
        (name, layout, mode, op, x, timer)
        for layout, x in inputs.items()
        for name, op in cases(filter_size, shape[1], dtype).items()
        for mode, timer in (("fwd", forward), ("fwd+bwd", forward_backward))
    ]
    samples: dict[tuple[str, str, str], list[float]] = {run[:3]: [] for run in runs}
    for i in range(warmup + repeats):
        for name, layout, mode, op, x, timer in runs:
            start = time.perf_counter()
            timer(op, x)
            if i >= warmup:
                samples[(name, layout, mode)].append((time.perf_counter() - start) * 1e3)
    rows = [
        {"op": name, "layout": layout, "pass": mode, "ms": statistics.median(times)}
        for (name, layout, mode), times in samples.items()
    ]
    table = pd.DataFrame(rows)
    baseline = table[table["op"] == "MaxPool2d(2,2)"].set_index(["layout", "pass"])["ms"]
    table["x MaxPool2d(2,2)"] = [
        ms / baseline[(layout, mode)]
        for ms, layout, mode in zip(table["ms"], table["layout"], table["pass"], strict=True)
    ]
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cpu_reference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--threads", type=positive(int), default=2, help="default 2")
    parser.add_argument(
        "--shape", type=shape_text, default="128x64x32x32", help="NxCxHxW (default 128x64x32x32)"
    )
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--filter-size", type=positive(int), default=4, help="default 4")
    parser.add_argument("--warmup", type=non_negative(int), default=3, help="default 3")
    parser.add_argument("--repeats", type=positive(int), default=15, help="default 15")
    parser.add_argument("--csv", type=output_file, help="also write the table here")
    args = parser.parse_args(argv)
    shape = parse_shape(args.shape)
    side = smallest_side(args.filter_size)
    if min(shape[2:]) < side:
        parser.error(f"--shape {args.shape}: H and W must be at least {side} for --filter-size "
                     f"{args.filter_size} (the baselines' reflect padding after the 2x2 max)")
    torch.set_num_threads(args.threads)
    table = measure(
        shape,
        DTYPES[args.dtype],
        args.filter_size,
        args.warmup,
        args.repeats,
    )
    wide = table.pivot_table(
        index=["layout", "op"], columns="pass", values=["ms", "x MaxPool2d(2,2)"], sort=False
    )
    print(
        f"shape {args.shape} {args.dtype} k={args.filter_size} "
        f"threads={args.threads} "
        f"(median of {args.repeats} after {args.warmup} warm-up)"
    )
    print(wide.round(2).to_string())
    write_csv(table.assign(shape=args.shape, dtype=args.dtype, threads=args.threads), args.csv)


if __name__ == "__main__":
    main()
