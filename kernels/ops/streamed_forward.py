"""The forward of blur-pool and of MaxBlurPool: one Triton kernel that streams each tile down
the map one row at a time and filters separably, and its launch.

Each program holds one row of ``BLOCK_C`` × ``BLOCK_W`` outputs and runs ``BLOCK_H`` output
rows down the map. Each row of the (padded) map is formed once: for MaxBlurPool the max of
its ``max_kernel``² block, taken on load from column maxima each input row shares with its
neighbours, so the dense max map never goes to memory; for blur-pool the input itself, the
ReLU fused on load. It is filtered along W as soon as it is formed, and an output row is
written as soon as its last tap's row is in: a program keeps the last ``TAPS`` filtered rows
in registers, and reads each input element about ``(TAPS + 1)/STRIDE`` times per row (the
columns its lanes' taps share come from L1), against ``TAPS²/STRIDE²`` for a 2-D tile.

When a gradient will be needed the forward also writes what the backward
(``streamed_backward``) reads instead of ``x``: MaxBlurPool a one-byte code per max-map
element saying where in its block the max lies (``torch.max_pool2d`` keeps an int64 index per
output instead), blur-pool after its fused ReLU the mask ``not x <= 0``, one bit per element.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels.layout import keeps_channels_last
from kernels.ops.common import (
    PADDING_CODES,
    Launch,
    accumulator_dtype,
    accumulator_torch_dtype,
    as_index,
    element_offsets,
    folds_once,
    index_stride,
    needs_int64,
    padded_source,
    plane_offsets,
    resolve_config,
    taps_tensor,
    tile_origin,
    tiled_launch,
)
from kernels.ops.lanes import ALONG_W, load_along, store_along
from kernels.padding import dense_max_size, pad_index, pad_sizes
from kernels.tuning import pow2_bucket

# The forward's registers a thread, at most. Compiled alone, each of its three paths needs at
# most about 110 (MaxBlurPool, channels_last, k = 7), but the whole kernel gets more than any
# of them, 140 and over (12 resident warps an SM). Capped, the heuristic's configs spill at
# most 8 bytes and keep 16 warps resident (``benchmarks.resource_usage``, k = 3–7, Triton 3.6
# and 3.9). The backward has no cap: with one, ptxas gave it 128 registers and 80 bytes of
# stack where it needs 80 and none uncapped (channels_last, k = 7, two elements a thread).
FORWARD_REGISTERS = 128


@triton.jit
def _streamed_forward_kernel(
    x_ptr,
    y_ptr,
    side_ptr,
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
    ss_n,
    ss_c,
    ss_h,
    ss_w,
    c_blocks,
    tiles_w,
    tiles,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    PADDING: tl.constexpr,
    FOLD_ONCE: tl.constexpr,
    MAX_KERNEL: tl.constexpr,
    RELU: tl.constexpr,
    SAVE_CODES: tl.constexpr,
    SAVE_MASK: tl.constexpr,
    MASK_W: tl.constexpr,
    PACK_C: tl.constexpr,
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
    output, streamed row by row down the padded max map (:func:`_streamed_rows`; with
    ``MAX_KERNEL`` 1 the max map is the input, through the ReLU with ``RELU``).

    ``MAP_ROWS`` × ``MAP_COLS`` is the stretch of the padded max map the program reads from
    its first output's first tap: the taps' reach, and with ``SAVE_CODES`` at least the
    ``STRIDE`` × ``STRIDE`` block each output starts at, whose codes the program writes. Tiles
    whose stretch lies inside the max map along both axes (most tiles of a large map) read at
    plain offsets without masks; along W only, the rows still go through the padding; the
    others through the padding along both axes. ``LOCAL_PADDING`` (:func:`reads_own`): each
    output's padded rows and columns repeat rows and columns it reads anyway (any map not much
    smaller than the filter, any padding but circular), so the edge paths read as the plain
    one does (masked along W) and pad on registers.

    ``side_ptr`` receives the codes (``SAVE_CODES``) or the ReLU's mask (``SAVE_MASK``, by
    :func:`_store_relu_mask`, ``ss_*`` its strides); neither, it is not written.
    """
    plane, n, c, row0, col0 = tile_origin(tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C,
                                          BLOCK_H, BLOCK_W)  # fmt: skip
    # The strides the kernel multiplies by constants (columns of a row, codes of a block).
    sx_w = index_stride(sx_w, INDEX_64)
    ss_w = index_stride(ss_w, INDEX_64)
    cols = col0 + tl.arange(0, BLOCK_W)[None, None, :]
    x_maps = x_ptr + plane_offsets(n, c, sx_n, sx_c, INDEX_64)
    y_maps = y_ptr + plane_offsets(n, c, sy_n, sy_c, INDEX_64)
    code_maps = side_ptr + plane_offsets(n, c, ss_n, ss_c, INDEX_64)
    top = row0 * STRIDE - PAD_BEFORE
    inside_h = (top >= 0) & (top + MAP_ROWS <= H_map)
    inside_w = (col0 * STRIDE - PAD_BEFORE >= 0) & (
        (col0 + BLOCK_W - 1) * STRIDE - PAD_BEFORE + MAP_COLS <= W_map
    )
    inside_w &= (plane % c_blocks + 1) * BLOCK_C <= C
    if inside_h & inside_w:
        _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c < C, row0, cols, H_map, W_map,
                       H_out, W_out, sx_h, sx_w, sy_h, sy_w, ss_h, ss_w, TAPS, STRIDE,
                       PAD_BEFORE, PADDING, FOLD_ONCE, MAX_KERNEL, RELU, SAVE_CODES, MAP_ROWS,
                       MAP_COLS, False, False, LOCAL_PADDING, ACC_DTYPE, INDEX_64,
                       BLOCK_H)  # fmt: skip
    elif inside_w:
        _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c < C, row0, cols, H_map, W_map,
                       H_out, W_out, sx_h, sx_w, sy_h, sy_w, ss_h, ss_w, TAPS, STRIDE,
                       PAD_BEFORE, PADDING, FOLD_ONCE, MAX_KERNEL, RELU, SAVE_CODES, MAP_ROWS,
                       MAP_COLS, True, False, LOCAL_PADDING, ACC_DTYPE, INDEX_64,
                       BLOCK_H)  # fmt: skip
    else:
        _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c < C, row0, cols, H_map, W_map,
                       H_out, W_out, sx_h, sx_w, sy_h, sy_w, ss_h, ss_w, TAPS, STRIDE,
                       PAD_BEFORE, PADDING, FOLD_ONCE, MAX_KERNEL, RELU, SAVE_CODES, MAP_ROWS,
                       MAP_COLS, True, True, LOCAL_PADDING, ACC_DTYPE, INDEX_64,
                       BLOCK_H)  # fmt: skip
    if SAVE_MASK:
        rows = row0 + tl.arange(0, BLOCK_H)[None, :, None]
        c0 = plane % c_blocks * BLOCK_C
        # Whether the input elements this tile's outputs start at all lie inside the map.
        if ((row0 + BLOCK_H) * STRIDE <= H_map) & ((col0 + BLOCK_W) * STRIDE <= W_map) & (
            c0 + BLOCK_C <= C
        ):
            _store_relu_mask(x_maps, side_ptr, n, c, c0, rows, col0, C, H_map, W_map, sx_h,
                             sx_w, ss_n, ss_c, ss_h, ss_w, STRIDE, BLOCK_C, BLOCK_H, BLOCK_W,
                             MASK_W, PACK_C, False, INDEX_64)  # fmt: skip
        else:
            _store_relu_mask(x_maps, side_ptr, n, c, c0, rows, col0, C, H_map, W_map, sx_h,
                             sx_w, ss_n, ss_c, ss_h, ss_w, STRIDE, BLOCK_C, BLOCK_H, BLOCK_W,
                             MASK_W, PACK_C, True, INDEX_64)  # fmt: skip


