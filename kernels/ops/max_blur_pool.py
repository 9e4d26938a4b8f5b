"""MaxBlurPool (dense max at stride 1, then blur-pool): Triton kernels, launchers and the
``shiftlab::max_blur_pool2d`` custom op with its autograd and fake implementations.

Forward: each program streams down its tile's columns one row of the dense max map at a time
(each value the max of its ``max_kernel``² block, formed on load, so the map never goes to
memory), filtering each row along W as it is formed and writing each output row once its
taps' rows are in; when a gradient will be needed it also writes, per max-map element, a
one-byte code saying where in its block the max lies (``torch.max_pool2d`` keeps an int64
index per output instead).
Backward, from the output gradient and those codes only, in one pass: each program streams
down its tile one max-map row at a time, takes blur-pool's backward of that row on registers
from the output-gradient rows it keeps (each loaded and filtered along W once, the padding
folded into per-column tables), and hands each window's gradient to the element its code
names (no temporary of the map's size).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels.ops.common import (
    PADDING_CODES,
    MemoisedLaunch,
    accumulator_dtype,
    accumulator_torch_dtype,
    as_index,
    eager_autograd,
    element_offsets,
    empty_output,
    folds_once,
    gradient_buffer,
    keeps_channels_last,
    needs_int64,
    output_buffer,
    padded_source,
    plane_offsets,
    pooled_shape,
    resolve_config,
    taps_tensor,
    tile_origin,
    tiled_launch,
    traced,
)
from kernels.ops.streamed_backward import backward_launch
from kernels.options import MAX_CODED_KERNEL
from kernels.padding import pad_index, pad_sizes

# The forward's registers a thread, at most. Compiled alone, each of its three paths needs at
# most about 110 (channels_last, k = 7), but the whole kernel gets more than any of them, 140
# and over (12 resident warps an SM). Capped, the heuristic's configs spill at most 8 bytes
# and keep 16 warps resident (``benchmarks.resource_usage``, k = 3–7, Triton 3.6 and 3.9).
# The backward has no cap: with one, ptxas gave it 128 registers and 80 bytes of stack where
# it needs 80 and none uncapped (channels_last, k = 7, two elements a thread).
FORWARD_REGISTERS = 128


@triton.jit
def _max_blur_pool_fwd_kernel(
    x_ptr,
    y_ptr,
    codes_ptr,
    taps_ptr,
    C,
    H_map,
    W_map,
    H_out,
    W_out,
    sx_n,
    sx_c,
    sx_h,
    sx_w,
    sy_n,
    sy_c,
    sy_h,
    sy_w,
    sk_n,
    sk_c,
    sk_h,
    sk_w,
    c_blocks,
    tiles_w,
    tiles,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    PADDING: tl.constexpr,
    FOLD_ONCE: tl.constexpr,
    MAX_KERNEL: tl.constexpr,
    SAVE_CODES: tl.constexpr,
    MAP_ROWS: tl.constexpr,
    MAP_COLS: tl.constexpr,
    LOCAL_PADDING: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """One program: ``BLOCK_C`` channels × ``BLOCK_H`` rows × ``BLOCK_W`` columns of the
    output, streamed row by row down the padded max map (:func:`_streamed_rows`).

    ``MAP_ROWS`` × ``MAP_COLS`` is the stretch of the padded max map the program reads from
    its first output's first tap: the taps' reach, and with ``SAVE_CODES`` at least the
    ``STRIDE`` × ``STRIDE`` block each output starts at, whose codes the program writes. Tiles
    whose stretch lies inside the max map along both axes (most tiles of a large map) read at
    plain offsets without masks; along W only, the rows still go through the padding; the
    others through the padding along both axes. ``LOCAL_PADDING`` (:func:`_reads_own`): each
    output's padded rows and columns repeat rows and columns it reads anyway (any map not much
    smaller than the filter, any padding but circular), so the edge paths read as the plain
    one does (masked along W) and pad on registers.
    """
    plane, n, c, row0, col0 = tile_origin(tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C,
                                          BLOCK_H, BLOCK_W)  # fmt: skip
    cols = col0 + tl.arange(0, BLOCK_W)[None, None, :]
    x_maps = x_ptr + plane_offsets(n, c, sx_n, sx_c, INDEX_64)
    y_maps = y_ptr + plane_offsets(n, c, sy_n, sy_c, INDEX_64)
    code_maps = codes_ptr + plane_offsets(n, c, sk_n, sk_c, INDEX_64)
    top = row0 * STRIDE - PAD_BEFORE
    inside_h = (top >= 0) & (top + MAP_ROWS <= H_map)
    inside_w = (col0 * STRIDE - PAD_BEFORE >= 0) & (
        (col0 + BLOCK_W - 1) * STRIDE - PAD_BEFORE + MAP_COLS <= W_map
    )
    inside_w &= (plane % c_blocks + 1) * BLOCK_C <= C
    if inside_h & inside_w:
        _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c < C, row0, cols, H_map, W_map,
                       H_out, W_out, sx_h, sx_w, sy_h, sy_w, sk_h, sk_w, TAPS, STRIDE,
                       PAD_BEFORE, PADDING, FOLD_ONCE, MAX_KERNEL, SAVE_CODES, MAP_ROWS,
                       MAP_COLS, False, False, LOCAL_PADDING, ACC_DTYPE, INDEX_64,
                       BLOCK_H)  # fmt: skip
    elif inside_w:
        _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c < C, row0, cols, H_map, W_map,
                       H_out, W_out, sx_h, sx_w, sy_h, sy_w, sk_h, sk_w, TAPS, STRIDE,
                       PAD_BEFORE, PADDING, FOLD_ONCE, MAX_KERNEL, SAVE_CODES, MAP_ROWS,
                       MAP_COLS, True, False, LOCAL_PADDING, ACC_DTYPE, INDEX_64,
                       BLOCK_H)  # fmt: skip
    else:
        _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c < C, row0, cols, H_map, W_map,
                       H_out, W_out, sx_h, sx_w, sy_h, sy_w, sk_h, sk_w, TAPS, STRIDE,
                       PAD_BEFORE, PADDING, FOLD_ONCE, MAX_KERNEL, SAVE_CODES, MAP_ROWS,
                       MAP_COLS, True, True, LOCAL_PADDING, ACC_DTYPE, INDEX_64,
                       BLOCK_H)  # fmt: skip


@triton.jit
def _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c_ok, row0, cols, H_map, W_map, H_out,
                   W_out, sx_h, sx_w, sy_h, sy_w, sk_h, sk_w, TAPS: tl.constexpr,
                   STRIDE: tl.constexpr, PAD_BEFORE: tl.constexpr, PADDING: tl.constexpr,
                   FOLD_ONCE: tl.constexpr, MAX_KERNEL: tl.constexpr,
                   SAVE_CODES: tl.constexpr, MAP_ROWS: tl.constexpr, MAP_COLS: tl.constexpr,
                   CHECK_H: tl.constexpr, CHECK_W: tl.constexpr, LOCAL_PADDING: tl.constexpr,
                   ACC_DTYPE: tl.constexpr, INDEX_64: tl.constexpr,
                   BLOCK_H: tl.constexpr):  # fmt: skip
    """``BLOCK_H`` output rows from ``row0`` at columns ``cols`` ([1,1,BW]) of the maps at
    ``x_maps``/``y_maps`` ([BC,1,1]), the filter run separably on one max-map row at a time.

    Each max-map row is filtered along W as soon as it is formed (:func:`_map_row`), and an
    output row is written as soon as its last tap's row is in: the program keeps the last
    ``TAPS`` filtered rows in registers, never a window. The max over ``MAX_KERNEL`` input rows
    reuses the previous rows' column maxima, so each input row is loaded and reduced along W
    once. With ``LOCAL_PADDING`` that holds through the padding too: a row outside the map
    reads one inside (any: it is not used), and each output then takes, for each padded tap,
    the filtered row it repeats from among its own taps' (:func:`_padded_rows`); along W each
    lane weighs its columns with its taps folded through the padding (:func:`_folded_taps`).
    Without it (``CHECK_H``), each max-map row reads its own input rows through the padding,
    and (``CHECK_W``) each column its own input columns.
    """
    # Off the path checked along W the tile's channels and columns all exist (the kernel's
    # paths), so whether a row is stored is one branch for the program, not a mask per lane.
    first_row = row0
    first_top = row0 * STRIDE - PAD_BEFORE
    # Row indices as [1,1,1] tensors: Triton's interpreter turns a scalar mask combined with a
    # tensor one into integers, which its loads refuse (compiled code is the same either way).
    row0 += tl.zeros((1, 1, 1), tl.int32)
    taps = ()
    for j in tl.static_range(TAPS):
        taps += (tl.load(taps_ptr + j).to(ACC_DTYPE),)
    left = cols * STRIDE - PAD_BEFORE
    if (not CHECK_W) or LOCAL_PADDING:
        x_maps += as_index(left, INDEX_64) * sx_w
    top = row0 * STRIDE - PAD_BEFORE
    col_taps = taps  # each lane's weights of its MAP_COLS max-map columns
    if CHECK_W and LOCAL_PADDING:
        col_taps = _folded_taps(taps, left, W_map, PADDING, FOLD_ONCE, MAP_COLS)
    # Per input row: MAP_COLS column maxima, then with SAVE_CODES the STRIDE coded columns' picks.
    PER_ROW: tl.constexpr = MAP_COLS + STRIDE * SAVE_CODES
    recent = ()  # the column maxima (and picks) of the last MAX_KERNEL - 1 input rows
    window = ()  # the filtered rows the next output row reads
    for m in tl.static_range(MAP_ROWS):
        if CHECK_H and not LOCAL_PADDING:
            src_h, ok_h = padded_source(top + m, H_map, PADDING, FOLD_ONCE)
            ok_h &= c_ok & (src_h >= 0) & (src_h < H_map)
            rows = ()
            for u in tl.static_range(MAX_KERNEL):
                row = x_maps + as_index(src_h + u, INDEX_64) * sx_h
                rows += _column_maxima(row, ok_h, left, W_map, sx_w, STRIDE, PAD_BEFORE,
                                       PADDING, FOLD_ONCE, MAX_KERNEL, SAVE_CODES, MAP_COLS,
                                       True, CHECK_W, False, ACC_DTYPE, INDEX_64)  # fmt: skip
        else:
            for u in tl.static_range(MAX_KERNEL - 1 if m else 0, MAX_KERNEL):
                r = first_top + m + u
                if CHECK_H:  # rows outside read a row inside: their maxima are never taken
                    r = tl.minimum(tl.maximum(r, 0), H_map + MAX_KERNEL - 2)
                row = x_maps + as_index(r, INDEX_64) * sx_h
                recent += _column_maxima(row, c_ok, left, W_map, sx_w, STRIDE, PAD_BEFORE,
                                         PADDING, FOLD_ONCE, MAX_KERNEL, SAVE_CODES, MAP_COLS,
                                         CHECK_W, CHECK_W, True, ACC_DTYPE,
                                         INDEX_64)  # fmt: skip
            rows = recent
            recent = rows[PER_ROW:]
        # The codes of the STRIDE × STRIDE blocks the outputs start at: rows PAD_BEFORE on.
        code_at = code_maps + element_offsets(0, top + m, cols * STRIDE, sk_h, sk_w, INDEX_64)
        code_ok = first_top + m < H_map
        filtered = _map_row(rows, col_taps, code_at, code_ok, c_ok, cols * STRIDE, W_map, sk_w,
                            STRIDE, PAD_BEFORE, MAX_KERNEL,
                            SAVE_CODES and _among(m, PAD_BEFORE, STRIDE * BLOCK_H), PER_ROW,
                            MAP_COLS, CHECK_H, CHECK_W, CHECK_W and LOCAL_PADDING,
                            ACC_DTYPE)  # fmt: skip
        # Rows some output reads (not those between two outputs' taps when TAPS < STRIDE).
        if (m < TAPS + STRIDE * (BLOCK_H - 1)) and (m % STRIDE < TAPS):
            window += (filtered,)
            if (m >= TAPS - 1) & ((m - TAPS + 1) % STRIDE == 0):
                i = (m - TAPS + 1) // STRIDE
                taken = window
                if CHECK_H and LOCAL_PADDING:
                    taken = _padded_rows(window, first_top + i * STRIDE, H_map, PADDING,
                                         FOLD_ONCE, TAPS)  # fmt: skip
                acc = taps[0] * taken[0]
                for s in tl.static_range(1, TAPS):
                    acc += taps[s] * taken[s]
                y_at = y_maps + element_offsets(0, row0 + i, cols, sy_h, sy_w, INDEX_64)
                value = acc.to(y_maps.dtype.element_ty)
                if CHECK_W:
                    if first_row + i < H_out:
                        tl.store(y_at, value, mask=c_ok & (cols < W_out))
                elif CHECK_H:
                    if first_row + i < H_out:
                        tl.store(y_at, value)
                else:
                    tl.store(y_at, value)
                window = window[STRIDE:]

@triton.constexpr_function
def _among(index: int, first: int, count: int) -> bool:
    """Whether ``first`` <= ``index`` < ``first + count``, at compile time (a condition
    assigned to a variable inside a kernel would become a runtime value)."""
    return first <= index < first + count


@triton.jit
def _column_maxima(row, row_ok, left, W_map, sx_w, STRIDE: tl.constexpr,
                   PAD_BEFORE: tl.constexpr, PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr,
                   MAX_KERNEL: tl.constexpr, SAVE_CODES: tl.constexpr, MAP_COLS: tl.constexpr,
                   MASKED: tl.constexpr, CHECK_W: tl.constexpr, LOCAL_PADDING: tl.constexpr,
                   ACC_DTYPE: tl.constexpr, INDEX_64: tl.constexpr):  # fmt: skip
    """One input row's maxima over ``MAX_KERNEL`` adjacent columns, for each of the
    ``MAP_COLS`` max-map columns the outputs read, then (``SAVE_CODES``) the column of each
    maximum in the ``STRIDE`` columns from ``PAD_BEFORE`` (the blocks the outputs start at):
    the last NaN, else the first maximum, as ``torch.max_pool2d``'s scan.

    Unless ``CHECK_W`` without ``LOCAL_PADDING``, ``row`` points at each output's first max-map
    column (``left``) and the columns are read once each at fixed offsets (neighbouring maxima
    share them); under ``CHECK_W`` those outside the map read nothing (their maxima weigh
    nothing: :func:`_folded_taps`). Under ``CHECK_W`` without ``LOCAL_PADDING``, each maximum
    reads its own columns, max-map column ``left`` + t through the padding (recomputed for each
    row: holding them would take registers from every path of the kernel). Reads are masked by
    ``row_ok`` (other 0) under ``MASKED`` and ``CHECK_W``.
    """
    if (not CHECK_W) or LOCAL_PADDING:
        values = ()
        for j in tl.static_range(MAP_COLS + MAX_KERNEL - 1):
            at = row + j * sx_w
            if CHECK_W:
                ok = row_ok & (left + j >= 0) & (left + j < W_map + MAX_KERNEL - 1)
                value = tl.load(at, mask=ok, other=0.0)
            elif MASKED:
                value = tl.load(at, mask=row_ok, other=0.0)
            else:
                value = tl.load(at)
            values += (value.to(ACC_DTYPE),)
    maxima = ()
    picks = ()
    for t in tl.static_range(MAP_COLS):
        if CHECK_W and not LOCAL_PADDING:
            src_w, ok_w = padded_source(left + t, W_map, PADDING, FOLD_ONCE)
            ok_w &= row_ok & (src_w >= 0) & (src_w < W_map)
            at_t = row + as_index(src_w, INDEX_64) * sx_w
        for v in tl.static_range(MAX_KERNEL):
            if CHECK_W and not LOCAL_PADDING:
                value = tl.load(at_t + v * sx_w, mask=ok_w, other=0.0).to(ACC_DTYPE)
            else:
                value = values[t + v]
            if v == 0:
                best = value
                pick = tl.zeros(value.shape, tl.int32)  # unused (and dropped) unless coded
            elif SAVE_CODES and _among(t, PAD_BEFORE, STRIDE):
                take = (value > best) | (value != value)
                best = tl.where(take, value, best)
                pick = tl.where(take, v, pick)
            else:
                best = tl.maximum(best, value, propagate_nan=tl.PropagateNan.ALL)
        maxima += (best,)
        if SAVE_CODES and _among(t, PAD_BEFORE, STRIDE):
            picks += (pick,)
    return maxima + picks


@triton.jit
def _sources(first, size, PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr, COUNT: tl.constexpr):
    """For positions ``first`` + t (t < ``COUNT``) of a padded axis of the max map, the s whose
    position ``first`` + s each reads (t itself inside the map; -1 for none: zero padding)."""
    sources = ()
    for t in tl.static_range(COUNT):
        src, ok = padded_source(first + t, size, PADDING, FOLD_ONCE)
        sources += (tl.where(ok, src - first, -1),)
    return sources


@triton.jit
def _padded_rows(window, first, size, PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr,
                 TAPS: tl.constexpr):  # fmt: skip
    """The ``TAPS`` filtered rows an output weighs, through the padding, from its ``window``
    of rows read at the same positions unpadded (from ``first``): each padded one is the row
    it repeats, which the host has checked is among them (``LOCAL_PADDING``), or zero. The
    choice is the program's, one select per element and tap."""
    sources = _sources(first, size, PADDING, FOLD_ONCE, TAPS)
    padded = ()
    for t in tl.static_range(TAPS):
        if PADDING == 0:
            value = tl.where(sources[t] == t, window[t], 0.0)
        else:
            value = window[t]
            for s in tl.static_range(TAPS):
                if s != t:
                    value = tl.where(sources[t] == s, window[s], value)
        padded += (value,)
    return padded


