"""Kernel benchmark: ``python -m kernels.bench``.

Times forward, backward and forward+backward of each op (blur-pool, blur-pool with the ReLU
fused, max-blur-pool) for shiftlab's kernels and, in the same run, for

- ``pytorch``: the formulation users write today, explicit ``F.pad`` then a depthwise
  ``conv2d`` (after ``relu`` / ``max_pool2d(2, stride=1)`` for the fused variants), as adobe's
  antialiased-cnns does;
- ``compile``: ``torch.compile`` of that formulation;
- ``kornia``: ``kornia.filters.blur_pool2d`` / ``max_blur_pool2d`` when kornia is installed
  (it pads zeros, the others reflect; the bytes moved are the same from kornia 0.9 on, an
  older one's smaller max_blur_pool2d output at even filter sizes is noted);
- ``copy``: the device's copy bandwidth for a tensor the size of the input, the roofline.

GB/s counts the bytes an op must move at least (spec §5): each input read once, each output
written once (the backward of the ReLU and of the max also reads what routes the gradient, as
compact as the fused kernels keep it: :func:`minimal_bytes`). Times are the
median of repeats after warm-up, from CUDA events (``triton.testing.do_bench``, which also
flushes L2 between repeats), or from a CPU clock without CUDA. The forward is timed with
gradients enabled, as in training; the backward is ``torch.autograd.grad`` on a retained graph.

On a GPU each case is first run once in a pool of processes (``--jobs``, :mod:`kernels.warmup`)
so that the sweep finds its Triton and ``torch.compile`` code compiled; ``--budget-s`` bounds
the whole run, cases going in order while time is left, the results rewritten after each.

Results go to ``benchmarks/results/<gpu>/`` as ``kernels.csv``, ``kernels.json`` (rows plus
the device, versions, commit and command) and seaborn figures; a short table is printed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import kernels
from kernels.baselines import MAX_KERNEL, PADDING, STRIDE, kornia_op, pad_conv_formulation
from kernels.bench_results import default_results_dir, print_table, run_metadata, write_results
from kernels.cli_types import device_option, output_folder, positive, run_command, shape_text
from kernels.files import atomic_write
from kernels.functional import fused_kernels_run
from kernels.layout import LAYOUTS, bit_packed_shape
from kernels.measure import DTYPES, parse_shape, peak_memory_mb, random_input, time_ms
from kernels.padding import dense_max_size
from kernels.time_budget import TimeBudget
from kernels.warmup import warm_ahead

OPS: tuple[str, ...] = ("blur_pool", "blur_pool_relu", "max_blur_pool")
DIRECTIONS: tuple[str, ...] = ("fwd", "bwd", "fwd_bwd")
IMPLS: tuple[str, ...] = ("shiftlab", "pytorch", "compile", "kornia")
BIG_MB = 64  # the goals are stated for activations of at least this size

# ResNet-18 downsampling sites: CIFAR (32x32 input) and ImageNet (224x224 input), batch 256.
FULL_SHAPES = ("256x64x32x32", "256x128x16x16", "256x64x112x112", "256x128x56x56", "256x256x28x28")
QUICK_SHAPES = ("256x64x32x32", "256x64x112x112")
CPU_SHAPES = ("16x64x32x32",)  # without a GPU: one CIFAR-sized map, seconds a case
FULL_FILTERS = (2, 3, 4, 5, 6, 7)
QUICK_FILTERS = (2, 3, 5, 7)

HALF_DTYPES = ("float16", "bfloat16")
#: The cases the bandwidth goals are stated for (at >= BIG_MB): (filter size, layout, dtype).
BANDWIDTH_CASES = set(itertools.product(FULL_FILTERS, LAYOUTS, HALF_DTYPES))

# Goals of the kernels on an H100: (name, op direction, column, threshold).
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("forward >= 80 % of copy bandwidth (>= 64 MB)", "fwd", "pct_copy", 80.0),
    ("backward >= 60 % of copy bandwidth (>= 64 MB)", "bwd", "pct_copy", 60.0),
    ("fwd+bwd >= 4x faster than pad+conv2d", "fwd_bwd", "speedup_vs_pytorch", 4.0),
    ("fwd+bwd >= 1.5x faster than torch.compile", "fwd_bwd", "speedup_vs_compile", 1.5),
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked configuration of an op."""

    op: str
    shape: tuple[int, int, int, int]
    filter_size: int
    layout: str
    dtype: str

    def make_input(self, device: torch.device) -> torch.Tensor:
        return random_input(self.shape, self.dtype, self.layout, device)


