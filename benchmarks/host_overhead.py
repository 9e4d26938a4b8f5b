"""Host time per call of the fused ops: ``python -m benchmarks.host_overhead``.

A GPU blur-pools a CIFAR-sized activation in a few microseconds; when the host takes longer
to issue the launch, the op is host-bound and the kernel's speed does not show. This tool
calls the public modules (``BlurPool2d``, with the fused ReLU, ``MaxBlurPool2d``;
``backend="triton"``) many times and reports the host time per call.

``--launch none`` (the default, no GPU needed) runs them on CPU tensors inside
:func:`benchmarks.resource_usage.compile_only`: each call takes the whole Python path
(argument checks, autograd, the launch plan) and Triton's launch path (argument binding,
specialisation, kernel cache) and stops where the driver would launch; the launch itself (a
few microseconds on CUDA) is not counted, while allocating the outputs in CPU memory is (some
10 µs for a 32 MB buffer, which a CUDA caching allocator hands out faster). For scale it times
``max_pool2d`` on a 1 × C × 2 × 2 CPU tensor the same way: PyTorch's own dispatcher and
autograd around a negligible kernel. Same Triton set-up as resource_usage.

``--launch cuda`` launches on the GPU for real, each round ended by a synchronisation, and
times ``max_pool2d`` on the same tensor for scale. Give it a small ``--shape``, so that each
kernel takes less time than the host needs to issue it: the time per call is then the
host's.

Times are the fastest of ``--repeat`` rounds of ``--number`` calls (the least disturbed by
other work on the machine), in microseconds per call, for inference (no grad), the training
forward and the backward (``torch.autograd.grad`` on a retained graph).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from benchmarks.resource_usage import compile_only
from benchmarks.static_cost import compute_capability
from benchmarks.table_output import write_and_print, write_csv
from kernels import BlurPool2d, MaxBlurPool2d
from kernels.baselines import MAX_KERNEL
from kernels.bench import OPS
from kernels.cli_types import output_file, positive, run_command, shape_text
from kernels.layout import LAYOUTS, in_layout
from kernels.measure import DTYPES, parse_shape

LAUNCHES = ("none", "cuda")


def fastest_us(call: Callable[[], object], number: int, repeat: int,
               sync: Callable[[], None]) -> float:
    """Microseconds per call of the fastest of ``repeat`` rounds of ``number`` calls, each
    round ended by ``sync``."""
    call()  # compiles on the first call
    sync()
    rounds = []
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(number):
            call()
        sync()
        rounds.append(time.perf_counter() - began)
    return min(rounds) / number * 1e6


def phases(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, number: int,
           repeat: int, sync: Callable[[], None]) -> dict[str, float]:
    """Host µs of ``module`` on ``x``: inference, training forward, backward (on a retained
    graph, as ``kernels.bench`` times it)."""
    def infer() -> None:
        with torch.no_grad():
            module(x)

    def backward() -> None:
        torch.autograd.grad(y, x, grad, retain_graph=True)

    y = module(x)
    grad = torch.ones_like(y)
    return {"inference_us": fastest_us(infer, number, repeat, sync),
            "forward_us": fastest_us(lambda: module(x), number, repeat, sync),
            "backward_us": fastest_us(backward, number, repeat, sync)}  # fmt: skip


def fused_module(op: str, channels: int, filter_size: int) -> torch.nn.Module:
    if op == "max_blur_pool":
        return MaxBlurPool2d(channels, filter_size, backend="triton")
    return BlurPool2d(channels, filter_size, relu=op == "blur_pool_relu", backend="triton")


def measure(shape: tuple[int, ...], dtype: torch.dtype, filter_size: int, *, launch: str,
            arch: int, device: str, number: int, repeat: int,
            after_row: Callable[[pd.DataFrame], object] = lambda df: None) -> pd.DataFrame:
    """One row per op and layout, and one for ``max_pool2d`` for scale; ``launch`` as
    ``--launch`` (checked by :func:`main`). ``after_row`` receives the table so far after each
    row (to write it, so that a run cut short keeps what it measured)."""
    on_cuda = launch == "cuda"
    target = "cuda" if on_cuda else "cpu"
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    rows = []
    with compile_only(arch, device) if not on_cuda else contextlib.nullcontext():
        for op in OPS:
            for layout in LAYOUTS:
                x = in_layout(torch.randn(shape, device=target, dtype=dtype), layout)
                module = fused_module(op, shape[1], filter_size).to(target)
                times = phases(module, x.requires_grad_(True), number, repeat, sync)
                rows.append({"op": op, "layout": layout, **times})
                after_row(pd.DataFrame(rows))
    scale_shape = shape if on_cuda else (1, shape[1], 2, 2)
    x = torch.randn(scale_shape, dtype=dtype, device=target, requires_grad=True)
    rows.append({"op": "max_pool2d " + "x".join(map(str, scale_shape)), "layout": "nchw",
                 **phases(lambda t: F.max_pool2d(t, 2, 2), x, number, repeat, sync)})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.host_overhead",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launch", choices=LAUNCHES, default="none",
                        help="none: compile for --arch, launch nothing (no GPU needed); "
                             "cuda: launch on the GPU")
    parser.add_argument("--shape", type=shape_text, default="256x64x32x32",
                        help="NxCxHxW (default 256x64x32x32)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bfloat16")
    parser.add_argument("--filter", type=positive(int), default=3, help="filter size (default 3)")
    parser.add_argument("--number", type=positive(int), default=200,
                        help="calls per round (default 200)")
    parser.add_argument("--repeat", type=positive(int), default=5,
                        help="rounds; the fastest counts (default 5)")
    parser.add_argument("--arch", type=compute_capability, default=90,
                        help="compute capability to compile for (--launch none; default 90)")
    parser.add_argument("--device", default="NVIDIA H100 80GB HBM3",
                        help="the GPU whose launch configs to use (--launch none; a name "
                             "without a tuned table takes the heuristic's; default: "
                             "%(default)s)")
    parser.add_argument("--csv", type=output_file, help="also write the table here")
    args = parser.parse_args(argv)
    if args.launch == "cuda" and not torch.cuda.is_available():
        parser.error("--launch cuda needs a CUDA device; use --launch none without one")
    shape = parse_shape(args.shape)
    if min(shape[2:]) < MAX_KERNEL:
        parser.error(f"--shape {args.shape}: H and W must be at least {MAX_KERNEL} (the "
                     f"MaxBlurPool's {MAX_KERNEL}x{MAX_KERNEL} max)")
    df = measure(shape, DTYPES[args.dtype], args.filter,
                 launch=args.launch, arch=args.arch, device=args.device, number=args.number,
                 repeat=args.repeat,
                 after_row=lambda so_far: write_csv(so_far, args.csv))  # fmt: skip
    return write_and_print(df, args.csv, digits=1)


if __name__ == "__main__":
    run_command(main)