@triton.jit
def _folded_taps(taps, first, size, PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr,
                 COUNT: tl.constexpr):  # fmt: skip
    """The weights of positions ``first`` + s (s < ``COUNT``) of an axis of the max map in a
    filter whose taps start at ``first``, through the padding: each tap adds to the position
    it reads (none outside the map under zero padding), which the host has checked is among
    them (``LOCAL_PADDING``). Per lane along W, computed once per program: selecting each
    padded column's maximum instead would cost a select per element, tap and row."""
    sources = _sources(first, size, PADDING, FOLD_ONCE, len(taps))
    folded = ()
    for s in tl.static_range(COUNT):
        weight = tl.zeros(first.shape, taps[0].dtype)
        for t in tl.static_range(len(taps)):
            weight += tl.where(sources[t] == s, taps[t], 0.0)
        folded += (weight,)
    return folded


@triton.jit
def _map_row(rows, taps, code_at, code_ok, c_ok, code_cols, W_map, sk_w, STRIDE: tl.constexpr,
             PAD_BEFORE: tl.constexpr, MAX_KERNEL: tl.constexpr, CODED: tl.constexpr,
             PER_ROW: tl.constexpr, MAP_COLS: tl.constexpr, CHECK_H: tl.constexpr,
             CHECK_W: tl.constexpr, FOLDED_W: tl.constexpr,
             ACC_DTYPE: tl.constexpr):  # fmt: skip
    """One max-map row filtered along W: the maxima over the ``MAX_KERNEL`` input rows in
    ``rows`` (:func:`_column_maxima` of each, ``PER_ROW`` values apiece) weighted by ``taps``
    (one per column from the first, as many as there are). ``FOLDED_W``: the taps are each
    lane's folded through the padding (:func:`_folded_taps`), and the maxima of columns outside
    the map (read without the padding) are taken as zero: they weigh nothing, and a product
    of zero and an infinity would be a NaN.

    ``CODED``: the row is one whose codes the program writes. For each of the ``STRIDE``
    columns from ``PAD_BEFORE``, where in its block the maximum lies (``u·MAX_KERNEL + v``,
    the scan's pick) goes to ``code_at`` + q·``sk_w`` (q: the column's place among them),
    if ``code_ok`` (the row lies in the map: one branch for the program, ``CHECK_H``), masked
    by ``c_ok`` and ``code_cols`` + q < ``W_map`` (``CHECK_W``).
    """
    filtered = tl.zeros(rows[0].shape, ACC_DTYPE)
    for t in tl.static_range(MAP_COLS):
        best = rows[t]
        if CODED and _among(t, PAD_BEFORE, STRIDE):
            code = rows[MAP_COLS + t - PAD_BEFORE]
        for u in tl.static_range(1, MAX_KERNEL):
            value = rows[u * PER_ROW + t]
            if CODED and _among(t, PAD_BEFORE, STRIDE):
                take = (value > best) | (value != value)
                best = tl.where(take, value, best)
                pick = rows[u * PER_ROW + MAP_COLS + t - PAD_BEFORE]
                code = tl.where(take, u * MAX_KERNEL + pick, code)
            else:
                best = tl.maximum(best, value, propagate_nan=tl.PropagateNan.ALL)
        if CODED and _among(t, PAD_BEFORE, STRIDE):
            q = t - PAD_BEFORE
            if CHECK_W:
                if code_ok:
                    tl.store(code_at + q * sk_w, code.to(tl.uint8),
                             mask=c_ok & (code_cols + q < W_map))
            elif CHECK_H:
                if code_ok:
                    tl.store(code_at + q * sk_w, code.to(tl.uint8))
            else:
                tl.store(code_at + q * sk_w, code.to(tl.uint8))
        if t < len(taps):
            if FOLDED_W:
                at = code_cols - PAD_BEFORE + t
                best = tl.where((at >= 0) & (at < W_map), best, 0.0)
            filtered += taps[t] * best
    return filtered