# ----------------------------------------------------------------------------- implementations


def shiftlab_op(op: str, filter_size: int, backend: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """shiftlab's public op with the given backend."""
    if op == "max_blur_pool":
        return functools.partial(
            kernels.max_blur_pool2d,
            filter_size=filter_size,
            stride=STRIDE,
            padding=PADDING,
            max_kernel=MAX_KERNEL,
            backend=backend,
        )
    return functools.partial(
        kernels.blur_pool2d,
        filter_size=filter_size,
        stride=STRIDE,
        padding=PADDING,
        relu=op == "blur_pool_relu",
        backend=backend,
    )


def make_impl(
    impl: str, case: Case, device: torch.device, backend: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable that computes ``case`` with implementation ``impl``."""
    if impl == "shiftlab":
        return shiftlab_op(case.op, case.filter_size, backend)
    if impl == "kornia":
        return kornia_op(case.op, case.filter_size)
    plain = pad_conv_formulation(
        case.op, case.filter_size, case.shape[1], DTYPES[case.dtype], device
    )
    if impl == "pytorch":
        return plain
    if impl == "compile":
        # Static, as a user with a fixed filter gets it: each case compiles a closure of the
        # same code, which Dynamo would otherwise turn dynamic from the second filter size on.
        return torch.compile(plain, dynamic=False)
    raise ValueError(f"impl={impl!r}: expected one of {IMPLS}")


def configure_compile(cases: int) -> None:
    """``torch.compile``'s settings for a sweep of ``cases``, the same in every process that
    compiles them (:func:`warm_case`), so that they share its caches. Each case compiles the
    formulation's one code object anew: Dynamo's limits on its compiles, per guard set and over
    the whole process (8 and 256 by default), would otherwise leave the later cases eager."""
    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, 4 * cases)
    config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 4 * cases)
    # Timing the backward alone re-runs it on a retained graph, which donated buffers forbid.
    torch._functorch.config.donated_buffer = False


def warm_case(case: Case, *, impls: Sequence[str], backend: str, device: str,
              cases: int = 1) -> None:
    """Run each implementation's forward and backward once on ``case``: in a pool of processes
    ahead of the sweep (:mod:`kernels.warmup`), this fills the Triton and Inductor caches the
    sweep then reads. ``cases``: the sweep's, any number of which one worker may warm. Raises,
    after trying them all, if some failed."""
    configure_compile(cases)
    # The pool already compiles in parallel: Inductor's own pool per worker would multiply the
    # processes (this setting is not part of Inductor's cache keys).
    torch._inductor.config.compile_threads = 1
    x = case.make_input(torch.device(device)).requires_grad_(True)
    failed = []
    for name in impls:
        try:
            y = make_impl(name, case, x.device, backend)(x)
            torch.autograd.grad(y, x, torch.randn_like(y))
        except Exception as err:  # the others still get warmed
            failed.append(f"{name}: {type(err).__name__}: {err}")
    if failed:
        raise RuntimeError("; ".join(failed))


def minimal_bytes(case: Case, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """Bytes each direction must move at least, each read once and each written once: the
    forward reads x and writes y; the backward reads y's gradient and writes x's and, past a
    ReLU or a max, what routes the gradient, as compact as the fused kernels keep it (a bit
    per element of x for the ReLU, eight to a byte along x's contiguous axis, as
    ``relu_mask_buffer`` packs it; a byte per max-map element for the max). Their forward's
    write of it is not counted; an implementation that reads x again moves more."""
    n, c, h, w = case.shape
    routing = {
        "blur_pool": 0,
        "blur_pool_relu": math.prod(bit_packed_shape(x)),
        "max_blur_pool": n * c * dense_max_size(h, MAX_KERNEL) * dense_max_size(w, MAX_KERNEL),
    }[case.op]
    fwd = x.nbytes + y.nbytes
    bwd = y.nbytes + x.nbytes + routing
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}


def measure(
    impl: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device, rep_ms: int
) -> tuple[dict[str, tuple[float, float]], torch.Tensor]:
    """(median ms, peak MiB) of forward, backward and forward+backward of ``impl`` on ``x``,
    and the output. Every call takes the gradient path, the one ``warm_case`` compiled (a call
    without grad would compile other kernel variants and Inductor graphs, untimed)."""
    x = x.detach().requires_grad_(True)
    y = impl(x)
    grad_y = torch.randn_like(y)

    def backward() -> None:
        torch.autograd.grad(y, x, grad_y, retain_graph=True)

    def forward_backward() -> None:
        torch.autograd.grad(impl(x), x, grad_y)

    timings = {
        "fwd": (time_ms(lambda: impl(x), device, rep_ms=rep_ms), math.nan),
        "bwd": (time_ms(backward, device, rep_ms=rep_ms), math.nan),
        "fwd_bwd": (
            time_ms(forward_backward, device, rep_ms=rep_ms),
            peak_memory_mb(forward_backward, device),
        ),
    }
    return timings, y.detach()


def copy_ms(x: torch.Tensor, device: torch.device, rep_ms: int) -> float:
    """Median ms of copying ``x`` into a tensor of the same layout (reads and writes x once)."""
    out = torch.empty_like(x)
    return time_ms(lambda: out.copy_(x), device, rep_ms=rep_ms)


# ----------------------------------------------------------------------------- the sweep


def run_cases(
    cases: Sequence[Case],
    impls: Sequence[str],
    device: torch.device,
    *,
    backend: str = "triton",
    rep_ms: int = 50,
    progress: bool = True,
    budget: TimeBudget | None = None,
    after_case: Callable[[pd.DataFrame], Any] | None = None,
) -> pd.DataFrame:
    """One row per (case, implementation, direction), speed-ups and roofline filled in.

    Cases run in the order given, while ``budget`` lasts; ``after_case`` receives the table
    so far after each one (to write it, so that a run cut short keeps what it measured).
    """
    from tqdm import tqdm

    budget = budget or TimeBudget(None)
    rows: list[dict[str, Any]] = []
    copy_cache: dict[tuple, float] = {}
    for case in tqdm(budget.over(cases), total=len(cases), desc="bench", disable=not progress):
        x = case.make_input(device)
        copy_key = (case.shape, case.layout, case.dtype)
        if copy_key not in copy_cache:
            copy_cache[copy_key] = copy_ms(x, device, rep_ms)
        copy_gbps = 2 * x.nbytes / copy_cache[copy_key] / 1e6
        base = {
            **dataclasses.asdict(case),
            "shape": "x".join(map(str, case.shape)),
            "input_mb": x.nbytes / 2**20,
            "copy_gb_per_s": copy_gbps,
        }
        for impl_name in impls:
            try:
                impl = make_impl(impl_name, case, device, backend)
                timings, y = measure(impl, x, device, rep_ms)
                moved = minimal_bytes(case, x, y)
            except Exception as err:  # a failing peer must not sink the whole sweep
                rows.append({**base, "impl": impl_name, "error": f"{type(err).__name__}: {err}"})
                continue
            for direction, (ms, peak_mb) in timings.items():
                gbps = moved[direction] / ms / 1e6
                rows.append(
                    {
                        **base,
                        "impl": impl_name,
                        "direction": direction,
                        "ms": ms,
                        "gb_per_s": gbps,
                        "pct_copy": 100 * gbps / copy_gbps,
                        "peak_mb": peak_mb,
                        "error": "",
                    }
                )
        del x
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if after_case is not None:
            after_case(add_speedups(pd.DataFrame(rows)))
    return add_speedups(pd.DataFrame(rows))


#: The columns that name a case in the results.
CASE_COLUMNS = ("op", "shape", "filter_size", "layout", "dtype")


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """``speedup_vs_<impl>``: that implementation's ms over this row's, same case and direction."""
    keys = [*CASE_COLUMNS, "direction"]
    for other in ("pytorch", "compile", "kornia"):
        column = f"speedup_vs_{other}"
        if "ms" not in df or other not in set(df["impl"]):
            df[column] = math.nan
            continue
        ref = df[df["impl"] == other][[*keys, "ms"]].rename(columns={"ms": "_ref_ms"})
        df = df.merge(ref, on=keys, how="left")
        df[column] = df["_ref_ms"] / df["ms"]
        df = df.drop(columns="_ref_ms")
    return df


def goal_table(df: pd.DataFrame, *, complete: bool = True, judged: bool = True) -> pd.DataFrame:
    """Each kernel goal: the worst value over the qualifying shiftlab rows, and met or not.

    A shiftlab case that failed among them (out of resources, say) is one the goal is not met
    on. A met goal is "met so far" when the sweep is not ``complete`` (cases left out could
    still miss it), and a bandwidth goal "met on N of 24 goal cases" when the run did not time
    every filter size 2-7 in both layouts and both half dtypes at >= 64 MiB. Timings that say
    nothing of the goals (the reference ops, or the kernels in Triton's interpreter: not
    ``judged``) leave every goal "not measured"."""
    needed = ["impl", "error", "direction", "ms", "input_mb", "dtype"]
    measured = judged and set(needed) <= set(df)
    ours = df[df["impl"] == "shiftlab"] if measured else pd.DataFrame(columns=needed)
    rows = []
    for name, direction, column, threshold in GOALS:
        cases = ours
        if column == "pct_copy":
            cases = cases[(cases["input_mb"] >= BIG_MB) & cases["dtype"].isin(HALF_DTYPES)]
        failed = (cases["error"] != "").any()
        sel = cases[(cases["error"] == "") & (cases["direction"] == direction)]
        values = sel[column].dropna() if column in sel else pd.Series(dtype=float)
        worst = float(values.min()) if len(values) else math.nan
        covered = BANDWIDTH_CASES & _covered(sel)
        if failed or worst < threshold:
            status = "not met"
        elif math.isnan(worst):
            status = "not measured"
        elif not complete:
            status = "met so far"
        elif column == "pct_copy" and covered != BANDWIDTH_CASES:
            status = f"met on {len(covered)} of {len(BANDWIDTH_CASES)} goal cases"
        else:
            status = "met"
        rows.append({"goal": name, "worst": worst, "threshold": threshold, "rows": len(values),
                     "status": status})  # fmt: skip
    return pd.DataFrame(rows)


def _covered(rows: pd.DataFrame) -> set[tuple]:
    """The (filter size, layout, dtype) cases among ``rows``."""
    if not {"filter_size", "layout", "dtype"} <= set(rows):
        return set()
    return set(rows[["filter_size", "layout", "dtype"]].itertuples(index=False, name=None))


FIGURES = ("kernels_bandwidth.png", "kernels_speedup.png")


def remove_figures(out: Path) -> None:
    """Remove an earlier run's figures, before this run writes its first results beside them
    (a run cut short, or one that draws fewer, would leave them showing other numbers)."""
    for name in FIGURES:
        (out / name).unlink(missing_ok=True)


def write_figures(df: pd.DataFrame, out: Path, measured: str) -> list[Path]:
    """Bandwidth (% of copy) and speed-up figures by filter size, a panel per direction and
    layout, each written whole. A bar is the mean over the ops, shapes and dtypes timed (the
    title names them and what was ``measured``); speed-ups are geometric means, on a log axis,
    so that one case's outlier does not stand for all."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    ok = df[df["error"] == ""] if "ms" in df else df.iloc[:0]
    if ok.empty:
        return []
    title = (f"{measured}; each bar the mean over {', '.join(sorted(set(ok['op'])))} on "
             f"{', '.join(sorted(set(ok['shape'])))} in {', '.join(sorted(set(ok['dtype'])))}")

    def bars(data: pd.DataFrame, y: str, label: str, hue: str, path: Path, *,
             ratio: bool = False) -> Path:  # fmt: skip
        """Bars of ``y`` by filter size, a panel per direction and layout."""
        grid = sns.catplot(
            data=data,
            x="filter_size",
            y=y,
            hue=hue,
            col="direction",
            row="layout",
            kind="bar",
            estimator=_geometric_mean if ratio else "mean",
            errorbar=None,
            height=3,
            aspect=1.3,
        )
        grid.set_axis_labels("filter size", label)
        if ratio:
            grid.set(yscale="log")
        grid.figure.suptitle(title + (" (geometric)" if ratio else ""), y=1.02, fontsize=9)
        return atomic_write(path, lambda temporary: grid.savefig(temporary, dpi=120, format="png"))

    paths = [bars(ok, "pct_copy", "% of copy bandwidth", "impl", out / FIGURES[0])]
    ours = (
        ok[ok["impl"] == "shiftlab"]
        .melt(
            id_vars=["filter_size", "direction", "layout"],
            value_vars=[c for c in ok.columns if c.startswith("speedup_vs_")],
            var_name="against",
            value_name="speed-up",
        )
        .dropna()
    )
    if not ours.empty:
        paths.append(bars(ours, "speed-up", "speed-up (shiftlab's)", "against", out / FIGURES[1],
                          ratio=True))  # fmt: skip
    return paths


def _geometric_mean(values: pd.Series) -> float:
    return float(np.exp(np.log(values).mean()))


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """shiftlab per op and direction: median ms, worst % of copy and worst speed-ups."""
    ours = df[(df["impl"] == "shiftlab") & (df["error"] == "")] if "ms" in df else df.iloc[:0]
    if ours.empty:
        return pd.DataFrame()
    speedups = [c for c in ours.columns if c.startswith("speedup_vs_") and ours[c].notna().any()]
    return (
        ours.groupby(["op", "direction"], sort=False)
        .agg(
            median_ms=("ms", "median"),
            min_pct_copy=("pct_copy", "min"),
            **{f"min_{c}": (c, "min") for c in speedups},
        )
        .reset_index()
    )


# ----------------------------------------------------------------------------- command line


def build_cases(
    shapes: Sequence[str],
    filters: Sequence[int],
    layouts: Sequence[str],
    dtypes: Sequence[str],
    ops: Sequence[str],
) -> list[Case]:
    """Every combination, checked; ``ValueError`` naming a bad value."""
    for name, values, accepted in (
        ("layout", layouts, LAYOUTS),
        ("dtype", dtypes, DTYPES),
        ("op", ops, OPS),
    ):
        for value in values:
            if value not in accepted:
                raise ValueError(f"{name}={value!r}: expected one of {tuple(accepted)}")
    return [
        Case(op, parse_shape(shape), k, layout, dtype)
        for shape, k, layout, dtype, op in itertools.product(shapes, filters, layouts, dtypes, ops)
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kernels.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a small sweep")
    parser.add_argument("--shapes", nargs="+", type=shape_text,
                        help="NxCxHxW (default: ResNet-18 sites on a GPU, "
                             f"{' '.join(CPU_SHAPES)} on the CPU)")
    parser.add_argument("--filters", nargs="+", type=positive(int),
                        help="filter sizes (default 2..7)")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS,
                        help="default: both")  # fmt: skip
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"],
                        choices=tuple(DTYPES), help="default: float16 bfloat16")  # fmt: skip
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS, help="default: all")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS,
                        help="default: all (kornia where installed)")  # fmt: skip
    parser.add_argument(
        "--backend",
        choices=("triton", "torch"),
        help="shiftlab's backend (torch: the reference ops; default: triton where the fused "
        "kernels run, on CUDA or under TRITON_INTERPRET=1, else torch)",
    )
    parser.add_argument("--device", type=device_option,
                        default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda where there is one, else cpu")  # fmt: skip
    parser.add_argument("--rep-ms", type=positive(int), default=50,
                        help="time spent per measurement (default 50)")  # fmt: skip
    parser.add_argument(
        "--budget-s",
        type=positive(float),
        help="stop starting cases after this many seconds (cases run in the "
        "order of --shapes, --filters, --layouts, --dtypes, --ops; results "
        "are written after each case)",
    )
    parser.add_argument(
        "--jobs",
        type=positive(int),
        help="processes that compile the cases ahead, in parallel (default: the "
        "CPU cores, at most 16, on a GPU; else 1)",
    )
    parser.add_argument(
        "--out", type=output_folder, help="results folder (default: benchmarks/results/<gpu>)"
    )
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    fused_run = fused_kernels_run(args.device)
    if args.backend is None:
        args.backend = "triton" if fused_run else "torch"
    elif args.backend == "triton" and "shiftlab" in args.impls and not fused_run:
        parser.error(f"--backend triton: the fused kernels do not run on --device {args.device} "
                     "(they take CUDA, or the CPU with TRITON_INTERPRET=1); --backend torch "
                     "times shiftlab's reference ops there")  # fmt: skip
    return args


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    device = torch.device(args.device)
    gpu_shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    shapes = args.shapes or (gpu_shapes if device.type == "cuda" else CPU_SHAPES)
    filters = args.filters or (QUICK_FILTERS if args.quick else FULL_FILTERS)
    cases = build_cases(shapes, filters, args.layouts, args.dtypes, args.ops)
    impls = list(args.impls)
    notes = []
    if "kornia" in impls and importlib.util.find_spec("kornia") is None:
        impls.remove("kornia")
        notes.append("kornia is not installed: its column is skipped")
    versions = {}
    if "kornia" in impls:
        versions["kornia"] = kornia_version = importlib.import_module("kornia").__version__
        unlike = kornia_differs(kornia_version, cases)
        if unlike:
            notes.append(unlike)
    if "compile" in impls:  # (on any device: past Dynamo's limit the rest would run eager)
        configure_compile(len(cases))
    budget = TimeBudget(args.budget_s)
    warm = functools.partial(warm_case, impls=tuple(impls), backend=args.backend,
                             device=args.device, cases=len(cases))  # fmt: skip
    warm_ahead(warm, cases, jobs=args.jobs, device_type=device.type, budget=budget)
    out = args.out or default_results_dir(device)
    fused = args.backend == "triton"
    # The goals are a GPU's: the Triton interpreter's CPU timings say nothing about them.
    judged = fused and device.type == "cuda"
    if "shiftlab" in impls and not fused:
        notes.append("shiftlab's rows time its reference ops (--backend torch)")
    meta = {**run_metadata(device), **versions, "notes": notes, "impls": impls,
            "backend": args.backend}
    what = (f"shiftlab's {'kernels' if fused else 'reference ops'} on {meta['device']}"
            + ("" if judged or not fused else " in Triton's interpreter"))  # fmt: skip

    saved: list[pd.DataFrame] = []  # the table as last written

    def save(df: pd.DataFrame, *, complete: bool = False) -> pd.DataFrame:
        if not saved:  # this run's results replace an earlier run's: and so its figures
            remove_figures(out)
        saved[:] = [df]
        goals = goal_table(df, complete=complete, judged=judged)
        records = json.loads(goals.to_json(orient="records"))
        write_results(out, "kernels", df, meta, {"cases": len(cases), "goals": records})
        return goals

    try:
        df = run_cases(cases, impls, device, backend=args.backend, rep_ms=args.rep_ms,
                       budget=budget, after_case=save)  # fmt: skip
    except KeyboardInterrupt:  # the cases so far are written: say that the rest were not run
        if saved:
            done = len(saved[0].drop_duplicates(list(CASE_COLUMNS)))
            notes.append(f"interrupted (Ctrl-C) after {done} of {len(cases)} cases")
            save(saved[0])
        raise
    cut = budget.note("cases")
    if cut:
        notes.append(cut)
    goals = save(df, complete=not cut)
    if not args.no_figures:
        write_figures(df, out, what)
    errors = df[df["error"] != ""] if "error" in df else df.iloc[:0]
    for row in errors.drop_duplicates(["impl", "error"]).itertuples():
        print(f"failed: {row.impl} {row.op} {row.shape} k={row.filter_size}: {row.error}")
    for note in notes:
        print(f"note: {note}")
    print(f"results: {out}")
    print_table(summary(df), what)
    if judged:
        print_table(goals, "goals")
    elif fused:
        print("goals: not judged (they are a GPU's; these are the Triton interpreter's timings)")
    else:
        print("goals: not judged (they are the fused kernels', not the reference ops')")
    return df


def kornia_differs(version: str, cases: Sequence[Case]) -> str | None:
    """A note when kornia ``version`` computes less than the others on some of ``cases``:
    before 0.9 it padded ``(k - 1) // 2`` on both sides (0.9 on: that before, ``k // 2``
    after, as the others), so at even filter sizes its max_blur_pool2d, on the odd map the
    2x2 max leaves of an even one, gave a row and a column fewer."""
    release = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    even = sorted({case.filter_size for case in cases
                   if case.op == "max_blur_pool" and case.filter_size % 2 == 0})  # fmt: skip
    if release >= (0, 9) or not even:
        return None
    return (f"kornia {version} pads (k-1)//2 on both sides: at even filter sizes "
            f"({', '.join(map(str, even))}) its max_blur_pool2d gives a row and a column fewer "
            "than the others, less work (kornia 0.9 on pads as they do)")


def exit_status(df: pd.DataFrame) -> int:
    """The command's exit status: 1 when no implementation measured any case (all failed, or
    the budget ran out first), else 0."""
    measured = "error" in df and (df["error"] == "").any()
    if not measured:
        print("error: no case was measured", file=sys.stderr)
    return 0 if measured else 1


if __name__ == "__main__":
    run_command(lambda: exit_status(main()))
