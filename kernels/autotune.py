"""Autotuner: ``python -m kernels.autotune``.

For each kernel (forward and backward of blur-pool and max-blur-pool) and each representative
problem (CIFAR- and ImageNet-sized activations, NCHW and channels_last, the chosen dtypes and
filter sizes), every candidate launch configuration is run through the op's launcher with an
explicit ``config`` and timed (median of CUDA-event timings, ``kernels.measure.time_ms``).
Candidates that fail to compile or run out of resources, or whose result differs from the
reference ops' (``kernels.reference``; for a forward that saves codes or a mask, also the
input gradient its backward computes from them), are skipped. The fastest is saved to the user
cache (``kernels.tuning.user_cache_path()``), which the kernels then use automatically;
``--out`` also writes the winners as a table to ship in ``kernels/tuned/``.

Compiling is most of the cost on a fresh machine, so the candidates are first compiled in a
pool of processes (``--jobs``, :mod:`kernels.warmup`) and then timed one at a time.
``--budget-s`` bounds the whole run: problems are tuned in order while time is left, each
winner saved as soon as it is found.

Under the Triton interpreter (no GPU) there is a single candidate, the heuristic's, timed by a
CPU clock on tiny shapes: enough to exercise the whole path in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kernels import hardware, tuning
from kernels.baselines import MAX_KERNEL, PADDING, STRIDE
from kernels.cli_types import output_file, positive, run_command, shape_text
from kernels.files import why_not_writable
from kernels.filters import make_taps
from kernels.functional import fused_kernels_run
from kernels.layout import LAYOUTS, in_layout, keeps_channels_last
from kernels.measure import DTYPES, parse_shape, random_input, time_ms
from kernels.ops.blur_pool import blur_pool2d_backward, blur_pool2d_forward, relu_mask_buffer
from kernels.ops.max_blur_pool import (
    max_blur_pool2d_backward,
    max_blur_pool2d_forward,
    max_codes_buffer,
)
from kernels.reference import blur_pool2d_reference, max_blur_pool2d_reference
from kernels.time_budget import TimeBudget
from kernels.warmup import warm_ahead

# CIFAR ResNet-18 maps (batch 256) and ImageNet ResNet-18 maps (batch 64 and 256).
FULL_SHAPES = ("256x64x32x32", "256x128x16x16", "256x256x8x8", "64x64x112x112",
               "256x64x112x112", "64x128x56x56", "64x256x28x28", "64x512x14x14")
QUICK_SHAPES = ("256x64x32x32", "256x64x112x112")
INTERPRETER_SHAPES = ("2x3x9x7",)
FULL_FILTERS = (1, 2, 3, 4, 5, 6, 7)
QUICK_FILTERS = (3, 5)

# Candidate tiles (BLOCK_C, BLOCK_H, BLOCK_W). Every kernel streams BLOCK_H rows down a row
# tile of BLOCK_C × BLOCK_W, which its threads hold. The forwards, of outputs: 8 or 16 columns
# of 8-32 planes (NCHW: most tiles of a wide map then read inside it along W) or 32-128
# channels (channels_last), run 4, 8 or 16 rows (longer runs re-read less halo and form the
# rows above their first output less often; their code does not grow, the rows run in a loop,
# but the last tile of a map idles more).
NCHW_STREAMS = tuple((c, h, w) for h in (4, 8, 16) for c, w in ((8, 16), (16, 8), (16, 16),
                                                                 (32, 8)))  # fmt: skip
CL_STREAMS = tuple((c, h, w) for h in (4, 8, 16) for c, w in ((32, 16), (64, 8), (64, 16),
                                                               (128, 8)))  # fmt: skip
QUICK_NCHW_STREAMS = ((16, 4, 8), (16, 8, 8), (16, 16, 8))
QUICK_CL_STREAMS = ((64, 8, 16), (64, 16, 16), (128, 8, 8))
# The backwards stream rows of input-gradient elements: under NCHW one element a
# thread (tuning.thread_elements), rows up to 128 columns wide (tables pad along W at no
# cost); under channels_last 32-128 channels; 8, 16 or 32 rows.
BWD_NCHW_STREAMS = tuple((c, h, w) for h in (8, 16, 32) for c, w in ((1, 128), (2, 64),
                                                                     (4, 32), (1, 64)))  # fmt: skip
BWD_CL_STREAMS = tuple((c, h, w) for h in (8, 16, 32) for c, w in ((32, 8), (64, 4), (64, 8),
                                                                   (128, 4)))  # fmt: skip
QUICK_BWD_NCHW_STREAMS = ((1, 16, 128), (1, 32, 128), (2, 16, 64))
QUICK_BWD_CL_STREAMS = ((64, 16, 8), (128, 16, 4), (128, 8, 4))
WARPS = (2, 4, 8)
STAGES = (1, 2)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One kernel at one shape, layout, dtype and filter size."""

    op: str
    shape: tuple[int, int, int, int]
    layout: str
    dtype: str
    filter_size: int
    relu: bool = False

    @property
    def max_kernel(self) -> int:
        return MAX_KERNEL if self.op.startswith("max_") else 0