def max_codes_buffer(x: torch.Tensor, max_kernel: int) -> torch.Tensor:
    """An uninitialised uint8 tensor for the forward's argmax codes: one per max-map element,
    in ``x``'s memory format."""
    n, c, h, w = x.shape
    return empty_output(x, (n, c, h - max_kernel + 1, w - max_kernel + 1), torch.uint8)


def input_gradient_buffer(
    grad: torch.Tensor, codes: torch.Tensor, max_kernel: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``out`` when given (checked), else a new tensor for the backward's input gradient: the
    input's shape (the codes' plus ``max_kernel`` - 1), ``grad``'s dtype, the codes' format."""
    n, c, h, w = codes.shape
    shape = (n, c, h + max_kernel - 1, w + max_kernel - 1)
    return gradient_buffer(grad, shape, keeps_channels_last(codes), out)


def max_blur_pool2d_forward(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
    *,
    codes: torch.Tensor | None = None,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the forward kernel (spec §3); ``config`` overrides the tuned launch config.

    The config's ``BLOCK_H`` × ``BLOCK_W`` is a program's tile of the output (``BLOCK_H`` rows
    streamed one after the other, so it sets how far a program runs down the map). ``codes``
    (:func:`max_codes_buffer`) also receives where each window's max lies, which the backward
    needs.
    """
    shape = pooled_shape(tuple(x.shape), stride, 0, max_kernel)
    y = output_buffer(out, x, shape)
    map_shape = (*x.shape[:2], x.shape[2] - max_kernel + 1, x.shape[3] - max_kernel + 1)
    if codes is not None and max_kernel > MAX_CODED_KERNEL:
        raise ValueError(
            f"max_kernel={max_kernel}: the fused backward's argmax codes are one byte, so it "
            f"takes max_kernel <= {MAX_CODED_KERNEL}; use backend='torch' to train with larger"
        )
    if codes is not None and (codes.dtype != torch.uint8 or tuple(codes.shape) != map_shape):
        raise ValueError(
            f"codes: {codes.dtype} of shape {tuple(codes.shape)}; expected the uint8 max map "
            f"of {tuple(x.shape)} (max_codes_buffer)"
        )
    if y.numel() == 0:
        return y
    stored = y if codes is None else codes  # y stands in when no codes are written
    _forward_launch((x, y, stored), taps, stride, padding, max_kernel, codes is not None,
                    config)  # fmt: skip
    return y


