"""Pieces shared by the blur-pool kernels: the backward's plain path and gather tables,
tiling and launch plumbing.

Every op here is separable: along each axis an output reads a few input positions with fixed
weights. The padding mode only changes *which* positions. The forward computes them
arithmetically (:func:`padded_source`). The backward needs the transpose of that map. Away
from the edges it is a plain transposed filter: split by phase (position modulo the stride),
every position of a phase is reached by the same taps, so the weights are uniform and the
reads need no mask (:func:`transposed_blur`, on :func:`plain_interval`). Near an edge it is
many-to-one under reflect/circular/replicate padding (several taps can land on one input, and
on a map smaller than the pad even several outputs' taps); there, tables inverted on the host
per axis size (per input: the outputs that read it and the summed weight) make it a gather
(:func:`separable_gather`). Both are deterministic, with no atomics. Tables hold
O(size · taps) entries and are cached.

All addressing goes through strides, so NCHW and channels_last inputs are read in place.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable
from torch.utils._python_dispatch import _get_current_dispatch_mode

from kernels.padding import pad_index, pad_sizes
from kernels.tuning import check_config, launch_config, lookup_state, tuning_key

INT32_LIMIT = 2**31
# The padding mode as the forward kernel's constexpr (spec §2's four modes).
PADDING_CODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}


# ----------------------------------------------------------------------------- sizes and layout


def blur_output_size(size: int, stride: int, pad_off: int) -> int:
    """Spec §2: ``floor((size + 2·pad_off - 1) / stride) + 1`` (works on SymInts too)."""
    return (size + 2 * pad_off - 1) // stride + 1


def pooled_shape(
    shape: tuple[int, ...], stride: int, pad_off: int, max_kernel: int = 1
) -> tuple[int, ...]:
    """Output shape of blur-pool (spec §2) on the ``max_kernel`` dense max map of an NCHW shape
    (the map itself when ``max_kernel`` is 1: plain blur-pool)."""
    n, c, h, w = shape
    return (
        n,
        c,
        blur_output_size(h - max_kernel + 1, stride, pad_off),
        blur_output_size(w - max_kernel + 1, stride, pad_off),
    )


def keeps_channels_last(x: torch.Tensor) -> bool:
    """Whether outputs derived from ``x`` should be channels_last (x is, and not also NCHW)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The memory format outputs derived from ``x`` take (:func:`keeps_channels_last`)."""
    return torch.channels_last if keeps_channels_last(x) else torch.contiguous_format


def empty_output(
    x: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` with ``x``'s device and memory format, and its
    dtype unless ``dtype`` is given."""
    return torch.empty(
        shape, dtype=dtype or x.dtype, device=x.device, memory_format=memory_format_of(x)
    )


def output_buffer(
    out: torch.Tensor | None, like: torch.Tensor, shape: tuple[int, ...]
) -> torch.Tensor:
    """``out`` when given (it must match ``shape`` and ``like``'s dtype and device), else a new
    tensor in ``like``'s memory format. Passing ``out`` lets tests poison it beforehand."""
    if out is None:
        return empty_output(like, shape)
    if tuple(out.shape) != tuple(shape) or out.dtype != like.dtype or out.device != like.device:
        raise ValueError(
            f"out: shape {tuple(out.shape)}, {out.dtype} on {out.device}; expected "
            f"{tuple(shape)}, {like.dtype} on {like.device}"
        )
    return out


