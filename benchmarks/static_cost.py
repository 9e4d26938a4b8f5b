"""Instructions per output of the kernels, read from their machine code, no GPU needed.

``python -m benchmarks.static_cost [--arch 90] [--filters 3 5 7]`` compiles the forward kernels
(MaxBlurPool's writing its argmax codes, as in training) and the backward kernels' paths, inside
a map and along its edge rows, for an NVIDIA target with Triton's own ``ptxas``, and counts the
SASS instructions of one program per output it writes, as the program issues them: the tap
loops are unrolled, and the forwards' loop over output rows and the backwards' over
input-gradient rows (where the compiler kept them) count as often as they run, which their
loads (forward) and stores (backward) tell: a step the compiler peeled off a loop counts once,
and a loop it unrolled in part is an error, not a wrong count. Code under a branch counts as
if taken: the padded rows' selects of the edge paths count at every row, though only the rows
whose taps reach past the map run them, so those paths' counts are upper bounds. The kernels
are memory- or issue-bound, so this predicts which variant of a kernel is faster before a GPU
is at hand; it says nothing about memory stalls, so a GPU run (``kernels.bench``) has the last
word. Run it without ``TRITON_INTERPRET``: interpreted kernels cannot be compiled.
"""

from __future__ import annotations

import argparse
import collections
import functools
import inspect
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from benchmarks.table_output import write_and_print
from kernels.baselines import PADDING, STRIDE
from kernels.cli_types import output_file, positive
from kernels.filters import make_taps
from kernels.hardware import interpreter_requested
from kernels.ops import streamed_backward, streamed_forward
from kernels.ops.common import COMPILE_OPTIONS, PADDING_CODES
from kernels.ops.lanes import ALONG_C, ALONG_W
from kernels.padding import pad_sizes
from kernels.tuning import pow2_bucket

#: The oldest compute capability the kernels compile for (Turing).
MIN_ARCH = 75
POINTERS = {
    "x_ptr": "*bf16",
    "codes_ptr": "*u8",
    "m_ptr": "*u8",
    "y_ptr": "*bf16",
    "g_ptr": "*bf16",
    "dx_ptr": "*bf16",
    "taps_ptr": "*fp32",
    "col_src_ptr": "*i32",
    "col_wt_ptr": "*fp32",
    "band_ptr": "*fp32",
    "extra_src_ptr": "*i32",
    "extra_wt_ptr": "*fp32",
}
# (BLOCK_C, BLOCK_H, BLOCK_W), an NCHW-like then a channels_last-like tile of each kernel: for
# the forwards a tile of outputs, four rows streamed of 8 columns of 16 planes or of 64 channels
# × 8 columns (the heuristic streams eight, which cost less per output: the rows above a
# program's first output are formed once per program; compiled with eight, LLVM unrolls some
# of the loops in part, which these counts cannot follow).
FWD_TILES = ((16, 4, 8), (64, 4, 8))
# Tiles of the input gradient for the backwards (their heuristic's at k <= 5).
BWD_TILES = ((1, 16, 128), (128, 16, 4))