@MemoisedLaunch
def _forward_launch(x, y, stored, taps, stride, padding, max_kernel, save_codes, config):
    """The forward's :class:`Launch` for these tensors' layouts and these options."""
    c, h, w = x.shape[1:]
    k = len(taps)
    before = pad_sizes(k, 0)[0]
    launch = resolve_config("max_blur_pool_fwd", x, k, stride, config, max_kernel=max_kernel)
    # The stretch of the max map a tile reads: its taps' reach and, when the codes are written,
    # the stride × stride block each output starts at (beyond the taps when k < before + stride).
    coded = before + stride if save_codes else 0
    map_rows = max(stride * (launch["BLOCK_H"] - 1) + k, coded + stride * (launch["BLOCK_H"] - 1))
    map_h, map_w = h - max_kernel + 1, w - max_kernel + 1
    return tiled_launch(
        _max_blur_pool_fwd_kernel,
        launch,
        y.shape,
        taps_tensor(taps, x.device, accumulator_torch_dtype(x)), c, map_h, map_w, y.shape[2],
        y.shape[3], *x.stride(), *y.stride(), *stored.stride(),
        TAPS=k,
        STRIDE=stride,
        PAD_BEFORE=before,
        PADDING=PADDING_CODES[padding],
        FOLD_ONCE=folds_once((map_h, map_w), k - 1),
        MAX_KERNEL=max_kernel,
        SAVE_CODES=save_codes,
        MAP_ROWS=map_rows,
        MAP_COLS=max(k, coded),
        LOCAL_PADDING=_reads_own(map_h, y.shape[2], stride, before, k, padding)
        and _reads_own(map_w, y.shape[3], stride, before, max(k, coded), padding),
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(x, y, stored),
        maxnreg=FORWARD_REGISTERS,
    )  # fmt: skip