def candidates(problem: Problem, *, quick: bool) -> list[dict[str, int]]:
    """The launch configurations tried for ``problem``; one under the interpreter."""
    key = key_of(problem)
    heuristic = tuning.heuristic_config(problem.op, key)
    if hardware.interpreting():
        return [heuristic]
    c = problem.shape[1]
    warps = (4, 8) if quick else WARPS
    stages = (1,) if quick else STAGES
    if problem.op.endswith("_fwd"):
        nchw, cl = (QUICK_NCHW_STREAMS, QUICK_CL_STREAMS) if quick else (NCHW_STREAMS, CL_STREAMS)
    else:
        nchw, cl = ((QUICK_BWD_NCHW_STREAMS, QUICK_BWD_CL_STREAMS) if quick
                    else (BWD_NCHW_STREAMS, BWD_CL_STREAMS))  # fmt: skip
    if problem.layout == "nchw":
        tiles = list(nchw)
        whole = tuning.whole_map_tile(problem.op, key)
        if whole <= 16:  # small maps: whole maps of several planes per program
            tiles += [(bc, min(whole, 8), whole) for bc in (4, 16, 64)
                      if bc <= tuning.pow2_bucket(c)]  # fmt: skip
    else:
        tiles = list(cl)
    # (A whole small map can be a streamed tile too: each is tried once.)
    tiles = [t for t in dict.fromkeys(tiles) if t[0] <= max(16, tuning.pow2_bucket(c))]
    # Every thread owns at least one element and at most twice its share of registers'
    # worth (tuning.thread_elements): beyond that a config spills or keeps few warps
    # resident, and would only cost its compile. A tile's threads hold one row.
    per_thread = tuning.thread_elements(problem.op, problem.layout, problem.filter_size)
    configs = [
        {"BLOCK_H": h, "BLOCK_W": w, "BLOCK_C": bc, "num_warps": nw, "num_stages": ns}
        for (bc, h, w), nw, ns in itertools.product(tiles, warps, stages)
        if nw * 32 <= bc * w <= 2 * nw * 32 * per_thread
    ]
    # The default is a candidate too: a tuned entry is never slower than no entry.
    return configs if heuristic in configs else [*configs, heuristic]



def key_of(problem: Problem) -> tuning.TuningKey:
    x = in_layout(torch.empty(problem.shape, device="meta", dtype=DTYPES[problem.dtype]),
                  problem.layout)  # fmt: skip
    return tuning.tuning_key(x, problem.filter_size, STRIDE, max_kernel=problem.max_kernel,
                             relu=problem.relu)


@dataclasses.dataclass(frozen=True)
class ProblemLauncher:
    """A problem's kernel on inputs made once: ``run(config)`` launches it with ``config``;
    ``expected()`` is what it must compute, by the reference ops in float32. ``routed()``,
    for a forward that also saves what its backward reads (the max's codes, the ReLU's
    mask): the input gradient the backward computes from what the last ``run`` saved, and the
    reference's (a candidate must get both its output and these right)."""

    run: Callable[[dict[str, int] | None], torch.Tensor]
    expected: Callable[[], torch.Tensor]
    routed: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None