def compile_for(
    fn: Any, constexprs: dict[str, Any], arch: int, num_warps: int, contiguous: str
) -> Any:
    """``fn`` compiled for ``sm_<arch>`` with the given constexprs; other arguments are i32.

    As a launch would: the stride arguments (``s<tensor>_<axis>``) along the ``contiguous``
    axis (``"w"``: NCHW, ``"c"``: channels_last) are the constant 1, the other strides and
    the pointers are known to be multiples of 16 (ResNet sizes), as Triton specialises such
    arguments.
    """
    signature, values, attrs = {}, {}, {}
    for index, name in enumerate(inspect.signature(fn.fn).parameters):
        stride = re.fullmatch(r"s[a-z]_([nchw])", name)
        if name in constexprs or (stride and stride.group(1) == contiguous):
            signature[name] = "constexpr"
            values[(index,)] = constexprs.get(name, 1)
            continue
        signature[name] = POINTERS.get(name, "i32")
        if stride or name in POINTERS:
            attrs[(index,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn=fn, signature=signature, constexprs=values, attrs=attrs)
    options = {"num_warps": num_warps, **COMPILE_OPTIONS}
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def refuse_interpreter(parser: argparse.ArgumentParser) -> None:
    """Compiling for a GPU takes Triton's compiler, which ``TRITON_INTERPRET`` sets aside."""
    if interpreter_requested():
        parser.error("TRITON_INTERPRET is set: this tool compiles the kernels for a GPU, which "
                     "Triton's interpreter does not; run it without TRITON_INTERPRET")


def cuobjdump(cubin: bytes, option: str) -> str:
    """What ``cuobjdump <option>`` (from Triton's wheel) prints for ``cubin``."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.cubin"
        path.write_bytes(cubin)
        return subprocess.run(
            [str(tool), option, str(path)], capture_output=True, text=True, check=True
        ).stdout


def compute_capability(text: str) -> int:
    """An argparse type: a compute capability (``90`` for ``sm_90``) these kernels compile
    for here (:func:`compilable_architectures`)."""
    known = compilable_architectures()
    if not text.isdigit() or int(text) not in known:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a compute capability the kernels compile for here: one of "
            f"{', '.join(map(str, known))}"
        )
    return int(text)


@functools.cache
def compilable_architectures() -> tuple[int, ...]:
    """The compute capabilities from Turing (75) up that the ``ptxas`` Triton picks for each
    (its own for Hopper and later) compiles for."""
    from triton.backends.nvidia.compiler import get_ptxas

    found: set[int] = set()
    for low, high in ((MIN_ARCH, 90), (90, 1_000)):
        tool = get_ptxas(low).path
        try:
            usage = subprocess.run([tool, "--help"], capture_output=True, text=True).stdout
        except OSError as error:
            raise argparse.ArgumentTypeError(f"cannot run {tool} ({error})") from None
        found |= {arch for arch in map(int, re.findall(r"'sm_(\d+)'", usage)) if low <= arch < high}
    return tuple(sorted(found))


def sass_counts(compiled: Any) -> tuple[collections.Counter, collections.Counter]:
    """Opcode counts of the compiled kernel's SASS outside its loop, issued once per program,
    and those of the loop's body (from a backward branch's target to the branch; empty when
    the kernel has no loop or the compiler unrolled it). ``ValueError`` on more than one loop."""
    sass = cuobjdump(compiled.asm["cubin"], "-sass")
    code = re.findall(r"^\s+/\*([0-9a-f]+)\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*)",
                      sass, re.M)  # fmt: skip
    code = [(int(at, 16), op.split(".")[0], rest) for at, op, rest in code]
    loops = [
        (int(target.group(1), 16), at)
        for at, op, rest in code
        if op == "BRA" and (target := re.search(r"0x([0-9a-f]+)", rest))
        and int(target.group(1), 16) < at  # not the trap's branch to itself after the code
    ]
    if len(loops) > 1:
        raise ValueError(f"{len(loops)} loops in the kernel's code, expected at most one")
    once, body = collections.Counter(), collections.Counter()
    for at, op, _ in code:
        (body if loops and loops[0][0] <= at <= loops[0][1] else once)[op] += 1
    return once, body


@triton.jit
def _forward_tile(x_ptr, y_ptr, codes_ptr, m_ptr, taps_ptr, H, W, sx_c, sx_h, sx_w, sy_c, sy_h,
                  sy_w, sk_c, sk_h, sk_w, sm_c, sm_h, sm_w, TAPS: tl.constexpr,
                  STRIDE: tl.constexpr, PAD_BEFORE: tl.constexpr, PADDING: tl.constexpr,
                  MAX_KERNEL: tl.constexpr, RELU: tl.constexpr, MASK: tl.constexpr,
                  MASK_W: tl.constexpr, PACK_C: tl.constexpr, MAP_ROWS: tl.constexpr,
                  MAP_COLS: tl.constexpr, CHECK_H: tl.constexpr, CHECK_W: tl.constexpr,
                  ACC_DTYPE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                  BLOCK_W: tl.constexpr):  # fmt: skip
    """One path of the streamed forward as training runs it (blur-pool's with ``MAX_KERNEL``
    1, the ReLU fused with ``RELU`` and its mask written with ``MASK``; MaxBlurPool's with 2,
    writing the codes): tiles inside the map (most tiles of a large map), or through the
    padding along H, or along both axes."""
    c = (tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C))[:, None, None]
    cols = (tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W))[None, None, :]
    row0 = tl.program_id(1) * BLOCK_H
    streamed_forward._streamed_rows(
        x_ptr + c * sx_c, y_ptr + c * sy_c, codes_ptr + c * sk_c, taps_ptr, c >= 0, row0, cols,
        H, W, H, W, sx_h, sx_w, sy_h, sy_w, sk_h, sk_w, TAPS, STRIDE, PAD_BEFORE, PADDING, True,
        MAX_KERNEL, RELU, MAX_KERNEL > 1, MAP_ROWS, MAP_COLS, CHECK_H, CHECK_W, True, ACC_DTYPE,
        False, BLOCK_H,
    )  # fmt: skip
    if MASK:
        streamed_forward._store_relu_mask(
            x_ptr + c * sx_c, m_ptr, 0, c, tl.program_id(0) * BLOCK_C,
            row0 + tl.arange(0, BLOCK_H)[None, :, None], tl.program_id(2) * BLOCK_W, H, H, W,
            sx_h, sx_w, 0, sm_c, sm_h, sm_w, STRIDE, BLOCK_C, BLOCK_H, BLOCK_W,
            MASK_W, PACK_C, False, False,
        )  # fmt: skip


def forward_case(
    k: int, tile: tuple[int, int, int], max_kernel: int, check_h: bool, check_w: bool,
    relu: bool = False,
) -> tuple[Any, dict[str, Any], int]:
    """The tile streams ``BLOCK_H`` rows of ``BLOCK_C`` × ``BLOCK_W`` outputs (its loop's
    steps: :func:`forward_steps`)."""
    block_c, block_h, block_w = tile
    before = pad_sizes(k, 0)[0]
    map_rows, map_cols = streamed_forward.map_extent(k, STRIDE, before, block_h, max_kernel > 1)
    constexprs = dict(TAPS=k, STRIDE=STRIDE, PAD_BEFORE=before, PADDING=PADDING_CODES[PADDING],
                      MAX_KERNEL=max_kernel, RELU=relu, MASK=relu,
                      MASK_W=pow2_bucket(STRIDE * block_w),
                      PACK_C=tile == FWD_TILES[1],  # the channels_last-like tile packs along C
                      MAP_ROWS=map_rows, MAP_COLS=map_cols, CHECK_H=check_h, CHECK_W=check_w,
                      ACC_DTYPE=tl.float32, BLOCK_C=block_c, BLOCK_H=block_h,
                      BLOCK_W=block_w)  # fmt: skip
    return _forward_tile, constexprs, block_c * block_h * block_w


def forward_steps(constexprs: dict[str, Any]) -> int:
    """How often the streamed forward's loop runs, one output row a step (those before the
    first output's included)."""
    taps, stride = constexprs["TAPS"], constexprs["STRIDE"]
    first = streamed_forward._rows_before_steps(taps, stride)
    steps = streamed_forward._looped_steps(first, stride, constexprs["BLOCK_H"],
                                           constexprs["MAP_ROWS"])  # fmt: skip
    return first // stride + steps


