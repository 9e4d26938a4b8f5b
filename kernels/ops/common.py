"""Pieces shared by the blur-pool kernels: per-axis gather tables, tiling and launch plumbing.

Every op here is separable: along each axis an output reads a few input positions with fixed
weights. The padding mode only changes *which* positions. The forward computes them
arithmetically (:func:`padded_source`). The backward needs the transpose of that map, which is
many-to-one under reflect/circular/replicate padding (several taps can land on one input, and
on a map smaller than the pad even several outputs' taps). Inverting it on the host into a
table per axis size (per input: the outputs that read it and the summed weight) makes the
backward a plain gather: deterministic, no atomics. Tables hold O(size · taps) entries and are
cached.

All addressing goes through strides, so NCHW and channels_last inputs are read in place.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
import triton
import triton.language as tl

from kernels.padding import pad_index
from kernels.tuning import check_config, launch_config, tuning_key

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


def empty_output(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` with ``x``'s dtype, device and memory format."""
    fmt = torch.channels_last if keeps_channels_last(x) else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


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


# ----------------------------------------------------------------------------- padded runs


class PaddedRun(NamedTuple):
    """A stretch of a padded axis that reads a stretch of the map forwards or backwards.

    Padded position ``u`` (0 is the first pad position) reads map position
    ``p = (u - offset) / sign`` for every ``p`` in [``first``, ``last``]. Each padded position
    that reads the map lies in exactly one run.
    """

    sign: int
    offset: int
    first: int
    last: int


def padded_runs(size: int, before: int, after: int, padding: str) -> tuple[PaddedRun, ...]:
    """The runs of ``kernels.padding.pad_index`` (spec §2): the inverse of padding, compactly.

    The backward sends each padded position's gradient back to the map position it reads;
    read per map position that is a gather over the runs that cover it. A map with a pad
    smaller than itself has three runs under reflect and circular padding (left pad, map,
    right pad), one under zero padding, and one per pad position plus the map under
    replicate (the edge is read once per position).
    """
    runs: list[PaddedRun] = []
    start = None  # (u, p) where the open run began, its sign (0 while one long), its last p
    for u, p in enumerate(pad_index(size, before, after, padding).tolist()):
        if start is not None and p >= 0:
            (u0, p0), sign, last = start
            step = p - last
            if step in (-1, 1) and sign in (0, step):
                start = (u0, p0), step, p
                continue
        if start is not None:
            runs.append(_closed_run(*start))
        start = ((u, p), 0, p) if p >= 0 else None
    if start is not None:
        runs.append(_closed_run(*start))
    return tuple(runs)


def _closed_run(origin: tuple[int, int], sign: int, last: int) -> PaddedRun:
    u0, p0 = origin
    sign = sign or 1
    return PaddedRun(sign, u0 - sign * p0, min(p0, last), max(p0, last))


