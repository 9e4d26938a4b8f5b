"""Registers, spills, shared memory and occupancy of each kernel as a GPU would launch it, with no
GPU: ``python -m benchmarks.resource_usage``.

The kernels are memory-bound: they reach the copy bandwidth only with enough loads in flight,
that is enough resident warps, and a kernel that needs many registers per thread gets few (an
H100 or H200 SM holds 65 536 registers and 64 warps, an RTX 4090's 48 warps), while one that
runs out of them spills to local memory, traffic that :mod:`benchmarks.static_cost`'s
instruction counts do not show. This tool runs the real launchers
(``kernels.autotune.launcher``) on CPU tensors with Triton's driver replaced by one that only
compiles for the chosen target, so each launch config is compiled with the exact specialisation
a GPU launch would get, and reads the resources off the cubin (``cuobjdump -res-usage``). Rows:
the heuristic's config of each problem (``kernels.tuning``), or with ``--candidates quick|full``
every config that autotuner sweep would try; compile seconds come with them.

Run it without ``TRITON_INTERPRET``, with the GPU machine's Triton (as for static_cost, e.g.
``pip install --no-deps --target /tmp/t36 triton==3.6.0`` and ``PYTHONPATH=/tmp/t36:.``); it
relies on Triton's ``driver.set_active`` and ``JITFunction.run``, as in Triton 3.6.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import torch
from triton.backends.compiler import GPUTarget
from triton.runtime.driver import driver
from triton.runtime.jit import JITFunction

from benchmarks.static_cost import compute_capability, cuobjdump, refuse_interpreter
from benchmarks.table_output import write_and_print
from kernels import autotune, hardware, tuning
from kernels.cli_types import output_file, positive, shape_text
from kernels.layout import LAYOUTS
from kernels.measure import DTYPES


@dataclasses.dataclass(frozen=True)
class SmLimits:
    """What one SM of an architecture holds at once (CUDA's technical specifications per compute
    capability); every architecture here has 65 536 registers an SM, given out per warp in units
    of 256."""

    warps: int
    blocks: int
    shared_bytes: int
    reserved_shared_per_block: int = 1_024  # for the system, from Ampere on


SM_REGISTERS = 65_536
SM_LIMITS = {
    75: SmLimits(warps=32, blocks=16, shared_bytes=64 * 1_024, reserved_shared_per_block=0),
    80: SmLimits(warps=64, blocks=32, shared_bytes=164 * 1_024),
    86: SmLimits(warps=48, blocks=16, shared_bytes=100 * 1_024),
    87: SmLimits(warps=48, blocks=16, shared_bytes=164 * 1_024),
    89: SmLimits(warps=48, blocks=24, shared_bytes=100 * 1_024),
    90: SmLimits(warps=64, blocks=32, shared_bytes=228 * 1_024),
    100: SmLimits(warps=64, blocks=32, shared_bytes=228 * 1_024),
    103: SmLimits(warps=64, blocks=32, shared_bytes=228 * 1_024),
    110: SmLimits(warps=48, blocks=24, shared_bytes=228 * 1_024),
    120: SmLimits(warps=48, blocks=24, shared_bytes=100 * 1_024),
    121: SmLimits(warps=48, blocks=24, shared_bytes=100 * 1_024),
}


class _CompileOnlyDriver:
    """Stands in for the CUDA driver: names a target to compile for, launches nothing."""

    def __init__(self, arch: int) -> None:
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_target(self) -> GPUTarget:
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0


@contextlib.contextmanager
def compile_only(arch: int, device: str) -> Iterator[list[Any]]:
    """Within it, a kernel launch compiles for ``sm_<arch>`` and returns without running; the
    compiled kernels are appended to the yielded list. The launch configs are those of GPU
    ``device`` (its heuristic and tables), not the interpreter's."""
    launched: list[Any] = []
    real_run = JITFunction.run

    def compile_run(self: JITFunction, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
        kernel = real_run(self, *args, grid=grid, warmup=True, **kwargs)
        launched.append(kernel)
        return kernel

    with contextlib.ExitStack() as patches:
        for owner, name, value in ((JITFunction, "run", compile_run),
                                   (hardware, "interpreting", lambda: False),
                                   (hardware, "device_name", lambda: device)):
            patches.callback(setattr, owner, name, getattr(owner, name))
            setattr(owner, name, value)
        patches.callback(driver.set_active, driver._active)  # no default driver without a GPU
        driver.set_active(_CompileOnlyDriver(arch))
        tuning.clear_cache()
        patches.callback(tuning.clear_cache)
        yield launched


def registers_and_stack(cubin: bytes) -> tuple[int, int]:
    """Registers per thread and stack bytes (spills) of the one kernel in ``cubin``."""
    report = cuobjdump(cubin, "-res-usage")
    found = re.search(r"REG:(\d+) STACK:(\d+)", report)
    if found is None:
        raise RuntimeError(f"no resource usage in cuobjdump's report: {report[:200]}")
    return int(found.group(1)), int(found.group(2))


def resident_warps(registers: int, shared: int, num_warps: int, arch: int = 90) -> int | None:
    """Warps an SM of ``sm_<arch>`` holds at once for a kernel with these resources (the
    occupancy's numerator); None for an architecture whose limits :data:`SM_LIMITS` lacks."""
    limits = SM_LIMITS.get(arch)
    if limits is None:
        return None
    per_warp = -(-registers * 32 // 256) * 256
    blocks = min(limits.blocks, limits.warps // num_warps,
                 SM_REGISTERS // (per_warp * num_warps))  # fmt: skip
    if shared:
        blocks = min(blocks, limits.shared_bytes // (shared + limits.reserved_shared_per_block))
    return blocks * num_warps


def measure(problems: Sequence[autotune.Problem], *, arch: int, device: str,
            candidates: str | None) -> pd.DataFrame:
    """One row per (problem, config): the heuristic's, or every candidate of the autotuner's
    ``"quick"`` or ``"full"`` sweep."""
    rows = []
    with compile_only(arch, device) as launched:
        for problem in problems:
            heuristic = tuning.heuristic_config(problem.op, autotune.key_of(problem))
            run = autotune.launcher(problem, torch.device("cpu")).run
            configs = ([heuristic] if candidates is None else
                       autotune.candidates(problem, quick=candidates == "quick"))
            for config in configs:
                row = {"op": problem.op, "shape": "x".join(map(str, problem.shape)),
                       "layout": problem.layout, "dtype": problem.dtype,
                       "filter_size": problem.filter_size, "relu": problem.relu,
                       "config": "{BLOCK_C}x{BLOCK_H}x{BLOCK_W}/w{num_warps}".format(**config),
                       "heuristic": config == heuristic}  # fmt: skip
                launched.clear()
                began = time.perf_counter()
                try:
                    run(config)
                except Exception as err:  # a config that does not compile is a finding
                    rows.append({**row, "error": f"{type(err).__name__}: {str(err)[:200]}"})
                    continue
                kernel = launched[-1]
                registers, stack = registers_and_stack(kernel.asm["cubin"])
                shared = kernel.metadata.shared
                rows.append({**row, "compile_s": time.perf_counter() - began,
                             "registers": registers, "stack_bytes": stack,
                             "shared_bytes": shared,
                             "resident_warps": resident_warps(registers, shared,
                                                              config["num_warps"], arch),
                             "error": ""})  # fmt: skip
    df = pd.DataFrame(rows)
    if "resident_warps" in df:  # whole numbers, <NA> where unknown (or not compiled)
        df["resident_warps"] = df["resident_warps"].astype("Int64")
    return df


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.resource_usage",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=compute_capability, default=90,
                        help="compute capability to compile for (default 90: Hopper); the "
                             "resident_warps column counts with that architecture's SM limits "
                             f"(known for {', '.join(map(str, SM_LIMITS))}; none for others)")
    parser.add_argument("--device", default="NVIDIA H100 80GB HBM3",
                        help="the GPU whose launch configs to compile (its shipped table, else "
                             "the heuristic)")
    parser.add_argument("--shapes", nargs="+", type=shape_text,
                        default=list(autotune.QUICK_SHAPES))
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES),
                        default=["bfloat16"])
    parser.add_argument("--filters", nargs="+", type=positive(int), default=[3, 5, 7])
    parser.add_argument("--ops", nargs="+", choices=tuning.OPS, default=list(tuning.OPS))
    parser.add_argument("--relu", action="store_true", help="blur-pool with the fused ReLU too")
    parser.add_argument("--candidates", choices=("quick", "full"),
                        help="every config the autotuner's quick or full sweep would try, not "
                             "only the heuristic's")
    parser.add_argument("--csv", type=output_file, help="also write the table here")
    args = parser.parse_args(argv)
    refuse_interpreter(parser)
    relus = (False, True) if args.relu else (False,)
    todo = autotune.problems(args.shapes, args.layouts, args.dtypes, args.filters, args.ops,
                             relus)  # fmt: skip
    df = measure(todo, arch=args.arch, device=args.device, candidates=args.candidates)
    return write_and_print(df, args.csv, digits=2)


if __name__ == "__main__":
    main()