def maskless_loop(compiled: Callable[[dict[str, Any]], Any], constexprs: dict[str, Any],
                  body: collections.Counter) -> tuple[collections.Counter, collections.Counter]:
    """:func:`sass_counts` of the forward writing no mask but otherwise as ``constexprs``:
    its loads tell how often the loop runs, where the mask's, outside the loop, would be
    taken for rows. ``ValueError`` unless its loop loads as the one with the mask (``body``)
    does (their other instructions may differ by a few, as registers are allocated)."""
    once, plain_body = sass_counts(compiled({**constexprs, "MASK": False}))
    if plain_body["LDG"] != body["LDG"]:
        raise ValueError(f"the forward's loop loads {body['LDG']} times with the mask and "
                         f"{plain_body['LDG']} without: its trips cannot be read off the "
                         "loads")  # fmt: skip
    return once, plain_body


def loop_trips(once: collections.Counter, body: collections.Counter, opcode: str, fixed: int,
               rows: int, stride: int, steps: int) -> int:  # fmt: skip
    """How often a kernel's loop body runs, read off its ``opcode`` instructions: a program
    issues ``fixed`` of them once and, for each of its ``rows`` rows, what a row of the body
    issues (a step handles ``stride`` rows), so the body runs for the rows the code outside it
    does not handle: the ``steps`` the kernel loops over but those the compiler peeled off (at
    k = 4 it peels the forward's first, whose output row is not written). A count that is not
    a whole number of those steps means the compiler changed the loop otherwise (unrolled it
    in part): an error, not a wrong count. 0 when the compiler unrolled the loop whole."""
    if not body:
        return 0
    issued = fixed + rows * body[opcode] / stride
    trips = (issued - once[opcode]) / body[opcode]
    if trips != int(trips) or not 1 <= trips <= steps:
        raise ValueError(f"{once[opcode]} {opcode} outside the loop and {body[opcode]} in it, "
                         f"where the program issues {issued:g}: the compiler changed the loop "
                         "beyond peeling steps off it")  # fmt: skip
    return int(trips)