def plain_interval(
    size: int, taps: int, stride: int, before: int, after: int, padding: str
) -> tuple[int, int]:
    """The longest stretch [first, last] of map positions whose gradient is a plain transposed
    filter: read only by the map's own run, and every output a tap reaches from them exists.
    Backward tiles need no checks along an axis inside it. (1, 0) when there is none."""
    runs = padded_runs(size, before, after, padding)
    out_size = blur_output_size(size, stride, before - (taps - 1) // 2)
    best, first = (1, 0), None
    for p in range(size + 1):
        u = p + before
        readers = [(r.sign, r.offset) for r in runs if r.first <= p <= r.last]
        plain = p < size and readers == [(1, before)]
        plain = plain and all(
            0 <= u // stride - j < out_size
            for j in range(-(-taps // stride))
            if u % stride + j * stride < taps
        )
        if plain and first is None:
            first = p
        if not plain and first is not None:
            if p - 1 - first > best[1] - best[0]:
                best = (first, p - 1)
            first = None
    return best


@functools.lru_cache(maxsize=512)
def backward_plan(
    size: int, taps: int, stride: int, before: int, after: int, padding: str,
    device: torch.device,
) -> torch.Tensor:  # fmt: skip
    """One axis of the backward as an int32 (1 + runs, 4) tensor on ``device``, made once per
    axis: a header (number of runs, ``before``, :func:`plain_interval`), then the runs
    (:func:`padded_runs`)."""
    runs = padded_runs(size, before, after, padding)
    header = (len(runs), before, *plain_interval(size, taps, stride, before, after, padding))
    return torch.tensor((header, *runs), dtype=torch.int32).to(device)


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


def launch_tiled(
    kernel: Any,
    config: dict[str, int],
    out: torch.Tensor,
    *args: Any,
    tile: tuple[int, int] | None = None,
    **constexprs: Any,
) -> None:
    """Launch ``kernel`` over tiles of ``out`` (N, C, H, W): one program per channel block of
    one image and one spatial tile, on a 1-D grid (no 65 535 limit on any axis).

    A tile is ``tile`` (rows, columns) of ``out``, by default the config's
    ``BLOCK_H`` × ``BLOCK_W``. ``args`` are the kernel's leading arguments; the tile counts are
    appended, then the config's block sizes and ``constexprs`` (which may replace them).
    """
    n, c, h, w = out.shape
    if out.numel() == 0:
        return
    rows, cols = tile or (config["BLOCK_H"], config["BLOCK_W"])
    c_blocks = triton.cdiv(c, config["BLOCK_C"])
    tiles_w = triton.cdiv(w, cols)
    tiles = triton.cdiv(h, rows) * tiles_w
    blocks = {name: config[name] for name in ("BLOCK_C", "BLOCK_H", "BLOCK_W")}
    kernel[(n * c_blocks * tiles,)](
        *args,
        c_blocks,
        tiles_w,
        tiles,
        num_warps=config["num_warps"],
        num_stages=config["num_stages"],
        **{**blocks, **constexprs},
    )


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
def tile_origin(pid, tiles, tiles_w, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Program ``pid``'s plane (image × channel block) and the first row and column of its
    ``ROWS`` × ``COLS`` tile. Programs of a plane run over its tiles row by row, so
    neighbours share halos."""
    plane = pid // tiles
    tile = pid % tiles
    return plane, (tile // tiles_w) * ROWS, (tile % tiles_w) * COLS


@triton.jit
def tile_coords(
    pid,
    c_blocks,
    tiles_w,
    tiles,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """Image ``n``, channels [BC,1,1], rows [1,BH,1] and columns [1,1,BW] of program ``pid``."""
    plane, row0, col0 = tile_origin(pid, tiles, tiles_w, BLOCK_H, BLOCK_W)
    n = plane // c_blocks
    c = (plane % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    rows = row0 + tl.arange(0, BLOCK_H)
    cols = col0 + tl.arange(0, BLOCK_W)
    return n, c[:, None, None], rows[None, :, None], cols[None, None, :]


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
def phase_run(plan_ptr, r, start, steps, STRIDE: tl.constexpr, BLOCK: tl.constexpr):
    """Run ``r`` of an axis (its :func:`backward_plan`) seen from the map positions
    ``start + STRIDE·steps`` (``steps`` = 0 … ``BLOCK`` - 1): one phase of a backward tile.

    Those positions' padded positions ``u`` step by ``±STRIDE``, so all of them are read by
    the same taps: output ``top - j`` reads each with tap ``phase + j·STRIDE``, where ``top``
    (per position) is the last output whose taps reach it and ``phase`` (a scalar) is ``u``
    modulo ``STRIDE``. Returns ``top``, ``phase``, which positions the run covers, and
    whether it covers any (so tiles skip the runs they miss).
    """
    run = plan_ptr + 4 * (r + 1)
    sign = tl.load(run)
    first = tl.load(run + 2)
    last = tl.load(run + 3)
    u0 = sign * start + tl.load(run + 1)  # negative where the run does not cover ``start``
    phase = (u0 % STRIDE + STRIDE) % STRIDE
    top = (u0 - phase) // STRIDE + sign * steps
    positions = start + STRIDE * steps
    covered = (positions >= first) & (positions <= last)
    hit = (first <= start + STRIDE * (BLOCK - 1)) & (last >= start)
    return top, phase, covered, hit


@triton.jit
def plain_phase(plan_ptr, start, steps, STRIDE: tl.constexpr, BLOCK: tl.constexpr):
    """:func:`phase_run` for the map's own run, and whether the whole phase tile lies in the
    axis's plain interval (no padding reaches it, every output it reads exists)."""
    first = tl.load(plan_ptr + 2)
    last = tl.load(plan_ptr + 3)
    plain = (start >= first) & (start + STRIDE * (BLOCK - 1) <= last)
    u0 = start + tl.load(plan_ptr + 1)
    phase = (u0 % STRIDE + STRIDE) % STRIDE
    return (u0 - phase) // STRIDE + steps, phase, steps >= 0, plain


@triton.jit
def tap_reach(top, j, covered, size_out, CHECK: tl.constexpr):
    """Output ``top - j`` and, when ``CHECK``, where it is read: the run covers the position
    and the output exists. Unchecked, the caller vouches for both."""
    o = top - j
    ok = covered
    if CHECK:
        ok &= (o >= 0) & (o < size_out)
    return o, ok


@triton.jit
def transposed_blur(maps, top_h, phase_h, in_h, top_w, phase_w, in_w, H_out, W_out, stride_h,
                    stride_w, taps_ptr, TAPS: tl.constexpr, STRIDE: tl.constexpr,
                    CHECK_H: tl.constexpr, CHECK_W: tl.constexpr, ACC_DTYPE: tl.constexpr,
                    INDEX_64: tl.constexpr):  # fmt: skip
    """``Σ w[t_h]·w[t_w]·g[o_h, o_w]`` over the outputs whose taps reach one phase of a tile
    through one pair of runs (:func:`phase_run`): blur-pool's transpose, (TAPS/STRIDE)² reads
    per element, unrolled, with uniform tap weights. ``maps`` is the [BC,1,1] start of each
    channel's output gradient (of a channel that exists). Along an axis with ``CHECK_*``
    unset every read is vouched for, so it costs no mask: the inside of a large map.
    """
    acc = tl.zeros((maps.shape[0], top_h.shape[1], top_w.shape[2]), ACC_DTYPE)
    for jh in tl.static_range((TAPS + STRIDE - 1) // STRIDE):
        tap_h = phase_h + jh * STRIDE
        if tap_h < TAPS:
            o_h, ok_h = tap_reach(top_h, jh, in_h, H_out, CHECK_H)
            row = maps + as_index(o_h, INDEX_64) * stride_h
            row_sum = tl.zeros(acc.shape, ACC_DTYPE)
            for jw in tl.static_range((TAPS + STRIDE - 1) // STRIDE):
                tap_w = phase_w + jw * STRIDE
                if tap_w < TAPS:
                    o_w, ok_w = tap_reach(top_w, jw, in_w, W_out, CHECK_W)
                    at = row + as_index(o_w, INDEX_64) * stride_w
                    if CHECK_H or CHECK_W:
                        value = tl.load(at, mask=ok_h & ok_w, other=0.0)
                    else:
                        value = tl.load(at)
                    row_sum += tl.load(taps_ptr + tap_w) * value.to(ACC_DTYPE)
            acc += tl.load(taps_ptr + tap_h) * row_sum
    return acc


@triton.jit
def blur_gradient(maps, plan_h_ptr, start_h, steps_h, plan_w_ptr, start_w, steps_w, H_out,
                  W_out, stride_h, stride_w, taps_ptr, TAPS: tl.constexpr, STRIDE: tl.constexpr,
                  BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, ACC_DTYPE: tl.constexpr,
                  INDEX_64: tl.constexpr):  # fmt: skip
    """Blur-pool's input gradient at one phase tile (map rows ``start_h + STRIDE·steps_h``,
    columns ``start_w + STRIDE·steps_w``).

    Along an axis where the tile lies in the plain interval (:func:`plain_interval`) only the
    map's own run reaches it and no read needs a check; elsewhere the tile sums
    :func:`transposed_blur` over the runs that cover it, checking each read. Inside a large
    map both axes are plain.
    """
    top_h, phase_h, in_h, plain_h = plain_phase(plan_h_ptr, start_h, steps_h, STRIDE, BLOCK_H)
    top_w, phase_w, in_w, plain_w = plain_phase(plan_w_ptr, start_w, steps_w, STRIDE, BLOCK_W)
    acc = tl.zeros((maps.shape[0], BLOCK_H, BLOCK_W), ACC_DTYPE)
    if plain_h & plain_w:
        acc = transposed_blur(maps, top_h, phase_h, in_h, top_w, phase_w, in_w, H_out, W_out,
                              stride_h, stride_w, taps_ptr, TAPS, STRIDE, False, False,
                              ACC_DTYPE, INDEX_64)  # fmt: skip
    elif plain_h:
        for b in range(tl.load(plan_w_ptr)):
            top_w, phase_w, in_w, hit_w = phase_run(plan_w_ptr, b, start_w, steps_w, STRIDE,
                                                    BLOCK_W)  # fmt: skip
            if hit_w:
                acc += transposed_blur(maps, top_h, phase_h, in_h, top_w, phase_w, in_w, H_out,
                                       W_out, stride_h, stride_w, taps_ptr, TAPS, STRIDE, False,
                                       True, ACC_DTYPE, INDEX_64)  # fmt: skip
    else:
        for a in range(tl.load(plan_h_ptr)):
            top_h, phase_h, in_h, hit_h = phase_run(plan_h_ptr, a, start_h, steps_h, STRIDE,
                                                    BLOCK_H)  # fmt: skip
            if hit_h:
                for b in range(tl.load(plan_w_ptr)):
                    top_w, phase_w, in_w, hit_w = phase_run(plan_w_ptr, b, start_w, steps_w,
                                                            STRIDE, BLOCK_W)  # fmt: skip
                    if hit_w:
                        acc += transposed_blur(maps, top_h, phase_h, in_h, top_w, phase_w,
                                               in_w, H_out, W_out, stride_h, stride_w, taps_ptr,
                                               TAPS, STRIDE, True, True, ACC_DTYPE,
                                               INDEX_64)  # fmt: skip
    return acc