def launcher(problem: Problem, device: torch.device) -> ProblemLauncher:
    """``problem``'s kernel and its expected result (inputs made once, up front)."""
    taps = tuple(make_taps(problem.filter_size).tolist())
    x = random_input(problem.shape, problem.dtype, problem.layout, device)
    is_max = problem.op.startswith("max_")

    # The forward as training runs it: MaxBlurPool also writes the codes its backward reads,
    # the fused ReLU its mask.
    codes = max_codes_buffer(x, MAX_KERNEL) if is_max else None
    mask = relu_mask_buffer(x) if problem.relu else None

    def forward(config: dict[str, int] | None) -> torch.Tensor:
        if is_max:
            return max_blur_pool2d_forward(x, taps, STRIDE, PADDING, MAX_KERNEL, codes=codes,
                                           config=config)  # fmt: skip
        return blur_pool2d_forward(x, taps, STRIDE, PADDING, 0, problem.relu, mask=mask,
                                   config=config)  # fmt: skip

    def reference(source: torch.Tensor) -> torch.Tensor:
        reference_taps = torch.tensor(taps, dtype=torch.float64)
        if is_max:
            return max_blur_pool2d_reference(source, reference_taps, STRIDE, PADDING, MAX_KERNEL)
        return blur_pool2d_reference(source, reference_taps, STRIDE, PADDING, 0, problem.relu)

    grad = torch.randn_like(forward(None))

    def backward(config: dict[str, int] | None) -> torch.Tensor:
        if is_max:
            return max_blur_pool2d_backward(grad, codes, taps, STRIDE, PADDING, MAX_KERNEL,
                                            config=config)
        return blur_pool2d_backward(grad, tuple(x.shape[2:]), taps, STRIDE, PADDING, 0,
                                    mask=mask, channels_last=keeps_channels_last(x),
                                    config=config)  # fmt: skip

    @functools.cache
    def expected_gradient() -> torch.Tensor:
        source = x.detach().requires_grad_()  # in x's dtype: ties in a max window as the kernel
        (gradient,) = torch.autograd.grad(reference(source), source, grad)
        return gradient.float()

    if problem.op.endswith("_fwd"):
        # The backward as the ops launch it, on what the candidate's forward saved.
        routed = None if codes is None and mask is None else (
            lambda: (backward(None).float(), expected_gradient()))  # fmt: skip
        return ProblemLauncher(forward, lambda: reference(x).float(), routed)
    return ProblemLauncher(backward, expected_gradient)


def compile_candidate(item: tuple[Problem, dict[str, int]]) -> None:
    """Run one candidate of a problem once, which compiles it into Triton's on-disk cache
    (:mod:`kernels.warmup`; one compile an item keeps the warm-up's end near its deadline); a
    failing candidate is :func:`tune`'s to report."""
    problem, config = item
    with contextlib.suppress(Exception):
        _launcher_of(problem)(config)


@functools.lru_cache(maxsize=1)  # a warm-up worker's items come a problem at a time
def _launcher_of(problem: Problem) -> Callable[[dict[str, int]], torch.Tensor]:
    return launcher(problem, tuning_device()).run


def tuning_device() -> torch.device:
    """The GPU, or the CPU when kernels run under the interpreter."""
    return torch.device("cpu" if hardware.interpreting() else "cuda")


def tune(problem: Problem, device: torch.device, *, quick: bool,
         rep_ms: int) -> tuple[dict[str, int], float] | None:
    """The fastest valid candidate for ``problem`` and its median ms; None if none ran."""
    problem_launcher = launcher(problem, device)
    run = problem_launcher.run
    tolerance = 1e-5 if problem.dtype == "float32" else 1e-2
    expected = problem_launcher.expected()
    best: tuple[dict[str, int], float] | None = None
    for config in candidates(problem, quick=quick):
        try:
            result = run(config)
        except Exception as err:  # compile errors, out of resources: not a valid candidate
            print(f"skipped {config} for {problem}: {type(err).__name__}: {str(err)[:200]}")
            continue
        if not torch.allclose(result.float(), expected, rtol=tolerance, atol=tolerance):
            print(f"skipped {config} for {problem}: result differs from the reference")
            continue
        if problem_launcher.routed is not None:
            gradient, expected_gradient = problem_launcher.routed()
            if not torch.allclose(gradient, expected_gradient, rtol=tolerance, atol=tolerance):
                print(f"skipped {config} for {problem}: the codes or mask it saves give an input "
                      "gradient that differs from the reference")  # fmt: skip
                continue
        ms = time_ms(lambda config=config: run(config), device, rep_ms=rep_ms)
        if best is None or ms < best[1]:
            best = (config, ms)
    return best