def forward_trips(once: collections.Counter, body: collections.Counter,
                  constexprs: dict[str, Any]) -> int:  # fmt: skip
    """The forward's loop trips (:func:`loop_trips`), read off its loads: the taps' and those
    of each input row its tile reads."""
    rows = constexprs["MAP_ROWS"] + constexprs["MAX_KERNEL"] - 1
    return loop_trips(once, body, "LDG", constexprs["TAPS"], rows, constexprs["STRIDE"],
                      forward_steps(constexprs))  # fmt: skip


def backward_trips(once: collections.Counter, body: collections.Counter,
                   constexprs: dict[str, Any]) -> int:  # fmt: skip
    """The backward's loop trips (:func:`loop_trips`), read off its stores: one row of the
    input gradient for each of its ``BLOCK_H`` rows."""
    stride, block_h = constexprs["STRIDE"], constexprs["BLOCK_H"]
    steps = streamed_backward._looped_row_steps(block_h + constexprs["MAX_KERNEL"] - 1,
                                                constexprs["MAX_KERNEL"], stride)  # fmt: skip
    return loop_trips(once, body, "STG", 0, block_h, stride, steps)


@triton.jit
def _backward_tile(g_ptr, codes_ptr, m_ptr, dx_ptr, taps_ptr, col_src_ptr, col_wt_ptr, band_ptr,
                   extra_src_ptr, extra_wt_ptr, H, W, sg_c, sg_h, sg_w, sk_c, sk_h, sk_w, sm_c,
                   sm_h, sm_w, sd_c, sd_h, sd_w, TAPS: tl.constexpr, STRIDE: tl.constexpr,
                   PAD_BEFORE: tl.constexpr, MAX_KERNEL: tl.constexpr, RELU: tl.constexpr,
                   SLOTS: tl.constexpr, BAND: tl.constexpr, PLAIN_H: tl.constexpr,
                   ACC_DTYPE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                   BLOCK_W: tl.constexpr):  # fmt: skip
    """One path of the streamed backward (blur-pool's with ``MAX_KERNEL`` 1, MaxBlurPool's with
    2): ``PLAIN_H``, tiles whose rows lie in the map's plain rows (most tiles of a large map),
    else tiles near its top or bottom. Both read each lane's columns through its tables, so
    tiles near the left and right edges cost the same as inner ones. ``RELU``: blur-pool's
    after the fused ReLU, its mask packed along the contiguous axis."""
    c = (tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C))[:, None, None]
    cols = (tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W))[None, None, :]
    reads, read_ok, weights = streamed_backward.lane_routes(
        col_src_ptr, col_wt_ptr, cols, cols < W, W, sg_w, MAX_KERNEL, SLOTS, False)
    # channels_last-like tiles (several channels) pack the mask along C.
    mask_maps, mask_cols, mask_bits = streamed_backward.mask_bytes(m_ptr, 0, c, cols, 0, sm_c,
                                                                   BLOCK_C > 1, False)
    streamed_backward._streamed_gradient(
        g_ptr + c * sg_c, codes_ptr + c * sk_c, mask_maps, dx_ptr + c * sd_c, taps_ptr, band_ptr,
        extra_src_ptr, extra_wt_ptr, reads, read_ok, weights, mask_cols, mask_bits,
        (c >= 0) & (cols < W), tl.program_id(1) * BLOCK_H, cols, H, W, H, H, sg_h, sk_h, sk_w,
        sm_h, sm_w, sd_h, sd_w, TAPS, STRIDE, PAD_BEFORE, MAX_KERNEL, RELU, SLOTS, BAND, 0,
        PLAIN_H, ACC_DTYPE, False, ALONG_C if BLOCK_C > 1 else ALONG_W, BLOCK_C, BLOCK_H, BLOCK_W,
    )  # fmt: skip


