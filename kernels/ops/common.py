"""Pieces shared by the blur-pool kernels: output sizes and buffers, tiling and launch
plumbing, and the Triton helpers for padding and addressing.

Every op here is separable: along each axis an output reads a few input positions with fixed
weights. The padding mode only changes *which* positions: the forward computes them
arithmetically (:func:`padded_source`); the backward (``streamed_backward``) reads the
transpose from tables made on the host.

All addressing goes through strides, so NCHW and channels_last inputs are read in place.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import triton
import triton.language as tl

from kernels.layout import memory_format, memory_format_of
from kernels.padding import blur_output_size, dense_max_size
from kernels.reference import compute_dtype
from kernels.tuning import check_config, launch_config, lookup_state, tuning_key

INT32_LIMIT = 2**31
# The programs a launch's grid holds at most: CUDA's limit along x, the axis every launch uses.
MAX_PROGRAMS = 2**31 - 1
# The padding mode as the forward kernel's constexpr (spec §2's four modes).
PADDING_CODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}


# ----------------------------------------------------------------------------- sizes and layout


def pooled_shape(
    shape: tuple[int, ...], stride: int, pad_off: int, max_kernel: int = 1
) -> tuple[int, ...]:
    """Output shape of blur-pool (spec §2) on the ``max_kernel`` dense max map of an NCHW shape
    (the map itself when ``max_kernel`` is 1: plain blur-pool)."""
    n, c, h, w = shape
    return (
        n,
        c,
        blur_output_size(dense_max_size(h, max_kernel), stride, pad_off),
        blur_output_size(dense_max_size(w, max_kernel), stride, pad_off),
    )


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
    return torch.empty(shape, dtype=grad.dtype, device=grad.device,
                       memory_format=memory_format(channels_last))  # fmt: skip


def element_extent(t: torch.Tensor) -> int:
    """Elements from a non-empty tensor's first to its last in storage, both included."""
    return 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True))


def needs_int64(*tensors: torch.Tensor) -> bool:
    """True when some element of some tensor lies at an offset int32 cannot hold."""
    return any(
        t.numel() and max(element_extent(t), t.numel()) >= INT32_LIMIT for t in tensors
    )


def accumulator_dtype(x: torch.Tensor) -> tl.dtype:
    """The reference's precision (:func:`compute_dtype`: fp32 for every input type, fp64 for
    fp64 inputs, so gradcheck works) as the kernels' accumulator type."""
    return tl.float64 if accumulator_torch_dtype(x) == torch.float64 else tl.float32


def accumulator_torch_dtype(x: torch.Tensor) -> torch.dtype:
    """:func:`accumulator_dtype` as a torch dtype (for the taps handed to a kernel)."""
    return compute_dtype(x.dtype)


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
    max_kernel: int,
    relu: bool,
) -> dict[str, int]:
    """An explicit ``config`` (checked), else the tuned or heuristic one for this call."""
    if config is not None:
        return check_config(config)
    key = tuning_key(x, filter_size, stride, max_kernel=max_kernel, relu=relu)
    return launch_config(op, key)


class Launch(NamedTuple):
    """A kernel launch with all but its per-call tensors decided: ``kernel[grid](*tensors,
    *args, **options)``. ``args`` may hold tensors made once per filter or map size (taps,
    the backward's tables), never the call's own."""

    kernel: Any
    grid: tuple[int]
    args: tuple[Any, ...]
    options: dict[str, Any]

    def __call__(self, *tensors: torch.Tensor) -> None:
        self.kernel[self.grid](*tensors, *self.args, **self.options)


# Compile options of every launch: multiply-adds fused (FMA). That is Triton's default up to
# 3.9, which warns at a first compile that 3.10 will change it; asked for, the kernels keep
# the rounding and the instruction counts they were measured with, whichever Triton runs them.
COMPILE_OPTIONS: dict[str, Any] = {"enable_fp_fusion": True}


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
    limit on any axis; ``ValueError`` past the 2**31 - 1 programs of its one axis, which a
    huge batch of tiny maps reaches).

    A tile is ``tile`` (rows, columns) of the output, by default the config's
    ``BLOCK_H`` × ``BLOCK_W``. ``args`` follow the call's tensors; the tile counts are
    appended, then the config's block sizes and ``constexprs`` (which may replace them).
    """
    n, c, h, w = out_shape
    rows, cols = tile or (config["BLOCK_H"], config["BLOCK_W"])
    c_blocks = triton.cdiv(c, config["BLOCK_C"])
    tiles_w = triton.cdiv(w, cols)
    tiles = triton.cdiv(h, rows) * tiles_w
    programs = n * c_blocks * tiles
    if programs > MAX_PROGRAMS:  # (a launch would fail, or wrap program ids)
        raise ValueError(
            f"a tensor of shape {tuple(out_shape)} takes {programs} programs of {config['BLOCK_C']}"
            f" channels × {rows} × {cols}, past the {MAX_PROGRAMS} a launch accepts: split "
            "the batch (N) or use backend='torch'"
        )
    options = {name: config[name] for name in ("BLOCK_C", "BLOCK_H", "BLOCK_W", "num_warps",
                                               "num_stages")}  # fmt: skip
    return Launch(kernel, (programs,), (*args, c_blocks, tiles_w, tiles),
                  {**options, **COMPILE_OPTIONS, **constexprs})  # fmt: skip


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


def eager_autograd(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    setup_context: Callable[..., None],
    backward: Callable[..., tuple],
    input_gradient: Callable[..., torch.Tensor],
) -> type[torch.autograd.Function]:
    """An ``autograd.Function`` running a custom op's implementation (``forward``), its
    ``setup_context`` and ``backward`` without the dispatcher, for eager calls: the custom op's
    dispatch and autograd wrappers cost about as much host time as the launches themselves,
    which small maps feel. When :func:`kernels.tracing.traced`, the custom op runs instead.
    The forward's second output (what the backward keeps) has no gradient; ``backward`` gets
    the input gradient's launcher as ``ctx.input_gradient`` (the backward custom op when
    traced), and takes a differentiable form of it where a graph of the gradient is being
    built."""

    def run(ctx, *inputs):
        output = forward(*inputs)
        setup_context(ctx, inputs, output)
        ctx.input_gradient = input_gradient
        ctx.mark_non_differentiable(output[1])
        return output

    methods = {"forward": staticmethod(run), "backward": staticmethod(backward)}
    return type(f"Eager_{forward.__name__}", (torch.autograd.Function,), methods)


# ----------------------------------------------------------------------------- Triton helpers


@triton.jit
def as_index(v, INDEX_64: tl.constexpr):
    """``v`` widened to int64 when the launch needs 64-bit offsets."""
    if INDEX_64:
        v = v.to(tl.int64)
    return v


@triton.jit
def index_stride(stride, INDEX_64: tl.constexpr):
    """``stride`` widened to int64 when the launch needs 64-bit offsets: a constant (a tap's
    or a window's place) times it is int32 otherwise, and wraps once the product passes
    2**31 (a W stride of 2**30 at the third tap). A stride of 1 arrives as a constexpr, which
    the cast folds back into a constant."""
    if INDEX_64:
        stride = tl.cast(stride, tl.int64)
    return stride


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