def gradient_buffer(
    grad: torch.Tensor,
    shape: tuple[int, ...],
    channels_last: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``out`` when given (checked as :func:`output_buffer` does), else a new tensor for an
    input gradient: ``shape``, ``grad``'s dtype and device, the input's layout."""
    if out is not None:
        return output_buffer(out, grad, shape)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=layout)


def needs_int64(*tensors: torch.Tensor) -> bool:
    """True when some element of some tensor lies at an offset int32 cannot hold."""
    for t in tensors:
        if t.numel() == 0:
            continue
        steps = zip(t.shape, t.stride(), strict=True)
        extent = 1 + sum((size - 1) * stride for size, stride in steps)
        if max(extent, t.numel()) >= INT32_LIMIT:
            return True
    return False


def accumulator_dtype(x: torch.Tensor) -> tl.dtype:
    """fp32 accumulation for every input type, fp64 for fp64 inputs (so gradcheck works)."""
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def accumulator_torch_dtype(x: torch.Tensor) -> torch.dtype:
    """:func:`accumulator_dtype` as a torch dtype (for the taps handed to a kernel)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------- backward tables


class GradientTables(NamedTuple):
    """The backward gather tables of one axis, on the device the op runs on.

    ``src``/``wt``: (width, in_size) — the outputs reading each input (-1: empty slot) and the
    summed weight of every tap by which that output reads it; ``count``: (in_size,) how many
    slots each input uses (its first ones). A few inputs near a border can need more slots
    than the rest, so a tile loops only over as many as its own positions use. Tables are
    stored slot-major: one slot's entries for neighbouring positions are neighbours in memory.
    """

    src: torch.Tensor
    wt: torch.Tensor
    count: torch.Tensor


@functools.lru_cache(maxsize=512)
def transposed_filter(
    size: int, taps: tuple[float, ...], stride: int, pad_off: int, padding: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The transpose of blur-pooling an axis of ``size`` (spec §2), in float64 on the CPU:
    ``src``/``wt`` (size, width), the outputs reading each input, first slots first (-1:
    empty slot), and the summed weight of every tap by which each reads it."""
    k = len(taps)
    out_size = blur_output_size(size, stride, pad_off)
    source = pad_index(size, *pad_sizes(k, pad_off), padding)
    fwd_src = source[torch.arange(out_size)[:, None] * stride + torch.arange(k)[None, :]]
    fwd_wt = torch.tensor(taps, dtype=torch.float64).expand(out_size, k)

    # Merge the (input, output) pairs that repeat, then lay each input's list out as one row,
    # padded to the longest list.
    outputs = torch.arange(out_size)[:, None].expand(out_size, k)
    read = fwd_src >= 0
    pair = fwd_src[read] * out_size + outputs[read]
    pairs, inverse = torch.unique(pair, sorted=True, return_inverse=True)
    weights = torch.zeros(pairs.numel(), dtype=torch.float64).index_add_(0, inverse, fwd_wt[read])
    inputs, readers = pairs // out_size, pairs % out_size
    counts = torch.bincount(inputs, minlength=size)
    slot = torch.arange(pairs.numel()) - (torch.cumsum(counts, 0) - counts)[inputs]
    width = max(1, int(counts.max()))
    src = torch.full((size, width), -1, dtype=torch.int64)
    wt = torch.zeros((size, width), dtype=torch.float64)
    src[inputs, slot] = readers
    wt[inputs, slot] = weights
    return src, wt


@functools.lru_cache(maxsize=512)
def gradient_tables(
    size: int,
    taps: tuple[float, ...],
    stride: int,
    pad_off: int,
    padding: str,
    device: torch.device,
) -> GradientTables:
    """:func:`transposed_filter` as gather tables on ``device``."""
    src, wt = transposed_filter(size, taps, stride, pad_off, padding)
    return GradientTables(
        src.t().to(device=device, dtype=torch.int32).contiguous(),
        wt.t().to(device=device, dtype=torch.float32).contiguous(),
        (src >= 0).sum(1).to(device=device, dtype=torch.int32),
    )


@functools.lru_cache(maxsize=512)
def plain_interval(
    size: int, taps: int, stride: int, pad_off: int, padding: str
) -> tuple[int, int]:
    """The longest stretch [first, last] of map positions whose gradient is a plain transposed
    filter: no pad position reads them, and every output a tap reaches from them exists.
    Backward tiles inside it along both axes need neither tables nor masks. (1, 0) if none."""
    before, after = pad_sizes(taps, pad_off)
    source = pad_index(size, before, after, padding).tolist()
    readers = collections.Counter(source)
    out_size = blur_output_size(size, stride, pad_off)
    plain = []
    for p in range(size):
        u = p + before
        plain.append(
            readers[p] == 1
            and source[u] == p
            and all(
                0 <= u // stride - j < out_size
                for j in range(-(-taps // stride))
                if u % stride + j * stride < taps
            )
        )
    return longest_run(plain)


def longest_run(flags: list[bool]) -> tuple[int, int]:
    """The first and last index of the longest run of true ``flags`` (the first such run);
    (1, 0) if none."""
    best, first = (1, 0), None
    for index, flag in enumerate([*flags, False]):
        if flag and first is None:
            first = index
        if not flag and first is not None:
            if index - 1 - first > best[1] - best[0]:
                best = (first, index - 1)
            first = None
    return best


@functools.lru_cache(maxsize=256)
def taps_tensor(taps: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The filter taps on ``device`` in the accumulator's dtype, made once per filter."""
    return torch.tensor(taps, dtype=torch.float64).to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------- launching


def resolve_config(
    op: str,
    x: torch.Tensor,
    filter_size: int,
    stride: int,
    config: dict[str, Any] | None,
    *,
    max_kernel: int = 0,
    relu: bool = False,
) -> dict[str, int]:
    """An explicit ``config`` (checked), else the tuned or heuristic one for this call."""
    if config is not None:
        return check_config(config)
    key = tuning_key(x, filter_size, stride, max_kernel=max_kernel, relu=relu)
    return launch_config(op, key)


class Launch(NamedTuple):
    """A kernel launch with all but its per-call tensors decided: ``kernel[grid](*tensors,
    *args, **options)``. ``args`` may hold tensors made once per filter or map size (taps,
    gather tables), never the call's own."""

    kernel: Any
    grid: tuple[int]
    args: tuple[Any, ...]
    options: dict[str, Any]

    def __call__(self, *tensors: torch.Tensor) -> None:
        self.kernel[self.grid](*tensors, *self.args, **self.options)


def tiled_launch(
    kernel: Any,
    config: dict[str, int],
    out_shape: tuple[int, ...],
    *args: Any,
    tile: tuple[int, int] | None = None,
    **constexprs: Any,
) -> Launch:
    """The launch of ``kernel`` over tiles of a non-empty output of ``out_shape`` (N, C, H, W):
    one program per channel block of one image and one spatial tile, on a 1-D grid (no 65 535
    limit on any axis).

    A tile is ``tile`` (rows, columns) of the output, by default the config's
    ``BLOCK_H`` × ``BLOCK_W``. ``args`` follow the call's tensors; the tile counts are
    appended, then the config's block sizes and ``constexprs`` (which may replace them).
    """
    n, c, h, w = out_shape
    rows, cols = tile or (config["BLOCK_H"], config["BLOCK_W"])
    c_blocks = triton.cdiv(c, config["BLOCK_C"])
    tiles_w = triton.cdiv(w, cols)
    tiles = triton.cdiv(h, rows) * tiles_w
    options = {name: config[name] for name in ("BLOCK_C", "BLOCK_H", "BLOCK_W", "num_warps",
                                               "num_stages")}  # fmt: skip
    return Launch(kernel, (n * c_blocks * tiles,), (*args, c_blocks, tiles_w, tiles),
                  {**options, **constexprs})  # fmt: skip


class MemoisedLaunch:
    """Plans a launch once per layout and option set, then replays it.

    Wraps ``plan(*tensors, *options) -> Launch``, which may read only the tensors' shapes,
    strides, dtype and device. Planning (the tuned config, tile counts, constexprs, 64-bit
    checks) costs more host time than the launch itself, and small maps are launch-bound, so
    each plan is kept per (shapes, strides, dtype, device, options, tuning state): a table
    written or cleared (``tuning.clear_cache``), another cache folder or device plans anew.
    """

    MAX_PLANS = 4096

    def __init__(self, plan: Callable[..., Launch]) -> None:
        self.plan = plan
        self.plans: dict[tuple, Launch] = {}
        functools.update_wrapper(self, plan)

    def __call__(self, tensors: tuple[torch.Tensor, ...], *options: Any) -> None:
        """Launch on ``tensors`` (the kernel's leading arguments) with ``options``."""
        key = (
            lookup_state(),
            *((t.shape, t.stride(), t.dtype, t.device) for t in tensors),
            *(tuple(o.items()) if isinstance(o, dict) else o for o in options),
        )
        launch = self.plans.get(key)
        if launch is None:
            if len(self.plans) >= self.MAX_PLANS:
                self.plans.clear()
            launch = self.plans[key] = self.plan(*tensors, *options)
        launch(*tensors)


def traced() -> bool:
    """Whether this call is being traced or captured (``torch.compile``, ``torch.export``,
    ``torch.jit.trace``, ``make_fx``, a fake or other dispatch mode): the custom ops must run
    then, for their graph node and fake implementation; :func:`eager_autograd`'s path
    otherwise."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or _get_current_dispatch_mode() is not None)  # fmt: skip


def eager_autograd(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    setup_context: Callable[..., None],
    backward: Callable[..., tuple],
    input_gradient: Callable[..., torch.Tensor],
) -> type[torch.autograd.Function]:
    """An ``autograd.Function`` running a custom op's implementation (``forward``), its
    ``setup_context`` and ``backward`` without the dispatcher, for eager calls: the custom op's
    dispatch and autograd wrappers cost about as much host time as the launches themselves,
    which small maps feel. When :func:`traced`, the custom op runs instead. The forward's
    second output (what the backward keeps) has no gradient; ``backward`` gets the input
    gradient's launcher as ``ctx.input_gradient`` (the backward custom op when traced) and
    is differentiable once: a double backward raises, as through the custom op."""

    def run(ctx, *inputs):
        output = forward(*inputs)
        setup_context(ctx, inputs, output)
        ctx.input_gradient = input_gradient
        ctx.mark_non_differentiable(output[1])
        return output

    twice_refused = once_differentiable(backward)
    methods = {"forward": staticmethod(run), "backward": staticmethod(twice_refused)}
    return type(f"Eager_{forward.__name__}", (torch.autograd.Function,), methods)


# ----------------------------------------------------------------------------- Triton helpers


@triton.jit
def as_index(v, INDEX_64: tl.constexpr):
    """``v`` widened to int64 when the launch needs 64-bit offsets."""
    if INDEX_64:
        v = v.to(tl.int64)
    return v


@triton.jit
def padded_source(v, size, PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr):
    """The index in [0, size) that virtual position ``v`` of a padded axis reads, and whether it
    reads one (zero padding reads none outside the map): ``kernels.padding.pad_index`` as
    arithmetic, for any pad size. ``PADDING`` is a :data:`PADDING_CODES` value.

    ``FOLD_ONCE`` says that no position lies further than one map length outside (the pads
    are smaller than the map, :func:`folds_once`): one mirror or wrap then suffices, which is
    much cheaper than the integer remainders the general case needs. Positions beyond the
    pad then get an index outside the map: callers mask them.
    """
    if PADDING == 0:
        ok = (v >= 0) & (v < size)
        src = v
    elif PADDING == 2:
        src = tl.minimum(tl.maximum(v, 0), size - 1)
        ok = v == v
    elif FOLD_ONCE:
        if PADDING == 1:
            src = tl.where(v < 0, -v, v)
            src = tl.where(src >= size, 2 * size - 2 - src, src)
        else:
            src = tl.where(v < 0, v + size, tl.where(v >= size, v - size, v))
        ok = v == v
    elif PADDING == 1:
        period = tl.maximum(2 * size - 2, 1)  # size 1 reads index 0 everywhere
        folded = v % period
        folded = tl.where(folded < 0, folded + period, folded)
        src = tl.where(folded < size, folded, period - folded)
        ok = v == v
    else:
        src = v % size
        src = tl.where(src < 0, src + size, src)
        ok = v == v
    return src, ok


def folds_once(sizes: tuple[int, ...], pad: int) -> bool:
    """Whether a pad of ``pad`` on either side of axes of ``sizes`` mirrors or wraps at most
    once (reflect needs ``pad < size``, circular ``pad <= size``; both hold when this does)."""
    return all(pad < size for size in sizes)


@triton.jit
def tile_origin(pid, c_blocks, tiles_w, tiles, BLOCK_C: tl.constexpr, ROWS: tl.constexpr,
                COLS: tl.constexpr):  # fmt: skip
    """Program ``pid``'s plane (image × channel block), its image ``n`` and channels
    [BC,1,1], and the first row and column of its ``ROWS`` × ``COLS`` tile. Programs of a
    plane run over its tiles row by row, so neighbours share halos."""
    plane = pid // tiles
    tile = pid % tiles
    n = plane // c_blocks
    c = ((plane % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C))[:, None, None]
    return plane, n, c, (tile // tiles_w) * ROWS, (tile % tiles_w) * COLS


@triton.jit
def plane_offsets(n, c, stride_n, stride_c, INDEX_64: tl.constexpr):
    """Offsets [BC,1,1] of the first element of each channel's map of image ``n``."""
    return as_index(n, INDEX_64) * stride_n + as_index(c, INDEX_64) * stride_c


@triton.jit
def element_offsets(plane, rows, cols, stride_h, stride_w, INDEX_64: tl.constexpr):
    """Offsets of elements (rows, cols) of the maps starting at ``plane`` (broadcast)."""
    return plane + as_index(rows, INDEX_64) * stride_h + as_index(cols, INDEX_64) * stride_w


@triton.jit
def tile_offsets(n, c, rows, cols, stride_n, stride_c, stride_h, stride_w, INDEX_64: tl.constexpr):
    """Offsets [BC,BH,BW] of the tile's elements in a tensor with the given strides."""
    plane = plane_offsets(n, c, stride_n, stride_c, INDEX_64)
    return element_offsets(plane, rows, cols, stride_h, stride_w, INDEX_64)


@triton.jit
def tile_width(count_ptr, index, ok):
    """The most table slots any of the positions ``index`` (where ``ok``) uses."""
    return tl.max(tl.load(count_ptr + index, mask=ok, other=0))


@triton.jit
def plain_phase(start, steps, before, first, last, STRIDE: tl.constexpr, BLOCK: tl.constexpr):
    """Map positions ``start + STRIDE·steps`` (``steps`` = 0 … ``BLOCK`` - 1): one phase of a
    backward tile. Their padded positions ``u = p + before`` step by ``STRIDE``, so all of them
    are read by the same taps: output ``top - j`` reads each with tap ``phase + j·STRIDE``,
    where ``top`` (per position) is the last output whose taps reach it and ``phase`` (a
    scalar) is ``u`` modulo ``STRIDE``. Also whether all of them lie in the axis's plain
    interval [``first``, ``last``] (:func:`plain_interval`)."""
    u0 = start + before
    phase = u0 % STRIDE
    plain = (start >= first) & (start + STRIDE * (BLOCK - 1) <= last)
    return (u0 - phase) // STRIDE + steps, phase, plain


@triton.jit
def plain_rows(column, mask, top_h, phase_h, stride_h, taps_ptr, TAPS: tl.constexpr,
               STRIDE: tl.constexpr, MASKED: tl.constexpr, ACC_DTYPE: tl.constexpr,
               INDEX_64: tl.constexpr):  # fmt: skip
    """``Σ w[phase_h + j·STRIDE] · column[top_h - j]``: the row half of blur-pool's transpose
    on one phase tile inside the plain interval (:func:`plain_phase`), (TAPS/STRIDE) reads per
    element, unrolled, with uniform weights. ``column`` points at each element's column of the
    output gradient; reads are masked by ``mask`` only when ``MASKED``."""
    acc = tl.zeros(mask.shape, ACC_DTYPE)
    for j in tl.static_range((TAPS + STRIDE - 1) // STRIDE):
        tap = phase_h + j * STRIDE
        if tap < TAPS:
            at = column + as_index(top_h - j, INDEX_64) * stride_h
            value = tl.load(at, mask=mask, other=0.0) if MASKED else tl.load(at)
            acc += tl.load(taps_ptr + tap) * value.to(ACC_DTYPE)
    return acc


@triton.jit
def transposed_blur(maps, mask, top_h, phase_h, top_w, phase_w, stride_h, stride_w, taps_ptr,
                    TAPS: tl.constexpr, STRIDE: tl.constexpr, ACC_DTYPE: tl.constexpr,
                    INDEX_64: tl.constexpr):  # fmt: skip
    """Blur-pool's transpose on one phase tile inside the plain interval along both axes: a
    plain filter, (TAPS/STRIDE)² reads per element, unrolled, with uniform weights and no mask
    (``mask`` only gives the shape). ``maps`` is the [BC,1,1] start of each channel's output
    gradient (of a channel that exists)."""
    acc = tl.zeros(mask.shape, ACC_DTYPE)
    for j in tl.static_range((TAPS + STRIDE - 1) // STRIDE):
        tap = phase_w + j * STRIDE
        if tap < TAPS:
            column = maps + as_index(top_w - j, INDEX_64) * stride_w
            rows = plain_rows(column, mask, top_h, phase_h, stride_h, taps_ptr, TAPS, STRIDE,
                              False, ACC_DTYPE, INDEX_64)  # fmt: skip
            acc += tl.load(taps_ptr + tap) * rows
    return acc


@triton.jit
def separable_gather(
    ptr,
    plane,
    rows,
    cols,
    row_ok,
    col_ok,
    mask,
    stride_h,
    stride_w,
    src_h_ptr,
    wt_h_ptr,
    src_w_ptr,
    wt_w_ptr,
    span_h,
    span_w,
    width_h,
    width_w,
    top_h,
    phase_h,
    taps_ptr,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    PLAIN_H: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
):
    """``Σ_j wt_w[j, cols] · Σ_i wt_h[i, rows] · map(src_h[i, rows], src_w[j, cols])``.

    The tables are (width, span) row-major, so a tap's entries for neighbouring positions are
    neighbours in memory (coalesced loads). Their widths are runtime values, as a few
    positions near an edge need more slots than the rest. With ``PLAIN_H`` the rows lie in
    the plain interval (``top_h``, ``phase_h``: :func:`plain_phase`) and take
    :func:`plain_rows` instead of the row table: tiles as wide as the map, inside it
    vertically.

    ``ptr + plane`` is the [BC,1,1] start of each channel's map; ``rows``/``cols`` index the
    tables where ``row_ok``/``col_ok``; lanes outside ``mask`` read nothing and give 0.
    Index -1 in a table reads zero (an empty slot).
    """
    # Column taps outside: their [1,1,BW] table loads are the costly ones under NCHW tiles.
    # Few operations per inner step, as the interpreter runs each one in Python.
    maps = ptr + plane
    acc = tl.zeros(mask.shape, ACC_DTYPE)
    for j in range(width_w):
        src_w = tl.load(src_w_ptr + j * span_w + cols, mask=col_ok, other=-1)
        wt_w = tl.load(wt_w_ptr + j * span_w + cols, mask=col_ok, other=0.0)
        column = maps + as_index(src_w, INDEX_64) * stride_w
        column_ok = mask & (src_w >= 0)
        if PLAIN_H:
            col_sum = plain_rows(column, column_ok, top_h, phase_h, stride_h, taps_ptr, TAPS,
                                 STRIDE, True, ACC_DTYPE, INDEX_64)  # fmt: skip
        else:
            col_sum = tl.zeros(mask.shape, ACC_DTYPE)
            for i in range(width_h):
                src_h = tl.load(src_h_ptr + i * span_h + rows, mask=row_ok, other=-1)
                wt_h = tl.load(wt_h_ptr + i * span_h + rows, mask=row_ok, other=0.0)
                at = column + as_index(src_h, INDEX_64) * stride_h
                value = tl.load(at, mask=column_ok & (src_h >= 0), other=0.0)
                col_sum += wt_h * value.to(ACC_DTYPE)
        acc += wt_w * col_sum
    return acc