def backward_case(
    k: int, tile: tuple[int, int, int], max_kernel: int, plain_h: bool, relu: bool = False
) -> tuple[Any, dict[str, Any], int]:
    """``BLOCK_H`` input-gradient rows of ``BLOCK_C`` × ``BLOCK_W`` streamed, with the column
    tables of a 112-wide map (how many slots each lane reads)."""
    block_c, block_h, block_w = tile
    taps = tuple(float(t) for t in make_taps(k).tolist())
    map_size = 113 - max_kernel
    col_src, _ = streamed_backward.column_routes(map_size, taps, STRIDE, 0, PADDING,
                                                 max_kernel, torch.float32,
                                                 torch.device("cpu"))  # fmt: skip
    band = streamed_backward.row_weights(map_size, taps, STRIDE, 0, PADDING)[0]
    constexprs = dict(TAPS=k, STRIDE=STRIDE, PAD_BEFORE=pad_sizes(k, 0)[0],
                      MAX_KERNEL=max_kernel, RELU=relu, SLOTS=col_src.shape[0],
                      BAND=band.shape[1], PLAIN_H=plain_h,
                      ACC_DTYPE=tl.float32, BLOCK_C=block_c, BLOCK_H=block_h,
                      BLOCK_W=block_w)  # fmt: skip
    return _backward_tile, constexprs, block_c * block_h * block_w


def measure(filters: Sequence[int], arch: int, num_warps: int) -> pd.DataFrame:
    """One row per (op, filter size, tile): instructions, loads and shuffles per output."""
    rows = []
    for op, make, tiles in (
        ("blur_pool_interior", partial(forward_case, max_kernel=1, check_h=False, check_w=False),
         FWD_TILES),
        ("blur_pool_edge_rows", partial(forward_case, max_kernel=1, check_h=True, check_w=False),
         FWD_TILES),
        ("blur_pool_edge", partial(forward_case, max_kernel=1, check_h=True, check_w=True),
         FWD_TILES),
        ("blur_pool_relu_mask_interior",
         partial(forward_case, max_kernel=1, check_h=False, check_w=False, relu=True),
         FWD_TILES),
        ("blur_pool_bwd_interior",
         partial(backward_case, max_kernel=1, plain_h=True), BWD_TILES),
        ("blur_pool_relu_bwd_interior",
         partial(backward_case, max_kernel=1, plain_h=True, relu=True), BWD_TILES),
        ("blur_pool_bwd_edge_rows",
         partial(backward_case, max_kernel=1, plain_h=False), BWD_TILES),
        ("max_blur_pool_interior",
         partial(forward_case, max_kernel=2, check_h=False, check_w=False), FWD_TILES),
        ("max_blur_pool_edge_rows",
         partial(forward_case, max_kernel=2, check_h=True, check_w=False), FWD_TILES),
        ("max_blur_pool_edge", partial(forward_case, max_kernel=2, check_h=True, check_w=True),
         FWD_TILES),
        ("max_blur_pool_bwd_interior",
         partial(backward_case, max_kernel=2, plain_h=True), BWD_TILES),
        ("max_blur_pool_bwd_edge_rows",
         partial(backward_case, max_kernel=2, plain_h=False), BWD_TILES),
    ):
        for k in filters:
            for tile, contiguous in zip(tiles, "wc", strict=True):
                fn, constexprs, outputs = make(k, tile)
                compiled = partial(compile_for, fn, arch=arch, num_warps=num_warps,
                                   contiguous=contiguous)  # fmt: skip
                once, body = sass_counts(compiled(constexprs))
                if fn is _backward_tile:
                    trips = backward_trips(once, body, constexprs)
                elif constexprs["MASK"]:  # the mask's loads are the program's: the loop's
                    trips = forward_trips(*maskless_loop(compiled, constexprs, body), constexprs)
                else:
                    trips = forward_trips(once, body, constexprs)
                counts = once + collections.Counter({name: n * trips
                                                     for name, n in body.items()})  # fmt: skip
                per_output = 32 * num_warps / outputs
                rows.append({
                    "op": op, "filter_size": k, "tile": "x".join(map(str, tile)),
                    "outputs_per_program": outputs,
                    "instructions_per_output": sum(counts.values()) * per_output,
                    "global_loads_per_output": counts["LDG"] * per_output,
                    "shuffles_per_output": counts["SHFL"] * per_output,
                })  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.static_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", type=compute_capability, default=90,
                        help="compute capability (default 90: Hopper)")
    parser.add_argument("--filters", nargs="+", type=positive(int), default=[3, 5, 7])
    parser.add_argument("--num-warps", type=int, choices=(1, 2, 4, 8, 16, 32), default=4)
    parser.add_argument("--csv", type=output_file, help="also write the table here")
    args = parser.parse_args(argv)
    refuse_interpreter(parser)
    df = measure(args.filters, args.arch, args.num_warps)
    return write_and_print(df, args.csv, digits=1)


if __name__ == "__main__":
    main()