def _reads_own(size: int, outputs: int, stride: int, before: int, span: int,
               padding: str) -> bool:  # fmt: skip
    """Whether each of ``outputs`` outputs along an axis of the max map, reading ``span``
    positions from ``stride``·j - ``before``, finds every padded one's source (if any) among
    those same positions: true in every padding but circular on maps not much smaller than the
    filter, and the forward then pads on registers (``LOCAL_PADDING``)."""
    reach = stride * (outputs - 1) - before + span
    source = pad_index(size, before, max(0, reach - size), padding).tolist()
    return all(
        source[left + before + t] < 0 or left <= source[left + before + t] < left + span
        for left in range(-before, reach - span + 1, stride)
        for t in range(span)
    )


def max_blur_pool2d_backward(
    grad: torch.Tensor,
    codes: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
    *,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the backward: the gradient of :func:`max_blur_pool2d_forward` w.r.t. its input,
    from the output gradient and the codes the forward saved. The input gradient has
    ``grad``'s dtype and the codes' memory format.

    One fused pass (``streamed_backward``): no temporary of the max map's size.
    A program writes ``BLOCK_C`` × ``BLOCK_H`` × ``BLOCK_W`` of the input gradient, streaming
    its rows (``BLOCK_H`` rounded up to whole strides).
    """
    dx = input_gradient_buffer(grad, codes, max_kernel, out)
    if dx.numel() == 0:
        return dx
    _backward_launch((grad, codes, dx, dx), taps, stride, padding, max_kernel, config)
    return dx


@MemoisedLaunch
def _backward_launch(grad, codes, unread, dx, taps, stride, padding, max_kernel, config):
    """The backward's :class:`Launch` for these tensors' layouts and these options (the
    kernel's ReLU mask is ``unread``)."""
    return backward_launch("max_blur_pool_bwd", grad, codes, unread, dx, taps, stride, padding,
                           0, max_kernel, False, False, config)  # fmt: skip


# ----------------------------------------------------------------------------- custom ops


def _pooled(
    x: torch.Tensor,
    taps: list[float],
    stride: int,
    padding: str,
    max_kernel: int,
    save_codes: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MaxBlurPool (spec §3) and, with ``save_codes``, the argmax codes its backward needs
    (else an empty uint8 tensor); differentiable when the codes are saved, traceable."""
    codes = _codes_output(x, max_kernel, save_codes)
    y = max_blur_pool2d_forward(x, tuple(taps), stride, padding, max_kernel,
                                codes=codes if save_codes else None)  # fmt: skip
    return y, codes


max_blur_pool2d_op = torch.library.custom_op("shiftlab::max_blur_pool2d", _pooled, mutates_args=())


def _codes_output(x: torch.Tensor, max_kernel: int, save_codes: bool) -> torch.Tensor:
    """The op's codes output: a buffer for them, or an empty tensor when none are saved."""
    return max_codes_buffer(x, max_kernel) if save_codes else x.new_empty(0, dtype=torch.uint8)


@max_blur_pool2d_op.register_fake
def _max_blur_pool2d_fake(x, taps, stride, padding, max_kernel, save_codes):
    y = empty_output(x, pooled_shape(tuple(x.shape), stride, 0, max_kernel))
    return y, _codes_output(x, max_kernel, save_codes)


def _input_gradient(
    grad: torch.Tensor,
    codes: torch.Tensor,
    taps: list[float],
    stride: int,
    padding: str,
    max_kernel: int,
) -> torch.Tensor:
    """Gradient of ``shiftlab::max_blur_pool2d`` with respect to its input."""
    return max_blur_pool2d_backward(grad, codes, tuple(taps), stride, padding, max_kernel)


max_blur_pool2d_backward_op = torch.library.custom_op(
    "shiftlab::max_blur_pool2d_backward", _input_gradient, mutates_args=()
)


@max_blur_pool2d_backward_op.register_fake
def _max_blur_pool2d_backward_fake(grad, codes, taps, stride, padding, max_kernel):
    return input_gradient_buffer(grad, codes, max_kernel)


def _setup_context(ctx, inputs, output):
    _, taps, stride, padding, max_kernel, save_codes = inputs
    ctx.save_for_backward(output[1])
    # The codes have no gradient: without this, autograd would fill a tensor of their size
    # (half a bf16 input's bytes) with zeros for every backward.
    ctx.set_materialize_grads(False)
    ctx.params = (taps, stride, padding, max_kernel, save_codes)
    ctx.input_gradient = torch.ops.shiftlab.max_blur_pool2d_backward


def _backward(ctx, grad, _grad_codes):
    if grad is None:  # grads are not materialised: nothing flows back
        return (None,) * 6
    (codes,) = ctx.saved_tensors
    taps, stride, padding, max_kernel, save_codes = ctx.params
    if not save_codes:
        raise RuntimeError(
            "shiftlab::max_blur_pool2d: backward through a call with save_codes=False; "
            "call it with save_codes=True (max_blur_pool2d_triton does when grad is needed)"
        )
    dx = ctx.input_gradient(grad, codes, taps, stride, padding, max_kernel)
    return dx, None, None, None, None, None


max_blur_pool2d_op.register_autograd(_backward, setup_context=_setup_context)
_MaxBlurPool2dEager = eager_autograd(_pooled, _setup_context, _backward, _input_gradient)


def max_blur_pool2d_triton(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
) -> torch.Tensor:
    """The Triton path of ``kernels.max_blur_pool2d``; arguments arrive validated. The argmax
    codes are written only when a gradient will be asked for; with none, the launch runs
    alone."""
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    if traced():
        return torch.ops.shiftlab.max_blur_pool2d(x, list(taps), stride, padding, max_kernel,
                                                  needs_grad)[0]  # fmt: skip
    if needs_grad:
        return _MaxBlurPool2dEager.apply(x, list(taps), stride, padding, max_kernel, True)[0]
    return max_blur_pool2d_forward(x, taps, stride, padding, max_kernel)