@triton.jit
def _streamed_rows(x_maps, y_maps, code_maps, taps_ptr, c_ok, row0, cols, H_map, W_map, H_out,
                   W_out, sx_h, sx_w, sy_h, sy_w, sk_h, sk_w, TAPS: tl.constexpr,
                   STRIDE: tl.constexpr, PAD_BEFORE: tl.constexpr, PADDING: tl.constexpr,
                   FOLD_ONCE: tl.constexpr, MAX_KERNEL: tl.constexpr, RELU: tl.constexpr,
                   SAVE_CODES: tl.constexpr, MAP_ROWS: tl.constexpr, MAP_COLS: tl.constexpr,
                   CHECK_H: tl.constexpr, CHECK_W: tl.constexpr, LOCAL_PADDING: tl.constexpr,
                   ACC_DTYPE: tl.constexpr, INDEX_64: tl.constexpr,
                   BLOCK_H: tl.constexpr):  # fmt: skip
    """``BLOCK_H`` output rows from ``row0`` at columns ``cols`` ([1,1,BW]) of the maps at
    ``x_maps``/``y_maps`` ([BC,1,1]), the filter run separably on one max-map row at a time.

    Each max-map row is filtered along W as soon as it is formed (:func:`_next_map_row`), and
    an output row is written as soon as its last tap's row is in (:func:`_store_output_row`):
    the program keeps the last ``TAPS`` filtered rows in registers, never a window. The rows
    before the first output's last ``STRIDE`` are formed first; then a loop forms ``STRIDE``
    rows and writes one output row per step. The loop is not unrolled: the compiler's layout
    passes take time quadratic in the loads of a kernel, so an unrolled tile of ``BLOCK_H``
    rows took up to a minute to compile at ``TAPS`` 7. When the tile's stretch of the map
    does not end with its last output's taps (codes of rows below them, or taps fewer than
    the stride), the last step is unrolled to form exactly ``MAP_ROWS`` rows.

    With ``LOCAL_PADDING`` a row outside the map reads one inside (any: it is not used), and
    each output then takes, for each padded tap, the filtered row it repeats from among its
    own taps' (:func:`_padded_rows`); along W each lane weighs its columns with its taps
    folded through the padding (:func:`_folded_taps`). Without it (``CHECK_H``), each max-map
    row reads its own input rows through the padding, and (``CHECK_W``) each column its own
    input columns.
    """
    # Row indices as [1,1,1] tensors: Triton's interpreter turns a scalar mask combined with a
    # tensor one into integers, which its loads refuse (compiled code is the same either way).
    first_top = row0 * STRIDE - PAD_BEFORE
    rows0 = row0 + tl.zeros((1, 1, 1), tl.int32)
    taps = ()
    for j in tl.static_range(TAPS):
        taps += (tl.load(taps_ptr + j).to(ACC_DTYPE),)
    left = cols * STRIDE - PAD_BEFORE
    if (not CHECK_W) or LOCAL_PADDING:
        x_maps += as_index(left, INDEX_64) * sx_w
    col_taps = taps  # each lane's weights of its first TAPS max-map columns
    if CHECK_W and LOCAL_PADDING:
        # Only the columns the taps reach: those beyond (the codes' block, when the stride
        # outruns the taps) weigh nothing, and 0 * inf would leak an infinity there as NaN.
        col_taps = _folded_taps(taps, left, W_map, PADDING, FOLD_ONCE, TAPS)
    # The column maxima (and picks) of the last MAX_KERNEL - 1 input rows, which the next
    # max-map row shares; primed with those above the first (not when each row reads its own).
    recent = ()
    if not (CHECK_H and not LOCAL_PADDING):
        for u in tl.static_range(MAX_KERNEL - 1):
            recent += _input_row(x_maps, first_top + u, c_ok, left, H_map, W_map, sx_h, sx_w,
                                 STRIDE, PAD_BEFORE, PADDING, FOLD_ONCE, MAX_KERNEL, RELU,
                                 SAVE_CODES, MAP_COLS, CHECK_H, CHECK_W, INDEX_64,
                                 ACC_DTYPE)  # fmt: skip
    # Step i forms rows FIRST + i·STRIDE on and writes output row i, which reads rows i·STRIDE
    # on: the loop starts at a negative step whose output is not written, and the rows the
    # steps before it would form are zeros, but the first LEAD, formed here.
    FIRST: tl.constexpr = _rows_before_steps(TAPS, STRIDE)
    LEAD: tl.constexpr = FIRST % STRIDE
    STEPS: tl.constexpr = _looped_steps(FIRST, STRIDE, BLOCK_H, MAP_ROWS)
    window = ()  # the filtered rows the next output row reads
    for _ in tl.static_range(FIRST - LEAD):
        window += (tl.zeros((c_ok & (cols >= 0)).shape, ACC_DTYPE),)
    for head in tl.static_range(LEAD):
        filtered, recent = _next_map_row(
            head, recent, x_maps, code_maps, c_ok, first_top, rows0, cols, left, col_taps,
            H_map, W_map, sx_h, sx_w, sk_h, sk_w, STRIDE, PAD_BEFORE, PADDING, FOLD_ONCE,
            MAX_KERNEL, RELU, SAVE_CODES, MAP_COLS, CHECK_H, CHECK_W, LOCAL_PADDING, ACC_DTYPE,
            INDEX_64,
        )  # fmt: skip
        window += (filtered,)
    for step in range(FIRST // STRIDE + STEPS):
        i = step - FIRST // STRIDE
        for s in tl.static_range(STRIDE):
            m = FIRST + i * STRIDE + s
            filtered, recent = _next_map_row(
                m, recent, x_maps, code_maps, c_ok, first_top, rows0, cols, left, col_taps,
                H_map, W_map, sx_h, sx_w, sk_h, sk_w, STRIDE, PAD_BEFORE, PADDING, FOLD_ONCE,
                MAX_KERNEL, RELU, SAVE_CODES, MAP_COLS, CHECK_H, CHECK_W, LOCAL_PADDING,
                ACC_DTYPE, INDEX_64,
            )  # fmt: skip
            if (FIRST + s) % STRIDE < TAPS:  # not rows between two outputs' taps
                window += (filtered,)
        if i >= 0:
            _store_output_row(window, taps, i, y_maps, c_ok, row0, rows0, first_top, cols,
                              H_map, H_out, W_out, sy_h, sy_w, TAPS, STRIDE, PADDING, FOLD_ONCE,
                              CHECK_H, CHECK_W, LOCAL_PADDING, INDEX_64)  # fmt: skip
        window = window[STRIDE:]
    for tail in tl.static_range(FIRST + STRIDE * STEPS, MAP_ROWS):  # the last step, unrolled
        filtered, recent = _next_map_row(
            tail, recent, x_maps, code_maps, c_ok, first_top, rows0, cols, left, col_taps,
            H_map, W_map, sx_h, sx_w, sk_h, sk_w, STRIDE, PAD_BEFORE, PADDING, FOLD_ONCE,
            MAX_KERNEL, RELU, SAVE_CODES, MAP_COLS, CHECK_H, CHECK_W, LOCAL_PADDING, ACC_DTYPE,
            INDEX_64,
        )  # fmt: skip
        if _among(tail, 0, TAPS + STRIDE * (BLOCK_H - 1)) and (tail % STRIDE < TAPS):
            window += (filtered,)
    if STEPS < BLOCK_H:
        _store_output_row(window, taps, BLOCK_H - 1, y_maps, c_ok, row0, rows0, first_top, cols,
                          H_map, H_out, W_out, sy_h, sy_w, TAPS, STRIDE, PADDING, FOLD_ONCE,
                          CHECK_H, CHECK_W, LOCAL_PADDING, INDEX_64)  # fmt: skip


@triton.constexpr_function
def _rows_before_steps(taps: int, stride: int) -> int:
    """The max-map rows formed before the loop: the first output's taps but its last
    ``stride`` (none when it has fewer taps than the stride)."""
    return max(0, taps - stride)


@triton.constexpr_function
def _looped_steps(first: int, stride: int, block_h: int, map_rows: int) -> int:
    """The loop's steps: one per output row, but the last when the tile's stretch of
    ``map_rows`` rows differs from what the steps would form (``first`` + ``stride`` a step)."""
    return block_h if first + stride * block_h == map_rows else block_h - 1


@triton.jit
def _input_row(x_maps, r, c_ok, left, H_map, W_map, sx_h, sx_w, STRIDE: tl.constexpr,
               PAD_BEFORE: tl.constexpr, PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr,
               MAX_KERNEL: tl.constexpr, RELU: tl.constexpr, SAVE_CODES: tl.constexpr,
               MAP_COLS: tl.constexpr, CHECK_H: tl.constexpr, CHECK_W: tl.constexpr,
               INDEX_64: tl.constexpr, ACC_DTYPE: tl.constexpr):  # fmt: skip
    """:func:`_column_maxima` of input row ``r`` of the padded map, read as the outputs'
    columns (``LOCAL_PADDING``): rows outside read a row inside (their maxima are never
    taken)."""
    if CHECK_H:
        r = tl.minimum(tl.maximum(r, 0), H_map + MAX_KERNEL - 2)
    row = x_maps + as_index(r, INDEX_64) * sx_h
    return _column_maxima(row, c_ok, left, W_map, sx_w, STRIDE, PAD_BEFORE, PADDING, FOLD_ONCE,
                          MAX_KERNEL, RELU, SAVE_CODES, MAP_COLS, CHECK_W, CHECK_W, True,
                          ACC_DTYPE, INDEX_64)  # fmt: skip


@triton.jit
def _next_map_row(m, recent, x_maps, code_maps, c_ok, first_top, rows0, cols, left, col_taps,
                  H_map, W_map, sx_h, sx_w, sk_h, sk_w, STRIDE: tl.constexpr,
                  PAD_BEFORE: tl.constexpr,
                  PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr, MAX_KERNEL: tl.constexpr,
                  RELU: tl.constexpr, SAVE_CODES: tl.constexpr, MAP_COLS: tl.constexpr,
                  CHECK_H: tl.constexpr, CHECK_W: tl.constexpr, LOCAL_PADDING: tl.constexpr,
                  ACC_DTYPE: tl.constexpr, INDEX_64: tl.constexpr):  # fmt: skip
    """Max-map row ``m`` of the tile (from ``first_top``) filtered along W, and the column
    maxima the next row shares (``recent``, updated). With ``SAVE_CODES`` its codes are
    written, if it lies in the map (``CHECK_H``: one branch for the program): the tile's block
    rows', and those of its neighbours' the tile reads, the same values they write, which
    spares the loop a branch a row."""
    PER_ROW: tl.constexpr = MAP_COLS + STRIDE * SAVE_CODES
    if CHECK_H and not LOCAL_PADDING:
        src_h, ok_h = padded_source(first_top + m + tl.zeros((1, 1, 1), tl.int32), H_map,
                                    PADDING, FOLD_ONCE)  # fmt: skip
        ok_h &= c_ok & (src_h >= 0) & (src_h < H_map)
        rows = ()
        for u in tl.static_range(MAX_KERNEL):
            row = x_maps + as_index(src_h + u, INDEX_64) * sx_h
            rows += _column_maxima(row, ok_h, left, W_map, sx_w, STRIDE, PAD_BEFORE, PADDING,
                                   FOLD_ONCE, MAX_KERNEL, RELU, SAVE_CODES, MAP_COLS, True,
                                   CHECK_W, False, ACC_DTYPE, INDEX_64)  # fmt: skip
    else:
        rows = recent + _input_row(x_maps, first_top + m + MAX_KERNEL - 1, c_ok, left, H_map,
                                   W_map, sx_h, sx_w, STRIDE, PAD_BEFORE, PADDING, FOLD_ONCE,
                                   MAX_KERNEL, RELU, SAVE_CODES, MAP_COLS, CHECK_H, CHECK_W,
                                   INDEX_64, ACC_DTYPE)  # fmt: skip
        recent = rows[PER_ROW:]
    # The codes of the STRIDE × STRIDE blocks the outputs start at: rows PAD_BEFORE on.
    code_at = code_maps + element_offsets(0, rows0 * STRIDE - PAD_BEFORE + m, cols * STRIDE,
                                          sk_h, sk_w, INDEX_64)  # fmt: skip
    code_ok = (first_top + m >= 0) & (first_top + m < H_map)
    filtered = _map_row(rows, col_taps, code_at, code_ok, c_ok, cols * STRIDE, W_map, sk_w,
                        STRIDE, PAD_BEFORE, MAX_KERNEL, SAVE_CODES, PER_ROW, MAP_COLS, CHECK_H,
                        CHECK_W, CHECK_W and LOCAL_PADDING, ACC_DTYPE)  # fmt: skip
    return filtered, recent


@triton.jit
def _store_output_row(window, taps, i, y_maps, c_ok, row0, rows0, first_top, cols, H_map, H_out,
                      W_out, sy_h, sy_w, TAPS: tl.constexpr, STRIDE: tl.constexpr,
                      PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr, CHECK_H: tl.constexpr,
                      CHECK_W: tl.constexpr, LOCAL_PADDING: tl.constexpr,
                      INDEX_64: tl.constexpr):  # fmt: skip
    """Output row ``i`` of the tile from the filtered rows of its ``window``, through the
    padding (:func:`_padded_rows`) where its taps reach beyond the map."""
    taken = window
    if CHECK_H and LOCAL_PADDING:
        first = first_top + i * STRIDE
        if (first < 0) | (first + TAPS > H_map):  # taps beyond the map: one branch
            taken = _padded_rows(window, first, H_map, PADDING, FOLD_ONCE, TAPS)
    _store_weighed(taken, taps, i, y_maps, c_ok, row0, rows0, cols, H_out, W_out, sy_h, sy_w,
                   TAPS, CHECK_H, CHECK_W, INDEX_64)  # fmt: skip


@triton.jit
def _store_weighed(taken, taps, i, y_maps, c_ok, row0, rows0, cols, H_out, W_out, sy_h, sy_w,
                   TAPS: tl.constexpr, CHECK_H: tl.constexpr, CHECK_W: tl.constexpr,
                   INDEX_64: tl.constexpr):  # fmt: skip
    """Output row ``i``: the ``taken`` filtered rows weighed by ``taps``, stored. Off the path
    checked along W the tile's channels and columns all exist (the kernel's paths), so whether
    the row is stored is one branch for the program, not a mask per lane."""
    acc = taps[0] * taken[0]
    for s in tl.static_range(1, TAPS):
        acc += taps[s] * taken[s]
    y_at = y_maps + element_offsets(0, rows0 + i, cols, sy_h, sy_w, INDEX_64)
    value = acc.to(y_maps.dtype.element_ty)
    if CHECK_W:
        if row0 + i < H_out:
            tl.store(y_at, value, mask=c_ok & (cols < W_out))
    elif CHECK_H:
        if row0 + i < H_out:
            tl.store(y_at, value)
    else:
        tl.store(y_at, value)


@triton.constexpr_function
def _among(index: int, first: int, count: int) -> bool:
    """Whether ``first`` <= ``index`` < ``first + count``, at compile time (a condition
    assigned to a variable inside a kernel would become a runtime value)."""
    return first <= index < first + count


@triton.jit
def _column_maxima(row, row_ok, left, W_map, sx_w, STRIDE: tl.constexpr,
                   PAD_BEFORE: tl.constexpr, PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr,
                   MAX_KERNEL: tl.constexpr, RELU: tl.constexpr, SAVE_CODES: tl.constexpr,
                   MAP_COLS: tl.constexpr,
                   MASKED: tl.constexpr, CHECK_W: tl.constexpr, LOCAL_PADDING: tl.constexpr,
                   ACC_DTYPE: tl.constexpr, INDEX_64: tl.constexpr):  # fmt: skip
    """One input row's maxima over ``MAX_KERNEL`` adjacent columns (through the ReLU with
    ``RELU``; with ``MAX_KERNEL`` 1 the values themselves), for each of the
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
            ok = row_ok
            if CHECK_W:
                ok &= (left + j >= 0) & (left + j < W_map + MAX_KERNEL - 1)
            value = load_along(row + j * sx_w, ok, 0.0, ALONG_W, CHECK_W or MASKED)
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
                value = load_along(at_t + v * sx_w, ok_w, 0.0, ALONG_W, True).to(ACC_DTYPE)
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
        if RELU:  # the max of the ReLU's outputs (blur-pool's ReLU has MAX_KERNEL 1)
            best = tl.maximum(best, 0.0, propagate_nan=tl.PropagateNan.ALL)
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

    ``CODED``: the row's codes are written. For each of the ``STRIDE`` columns from
    ``PAD_BEFORE``, where in its block the maximum lies (``u·MAX_KERNEL + v``,
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
                    store_along(code_at + q * sk_w, code.to(tl.uint8),
                                c_ok & (code_cols + q < W_map), ALONG_W, True)
            elif CHECK_H:
                if code_ok:
                    store_along(code_at + q * sk_w, code.to(tl.uint8), c_ok, ALONG_W, False)
            else:
                store_along(code_at + q * sk_w, code.to(tl.uint8), c_ok, ALONG_W, False)
        if t < len(taps):
            if FOLDED_W:
                at = code_cols - PAD_BEFORE + t
                best = tl.where((at >= 0) & (at < W_map), best, 0.0)
            filtered += taps[t] * best
    return filtered


@triton.jit
def _store_relu_mask(maps, m_ptr, n, c, c0, rows, col0, C, H, W, sx_h, sx_w, sm_n, sm_c, sm_h,
                     sm_w, STRIDE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                     BLOCK_W: tl.constexpr, MASK_W: tl.constexpr, PACK_C: tl.constexpr,
                     CHECKED: tl.constexpr, INDEX_64: tl.constexpr):  # fmt: skip
    """Write ``not x <= 0`` for the input elements the tile's outputs start at (rows from
    ``rows``·STRIDE, ``STRIDE`` each; ``STRIDE``·``BLOCK_W`` columns from ``col0``·STRIDE, read
    as one contiguous run of ``MASK_W``, the next power of two), eight bits to a byte along
    the channels (``PACK_C``) or the columns. The program's channel block (``PACK_C``) or run
    holds whole bytes. Unless ``CHECKED``, all of the elements lie inside the map and every
    channel exists. It is the ReLU's gradient mask: 1 where ``x`` is NaN, as ``torch.relu``'s
    (its backward passes the gradient wherever the output is not <= 0).
    """
    steps = tl.arange(0, MASK_W)[None, None, :]
    src_w = col0 * STRIDE + steps
    ok_w = steps < STRIDE * BLOCK_W
    if CHECKED:
        ok_w &= (c < C) & (src_w < W)
    if PACK_C:
        shifts = tl.arange(0, 8)[None, :, None, None]
        bytes_c = c0 // 8 + tl.arange(0, BLOCK_C // 8)[:, None, None]  # c0: a multiple of 8
        m_base = as_index(n, INDEX_64) * sm_n + as_index(bytes_c, INDEX_64) * sm_c
    else:
        shifts = tl.arange(0, 8)[None, None, None, :]
        byte_steps = tl.arange(0, MASK_W // 8)[None, None, :]
        bytes_w = col0 * STRIDE // 8 + byte_steps
        m_base = plane_offsets(n, c, sm_n, sm_c, INDEX_64) + as_index(bytes_w, INDEX_64) * sm_w
    for a in tl.static_range(STRIDE):
        src_h = rows * STRIDE + a
        ok = ok_w & (src_h < H) if CHECKED else ok_w
        value = tl.load(element_offsets(maps, src_h, src_w, sx_h, sx_w, INDEX_64), mask=ok,
                        other=0.0)  # fmt: skip
        bits = 1 - (value.to(tl.float32) <= 0).to(tl.int32)  # (the interpreter: bf16's bits)
        if PACK_C:
            grouped = tl.reshape(bits, (BLOCK_C // 8, 8, BLOCK_H, MASK_W))
            packed = tl.sum(grouped << shifts, axis=1)
            at = m_base + as_index(src_h, INDEX_64) * sm_h + as_index(src_w, INDEX_64) * sm_w
            stored = steps < STRIDE * BLOCK_W
            if CHECKED:
                stored &= (bytes_c * 8 < C) & (src_h < H) & (src_w < W)
        else:
            grouped = tl.reshape(bits, (BLOCK_C, BLOCK_H, MASK_W // 8, 8))
            packed = tl.sum(grouped << shifts, axis=3)
            at = m_base + as_index(src_h, INDEX_64) * sm_h
            stored = byte_steps * 8 < STRIDE * BLOCK_W
            if CHECKED:
                stored &= (c < C) & (src_h < H) & (bytes_w * 8 < W)
        tl.store(m_ptr + at, packed.to(tl.uint8), mask=stored)


def forward_launch(
    op: str,
    x: torch.Tensor,
    y: torch.Tensor,
    side: torch.Tensor,
    *,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    max_kernel: int,
    relu: bool,
    save_codes: bool,
    save_mask: bool,
    config: dict[str, Any] | None,
) -> Launch:
    """The :class:`Launch` of :func:`_streamed_forward_kernel` for ``op`` ("blur_pool_fwd":
    ``max_kernel`` 1, the ReLU mask written to ``side`` with ``save_mask``;
    "max_blur_pool_fwd": pad_off 0, no ReLU, the codes written to ``side`` with
    ``save_codes``) on these tensors' layouts. The launch is then made with ``(x, y, side)``;
    ``side`` is never written when neither is saved."""
    c, h, w = x.shape[1:]
    k = len(taps)
    before = pad_sizes(k, pad_off)[0]
    is_max = op == "max_blur_pool_fwd"
    launch = resolve_config(op, x, k, stride, config, relu=relu,
                            max_kernel=max_kernel if is_max else 0)  # fmt: skip
    pack_c = keeps_channels_last(x)
    if save_mask:  # each program writes whole bytes: eight channels, or 8·stride columns
        field = "BLOCK_C" if pack_c else "BLOCK_W"
        launch = {**launch, field: max(launch[field], 8)}
    map_rows, map_cols = map_extent(k, stride, before, launch["BLOCK_H"], save_codes)
    map_h, map_w = dense_max_size(h, max_kernel), dense_max_size(w, max_kernel)
    return tiled_launch(
        _streamed_forward_kernel,
        launch,
        y.shape,
        taps_tensor(taps, x.device, accumulator_torch_dtype(x)), c, map_h, map_w, y.shape[2],
        y.shape[3], *x.stride(), *y.stride(), *side.stride(),
        TAPS=k,
        STRIDE=stride,
        PAD_BEFORE=before,
        PADDING=PADDING_CODES[padding],
        FOLD_ONCE=folds_once((map_h, map_w), k - 1 + pad_off),
        MAX_KERNEL=max_kernel,
        RELU=relu,
        SAVE_CODES=save_codes,
        SAVE_MASK=save_mask,
        MASK_W=pow2_bucket(stride * launch["BLOCK_W"]),
        PACK_C=pack_c,
        MAP_ROWS=map_rows,
        MAP_COLS=map_cols,
        # Only for positive taps: along W the taps that read one column are folded into one
        # weight, and such a weight of taps of either sign (or a zero tap) times an infinity
        # is not the sum of their products (spec §2 sums each tap's product: inf - inf = NaN).
        LOCAL_PADDING=reads_own(map_h, y.shape[2], stride, before, k, padding)
        and reads_own(map_w, y.shape[3], stride, before, k, padding)
        and all(tap > 0 for tap in taps),
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(x, y, side),
        maxnreg=FORWARD_REGISTERS,
    )  # fmt: skip


def map_extent(k: int, stride: int, before: int, block_h: int, save_codes: bool) -> tuple[int, int]:
    """The stretch of the max map a tile of ``block_h`` output rows reads (``MAP_ROWS``) and
    each output's columns (``MAP_COLS``): its taps' reach and, when the codes are written, the
    stride × stride block each output starts at (beyond the taps when k < before + stride)."""
    coded = before + stride if save_codes else 0
    return max(stride * (block_h - 1) + k, coded + stride * (block_h - 1)), max(k, coded)


def reads_own(size: int, outputs: int, stride: int, before: int, span: int,
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