def problems(shapes: Sequence[str], layouts: Sequence[str], dtypes: Sequence[str],
             filters: Sequence[int], ops: Sequence[str], relus: Sequence[bool]) -> list[Problem]:
    """Every combination; ReLU variants only for blur-pool, MaxBlurPool only on maps its max
    window fits (a note names the shapes left out)."""
    out = []
    for shape, layout, dtype, k, op in itertools.product(shapes, layouts, dtypes, filters, ops):
        for relu in relus if op.startswith("blur_") else (False,):
            out.append(Problem(op, parse_shape(shape), layout, dtype, k, relu))
    small = sorted({"x".join(map(str, p.shape)) for p in out if min(p.shape[2:]) < p.max_kernel})
    if small:
        print(f"MaxBlurPool left out on {', '.join(small)}: its {MAX_KERNEL}×{MAX_KERNEL} max "
              f"needs maps of {MAX_KERNEL} rows and columns at least")  # fmt: skip
    return [p for p in out if min(p.shape[2:]) >= p.max_kernel]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kernels.autotune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer shapes, filter sizes 3 and 5, bf16, fewer candidates")
    parser.add_argument("--shapes", nargs="+", type=shape_text,
                        help="NxCxHxW (default: ResNet-18 maps)")
    parser.add_argument("--dtype", nargs="+", choices=tuple(DTYPES),
                        help="default: all three (bfloat16 with --quick)")
    parser.add_argument("--filters", nargs="+", type=positive(int),
                        help="filter sizes (default 1..7)")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--ops", nargs="+", choices=tuning.OPS, default=list(tuning.OPS))
    parser.add_argument("--rep-ms", type=positive(int),
                        help="time per candidate (default 20, 5 quick)")
    parser.add_argument("--budget-s", type=positive(float),
                        help="stop starting problems after this many seconds (problems run in "
                             "the order of --shapes, --layouts, --dtype, --filters, --ops)")
    parser.add_argument("--jobs", type=positive(int),
                        help="processes that compile the candidates ahead, in parallel (default: "
                             "the CPU cores, at most 16, on a GPU; 1 under the interpreter)")
    parser.add_argument("--out", type=output_file,
                        help="also write the winners as a table here (to ship in kernels/tuned/), "
                             "rewritten after each problem")
    args = parser.parse_args(argv)
    if not fused_kernels_run(tuning_device()):
        parser.error("the fused kernels do not run here: there is no CUDA device, and "
                     "TRITON_INTERPRET is not set (the tuner times them on a GPU; with "
                     "TRITON_INTERPRET=1 it runs in Triton's interpreter, one configuration a "
                     "problem, a check of the command)")  # fmt: skip
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    args = parse_args(argv)
    cache = tuning.user_cache_path()
    unwritable = why_not_writable(cache.parent)
    if cache.exists() and not cache.is_file():
        unwritable = f"{str(cache)!r} is not a file"
    if unwritable:  # found now, not after the warm-up and the first problem's tuning
        raise SystemExit(f"error: the tuning cache {cache} cannot be written: {unwritable}; set "
                         f"{tuning.CACHE_DIR_ENV} to a folder you can write")  # fmt: skip
    budget = TimeBudget(args.budget_s)
    interpret = hardware.interpreting()
    device = tuning_device()
    if interpret:
        shapes = args.shapes or INTERPRETER_SHAPES
        dtypes = args.dtype or ["float32"]
        filters = args.filters or [3]
    else:
        shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
        dtypes = args.dtype or (["bfloat16"] if args.quick else list(DTYPES))
        filters = args.filters or (QUICK_FILTERS if args.quick else FULL_FILTERS)
    relus = (False,) if args.quick or interpret else (False, True)
    rep_ms = args.rep_ms or (5 if args.quick or interpret else 20)
    todo = problems(shapes, args.layouts, dtypes, filters, args.ops, relus)

    items = [(problem, config) for problem in todo
             for config in candidates(problem, quick=args.quick)]  # fmt: skip
    print(f"{len(todo)} problems, {len(items)} candidate launches to compile and time"
          + ("" if args.budget_s else " (--budget-s bounds the run"
             + ("" if args.quick else "; --quick tries fewer") + ")"))
    warm_ahead(compile_candidate, items, jobs=args.jobs, device_type=device.type, budget=budget)
    table = tuning.empty_table()
    for problem in tqdm(budget.over(todo), total=len(todo), desc="autotune"):
        best = tune(problem, device, quick=args.quick, rep_ms=rep_ms)
        if best is None:
            print(f"no valid candidate for {problem}: the heuristic stays in use")
            continue
        config, ms = best
        key = key_of(problem)
        old = table["configs"][problem.op].get(key.to_str())
        if old is not None and old["ms"] <= ms:  # two shapes in one bucket: keep the faster
            continue
        table["configs"][problem.op][key.to_str()] = {**config, "ms": ms}
        tuning.save_config(problem.op, key, config, ms=ms, path=cache)
        if args.out is not None:
            tuning.write_table(args.out, table)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    cut = budget.note("problems")
    if cut:
        print(cut)
    found = sum(len(v) for v in table["configs"].values())
    print(f"{found} winners for {len(todo)} problems saved to {cache}"
          + (f" and {args.out}" if args.out else ""))
    if found == 0:
        raise SystemExit("no candidate ran")
    return table


if __name__ == "__main__":
    run_command(main)
