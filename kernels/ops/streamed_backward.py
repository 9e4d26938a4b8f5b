"""The backward of blur-pool and of MaxBlurPool: one Triton kernel that streams the input
gradient row by row, and the per-axis tables it reads.

Blur-pool's backward is the transpose of a separable filter. Each program runs down a row
of ``BLOCK_C`` × ``BLOCK_W`` input-gradient elements one row (of the input, or of the dense
max map) at a time:

- Along W each lane reads, per output-gradient row, the outputs whose taps reach it (for
  MaxBlurPool, any of the ``max_kernel`` windows its element lies in) and weighs them with
  its own column of :func:`column_routes`, padding folded in and read once per program: tiles
  at the left and right edges cost what inner ones do. Each output-gradient row is loaded and
  filtered along W once per program.
- Along H a row ``a`` weighs the filtered rows of outputs ``(a + before) // stride - q``, its
  band, which the program keeps in registers as it goes: with the taps themselves where all
  its rows lie in the plain rows (:func:`plain_rows`), else with per-row weights
  (:func:`row_band`; circular padding, reflect with an even filter and maps smaller than the
  filter add extra rows).
- MaxBlurPool then hands each window's gradient to the element its forward's code names,
  summed on registers over the rows; blur-pool after the fused ReLU keeps it where the
  forward's mask bit is set. A row is written once the last window over it is in.

All of it is deterministic (no atomics). Tables hold O(size · taps) entries and are cached.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import triton
import triton.language as tl

from kernels.layout import keeps_channels_last
from kernels.ops.common import (
    Launch,
    accumulator_dtype,
    accumulator_torch_dtype,
    as_index,
    element_offsets,
    needs_int64,
    plane_offsets,
    resolve_config,
    taps_tensor,
    tile_origin,
    tiled_launch,
)
from kernels.ops.lanes import ALONG_C, ALONG_W, load_along, store_along
from kernels.padding import blur_output_size, dense_max_size, pad_index, pad_sizes


@triton.jit
def _streamed_backward_kernel(
    g_ptr,
    codes_ptr,
    m_ptr,
    dx_ptr,
    taps_ptr,
    col_src_ptr,
    col_wt_ptr,
    band_ptr,
    extra_src_ptr,
    extra_wt_ptr,
    first_plain,
    last_plain,
    C,
    H,
    W,
    H_map,
    W_map,
    H_out,
    sg_n,
    sg_c,
    sg_h,
    sg_w,
    sk_n,
    sk_c,
    sk_h,
    sk_w,
    sm_n,
    sm_c,
    sm_h,
    sm_w,
    sd_n,
    sd_c,
    sd_h,
    sd_w,
    c_blocks,
    tiles_w,
    tiles,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    MAX_KERNEL: tl.constexpr,
    RELU: tl.constexpr,
    PACK_C: tl.constexpr,
    SLOTS: tl.constexpr,
    BAND: tl.constexpr,
    EXTRA: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
    LANE_AXIS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """One program: ``BLOCK_C`` channels × ``BLOCK_H`` rows × ``BLOCK_W`` columns of the input
    gradient, streamed row by row (:func:`_streamed_gradient`; ``BLOCK_H`` a multiple of
    ``STRIDE``). ``MAX_KERNEL`` > 1: MaxBlurPool's, routed by the forward's codes over the
    dense max map (``H_map`` × ``W_map``); 1: blur-pool's (the map is the input), with
    ``RELU`` kept where the forward's mask bit is set (packed along C when ``PACK_C``, else W).

    Along W each lane reads, per output-gradient row, the ``SLOTS`` outputs whose taps reach
    any of its ``MAX_KERNEL`` windows (map columns ``cols - v``), and weighs them for each
    window with its own column of :func:`column_routes` (read once per program). Along H the
    rows' weights are the taps themselves where all the program's map rows lie in
    [``first_plain``, ``last_plain``] (most programs of a large map), else read per row from
    :func:`row_band`.
    """
    _, n, c, row0, col0 = tile_origin(tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C,
                                      BLOCK_H, BLOCK_W)  # fmt: skip
    cols = col0 + tl.arange(0, BLOCK_W)[None, None, :]
    col_ok = cols < W
    # Loads of a channel past C read an existing one; their results are never stored.
    c_read = tl.minimum(c, C - 1)
    g_maps = g_ptr + plane_offsets(n, c_read, sg_n, sg_c, INDEX_64)
    code_maps = codes_ptr + plane_offsets(n, c_read, sk_n, sk_c, INDEX_64)
    dx_maps = dx_ptr + plane_offsets(n, c, sd_n, sd_c, INDEX_64)
    mask_maps, mask_cols, mask_bits = mask_bytes(m_ptr, n, c, cols, sm_n, sm_c, PACK_C,
                                                 INDEX_64)  # fmt: skip
    reads, read_ok, weights = lane_routes(col_src_ptr, col_wt_ptr, cols, col_ok, W, sg_w,
                                          MAX_KERNEL, SLOTS, INDEX_64)  # fmt: skip
    store_ok = (c < C) & col_ok
    if (row0 - (MAX_KERNEL - 1) >= first_plain) & (row0 + BLOCK_H - 1 <= last_plain):
        _streamed_gradient(g_maps, code_maps, mask_maps, dx_maps, taps_ptr, band_ptr,
                           extra_src_ptr, extra_wt_ptr, reads, read_ok, weights, mask_cols,
                           mask_bits, store_ok, row0, cols, H, W_map, H_map, H_out, sg_h, sk_h,
                           sk_w, sm_h, sm_w, sd_h, sd_w, TAPS, STRIDE, PAD_BEFORE, MAX_KERNEL,
                           RELU, SLOTS, BAND, 0, True, ACC_DTYPE, INDEX_64, LANE_AXIS, BLOCK_C,
                           BLOCK_H, BLOCK_W)  # fmt: skip
    else:
        _streamed_gradient(g_maps, code_maps, mask_maps, dx_maps, taps_ptr, band_ptr,
                           extra_src_ptr, extra_wt_ptr, reads, read_ok, weights, mask_cols,
                           mask_bits, store_ok, row0, cols, H, W_map, H_map, H_out, sg_h, sk_h,
                           sk_w, sm_h, sm_w, sd_h, sd_w, TAPS, STRIDE, PAD_BEFORE, MAX_KERNEL,
                           RELU, SLOTS, BAND, EXTRA, False, ACC_DTYPE, INDEX_64, LANE_AXIS,
                           BLOCK_C, BLOCK_H, BLOCK_W)  # fmt: skip


@triton.jit
def mask_bytes(m_ptr, n, c, cols, sm_n, sm_c, PACK_C: tl.constexpr, INDEX_64: tl.constexpr):
    """Where the fused ReLU's mask keeps each element's bit: the [BC,1,1] start of each
    channel's byte map, the byte's column and the bit, packed along the channels
    (``PACK_C``) or the columns."""
    if PACK_C:
        maps = m_ptr + plane_offsets(n, c // 8, sm_n, sm_c, INDEX_64)
        byte_cols = cols
        bits = c % 8
    else:
        maps = m_ptr + plane_offsets(n, c, sm_n, sm_c, INDEX_64)
        byte_cols = cols // 8
        bits = cols % 8
    return maps, byte_cols, bits


@triton.jit
def lane_routes(col_src_ptr, col_wt_ptr, cols, col_ok, W, sg_w, MAX_KERNEL: tl.constexpr,
                SLOTS: tl.constexpr, INDEX_64: tl.constexpr):  # fmt: skip
    """Each lane's column of :func:`column_routes`, read once per program: the offsets along
    W of its ``SLOTS`` outputs, whether each exists, and window ``v``'s weight of slot ``s``
    at ``v * SLOTS + s``."""
    reads = ()
    read_ok = ()
    for s in tl.static_range(SLOTS):
        src = tl.load(col_src_ptr + s * W + cols, mask=col_ok, other=-1)
        reads += (as_index(src, INDEX_64) * sg_w,)
        read_ok += (src >= 0,)
    weights = ()
    for i in tl.static_range(MAX_KERNEL * SLOTS):
        weights += (tl.load(col_wt_ptr + i * W + cols, mask=col_ok, other=0.0),)
    return reads, read_ok, weights


@triton.jit
def _streamed_gradient(g_maps, code_maps, mask_maps, dx_maps, taps_ptr, band_ptr,
                       extra_src_ptr, extra_wt_ptr, reads, read_ok, weights, mask_cols,
                       mask_bits, store_ok, row0, cols, H, W_map, H_map, H_out, sg_h, sk_h, sk_w,
                       sm_h, sm_w, sd_h, sd_w, TAPS: tl.constexpr, STRIDE: tl.constexpr,
                       PAD_BEFORE: tl.constexpr, MAX_KERNEL: tl.constexpr, RELU: tl.constexpr,
                       SLOTS: tl.constexpr, BAND: tl.constexpr,
                       EXTRA: tl.constexpr, PLAIN_H: tl.constexpr, ACC_DTYPE: tl.constexpr,
                       INDEX_64: tl.constexpr, LANE_AXIS: tl.constexpr, BLOCK_C: tl.constexpr,
                       BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):  # fmt: skip
    """``BLOCK_H`` input-gradient rows from ``row0``, one map row at a time
    (:func:`_gradient_row`), from ``MAX_KERNEL`` - 1 rows above the first (whose windows reach
    it).

    Blur-pool's rows are unrolled. MaxBlurPool's first rows are (the first fills the band,
    those above ``row0`` store nothing), then a loop runs the rest ``STRIDE`` rows a step: a
    step's rows read their bands with the same taps and gain their fresh output rows at the
    same places, so one unrolled step serves every trip (:func:`_looped_row_steps`).
    """
    # Row indices as [1,1,1] tensors: Triton's interpreter turns a scalar mask combined with a
    # tensor one into integers, which its loads refuse (compiled code is the same either way).
    row0 += tl.zeros((1, 1, 1), tl.int32)
    taps = ()
    for t in tl.static_range(TAPS):
        taps += (tl.load(taps_ptr + t),)
    window = ()  # the filtered rows of the band, MAX_KERNEL each, oldest first
    pending = ()  # the input-gradient rows a, a + 1, ... still receiving windows' gradients
    for _ in tl.static_range(MAX_KERNEL):
        pending += (tl.zeros((BLOCK_C, 1, BLOCK_W), ACC_DTYPE),)
    STEPS: tl.constexpr = _looped_row_steps(BLOCK_H + MAX_KERNEL - 1, MAX_KERNEL, STRIDE)
    LEAD: tl.constexpr = BLOCK_H + MAX_KERNEL - 1 - STEPS * STRIDE
    for i in tl.static_range(LEAD):
        window, pending = _gradient_row(
            i, 0, window, pending, g_maps, code_maps, mask_maps, dx_maps, taps, band_ptr,
            extra_src_ptr, extra_wt_ptr, reads, read_ok, weights, mask_cols, mask_bits,
            store_ok, row0, cols, H, W_map, H_map, H_out, sg_h, sk_h, sk_w, sm_h, sm_w, sd_h,
            sd_w, TAPS, STRIDE, PAD_BEFORE, MAX_KERNEL, RELU, SLOTS, BAND, EXTRA, PLAIN_H,
            ACC_DTYPE, INDEX_64, LANE_AXIS, BLOCK_C, BLOCK_W,
        )  # fmt: skip
    for step in range(STEPS):
        for s in tl.static_range(STRIDE):
            window, pending = _gradient_row(
                LEAD + s, step, window, pending, g_maps, code_maps, mask_maps, dx_maps, taps,
                band_ptr, extra_src_ptr, extra_wt_ptr, reads, read_ok, weights, mask_cols,
                mask_bits, store_ok, row0, cols, H, W_map, H_map, H_out, sg_h, sk_h, sk_w, sm_h,
                sm_w, sd_h, sd_w, TAPS, STRIDE, PAD_BEFORE, MAX_KERNEL, RELU, SLOTS, BAND, EXTRA,
                PLAIN_H, ACC_DTYPE, INDEX_64, LANE_AXIS, BLOCK_C, BLOCK_W,
            )  # fmt: skip


@triton.constexpr_function
def _looped_row_steps(rows: int, max_kernel: int, stride: int) -> int:
    """The loop's steps of ``stride`` rows, of the ``rows`` a program runs: for MaxBlurPool
    all but the first (which fills the band), those above the program's first row
    (``max_kernel`` - 1, which store nothing) and what is left of a step; none for blur-pool.

    The loop trades instructions for compile time. Unrolled, MaxBlurPool's kernel (each row
    loading codes and routing windows) took Triton's coalescing pass, whose time grows as the
    square of a kernel's memory operations, 14–18 s to compile per launch configuration
    (sm_90, k = 4 and 7, 16 rows, Triton 3.6 on a 2-core CPU; 16–28 s with 3.9), and
    1.7–3.7 s looped, for 12–15 % more instructions per element inside the map and 24–32 %
    on its edge rows (``benchmarks.static_cost``). Blur-pool's compiled in 2.5–11 s unrolled,
    and its NCHW backward issues about the instructions its bytes allow: it stays unrolled."""
    if max_kernel == 1:
        return 0
    return (rows - max(1, max_kernel - 1)) // stride


@triton.jit
def _gradient_row(I: tl.constexpr, step, window, pending, g_maps, code_maps, mask_maps, dx_maps,
                  taps, band_ptr, extra_src_ptr, extra_wt_ptr, reads, read_ok, weights,
                  mask_cols, mask_bits, store_ok, row0, cols, H, W_map, H_map, H_out, sg_h, sk_h,
                  sk_w, sm_h, sm_w, sd_h, sd_w, TAPS: tl.constexpr, STRIDE: tl.constexpr,
                  PAD_BEFORE: tl.constexpr, MAX_KERNEL: tl.constexpr, RELU: tl.constexpr,
                  SLOTS: tl.constexpr, BAND: tl.constexpr, EXTRA: tl.constexpr,
                  PLAIN_H: tl.constexpr, ACC_DTYPE: tl.constexpr, INDEX_64: tl.constexpr,
                  LANE_AXIS: tl.constexpr, BLOCK_C: tl.constexpr,
                  BLOCK_W: tl.constexpr):  # fmt: skip
    """Map row ``a`` = ``row0`` + i - (``MAX_KERNEL`` - 1) of the program's rows, i = ``I`` +
    ``step``·``STRIDE``: its gradient, and (``MAX_KERNEL`` > 1) the rows its windows hand it
    to; the ``window`` and ``pending`` rows updated. Everything but the row's place depends on
    ``I`` alone, a step being a whole number of strides.

    Row ``a`` weighs the ``BAND`` filtered rows of outputs ``(a + PAD_BEFORE) // STRIDE - q``
    (:func:`_filtered_row`), which the program keeps in registers as it goes, each loaded and
    filtered along W once: ``PLAIN_H``, with the taps themselves (rows inside the plain
    interval: every weight a tap, every output there), else with the weights of
    :func:`row_band`, and ``EXTRA`` more rows read for row ``a`` alone (circular padding,
    reflect with an even filter, tiny maps). With ``MAX_KERNEL`` > 1 each window's gradient
    then goes to the element its code names: the routed rows are summed on registers, and an
    input-gradient row is written once the last window over it is in.
    """
    a = row0 + I + step * STRIDE - (MAX_KERNEL - 1)
    # Its band's output rows not yet filtered (Triton keeps a constexpr local only once).
    last_output = row0 // STRIDE + _band_end(I, MAX_KERNEL, PAD_BEFORE, STRIDE) + step
    for j in tl.static_range(_band_fresh(I, MAX_KERNEL, PAD_BEFORE, STRIDE, BAND)):
        row = last_output + 1 + j - _band_fresh(I, MAX_KERNEL, PAD_BEFORE, STRIDE, BAND)
        window += _filtered_row(g_maps, row, H_out, sg_h, reads, read_ok, weights, MAX_KERNEL,
                                SLOTS, not PLAIN_H, ACC_DTYPE, INDEX_64, LANE_AXIS)  # fmt: skip
    if I > 0:
        window = window[_band_fresh(I, MAX_KERNEL, PAD_BEFORE, STRIDE, BAND) * MAX_KERNEL:]
    a_row = tl.minimum(tl.maximum(a, 0), H_map - 1)
    grad_max = ()
    for _ in tl.static_range(MAX_KERNEL):
        grad_max += (tl.zeros((BLOCK_C, 1, BLOCK_W), ACC_DTYPE),)
    for q in tl.static_range(BAND):
        if PLAIN_H:
            if _band_tap(I, q, MAX_KERNEL, PAD_BEFORE, STRIDE) < TAPS:
                grad_max = _weighed(grad_max, window, BAND - 1 - q,
                                    taps[_band_tap(I, q, MAX_KERNEL, PAD_BEFORE, STRIDE)],
                                    MAX_KERNEL)  # fmt: skip
        else:
            grad_max = _weighed(grad_max, window, BAND - 1 - q,
                                tl.load(band_ptr + a_row * BAND + q), MAX_KERNEL)
    for e in tl.static_range(EXTRA):
        extra = _filtered_row(g_maps, tl.load(extra_src_ptr + a_row * EXTRA + e), H_out, sg_h,
                              reads, read_ok, weights, MAX_KERNEL, SLOTS, True, ACC_DTYPE,
                              INDEX_64, LANE_AXIS)  # fmt: skip
        grad_max = _weighed(grad_max, extra, 0, tl.load(extra_wt_ptr + a_row * EXTRA + e),
                            MAX_KERNEL)  # fmt: skip
    # Window (a, cols - v) hands its gradient to row a + u of the element its code names.
    routed = pending
    if MAX_KERNEL == 1:
        routed = grad_max
    else:
        for v in tl.static_range(MAX_KERNEL):
            at = code_maps + element_offsets(0, a, cols - v, sk_h, sk_w, INDEX_64)
            code_ok = (cols >= v) & (cols - v < W_map)
            if not PLAIN_H:
                code_ok &= (a >= 0) & (a < H_map)
            code = load_along(at, code_ok, 255, LANE_AXIS, True)
            updated = ()
            for u in tl.static_range(MAX_KERNEL):
                picked = tl.where(code == u * MAX_KERNEL + v, grad_max[v], 0.0)
                updated += (routed[u] + picked,)
            routed = updated
    if I >= MAX_KERNEL - 1:
        at = dx_maps + element_offsets(0, a, cols, sd_h, sd_w, INDEX_64)
        value = routed[0]
        ok = store_ok
        if not PLAIN_H:
            ok &= a < H
        if RELU:
            byte = mask_maps + element_offsets(0, a, mask_cols, sm_h, sm_w, INDEX_64)
            packed = load_along(byte, ok, 0, LANE_AXIS, True).to(tl.int32)
            value = tl.where((packed >> mask_bits) & 1 != 0, value, 0.0)
        store_along(at, value.to(dx_maps.dtype.element_ty), ok, LANE_AXIS, True)
    pending = routed[1:]
    pending += (tl.zeros((BLOCK_C, 1, BLOCK_W), ACC_DTYPE),)
    return window, pending


@triton.constexpr_function
def _band_end(step: int, max_kernel: int, before: int, stride: int) -> int:
    """The last output row of the band of the map row a program reaches at ``step``,
    counted from the program's first output row."""
    return (step - (max_kernel - 1) + before) // stride


@triton.constexpr_function
def _band_fresh(step: int, max_kernel: int, before: int, stride: int, band: int) -> int:
    """How many output rows the band gains at ``step``: all of it at the first."""
    if step == 0:
        return band
    end = _band_end(step, max_kernel, before, stride)
    return end - _band_end(step - 1, max_kernel, before, stride)


@triton.constexpr_function
def _band_tap(step: int, q: int, max_kernel: int, before: int, stride: int) -> int:
    """The tap by which the map row at ``step`` reads output ``q`` of its band, in the
    plain interval (the program's first row a multiple of ``stride``)."""
    return (step - (max_kernel - 1) + before) % stride + stride * q


@triton.jit
def _weighed(acc, rows, index, weight, MAX_KERNEL: tl.constexpr):
    """``acc`` (one row per window) plus ``weight`` times the ``index``-th filtered row of
    ``rows`` (``MAX_KERNEL`` entries a row)."""
    summed = ()
    for v in tl.static_range(MAX_KERNEL):
        summed += (acc[v] + weight * rows[index * MAX_KERNEL + v],)
    return summed


@triton.jit
def _filtered_row(g_maps, output_row, H_out, sg_h, reads, read_ok, weights,
                  MAX_KERNEL: tl.constexpr, SLOTS: tl.constexpr, CHECK_ROW: tl.constexpr,
                  ACC_DTYPE: tl.constexpr, INDEX_64: tl.constexpr,
                  LANE_AXIS: tl.constexpr):  # fmt: skip
    """Output-gradient row ``output_row`` filtered along W for each lane's ``MAX_KERNEL``
    windows: a tuple of ``MAX_KERNEL`` [BC,1,BW] rows; ``CHECK_ROW``: zero outside the
    output."""
    row = g_maps + as_index(output_row, INDEX_64) * sg_h
    row_ok = (output_row >= 0) & (output_row < H_out)
    values = ()
    for s in tl.static_range(SLOTS):
        mask = read_ok[s]
        if CHECK_ROW:
            mask &= row_ok
        values += (load_along(row + reads[s], mask, 0.0, LANE_AXIS, True).to(ACC_DTYPE),)
    filtered = ()
    for v in tl.static_range(MAX_KERNEL):
        acc = weights[v * SLOTS] * values[0]
        for s in tl.static_range(1, SLOTS):
            acc += weights[v * SLOTS + s] * values[s]
        filtered += (acc,)
    return filtered


def backward_launch(
    op: str,
    grad: torch.Tensor,
    codes: torch.Tensor,
    mask: torch.Tensor,
    dx: torch.Tensor,
    *,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    max_kernel: int,
    relu: bool,
    pack_c: bool,
    config: dict[str, Any] | None,
) -> Launch:
    """The :class:`Launch` of :func:`_streamed_backward_kernel` for ``op`` ("blur_pool_bwd":
    ``max_kernel`` 1, ``codes`` unread; "max_blur_pool_bwd": pad_off 0, ``relu`` False) on
    these tensors' layouts; ``mask`` (its bits packed along C with ``pack_c``, else W) is read
    only with ``relu``. The launch is then made with ``(grad, codes, mask, dx)``."""
    _, c, h, w = dx.shape
    map_h, map_w = dense_max_size(h, max_kernel), dense_max_size(w, max_kernel)
    dtype = accumulator_torch_dtype(dx)
    k = len(taps)
    col_src, col_wt = column_routes(map_w, taps, stride, pad_off, padding, max_kernel, dtype,
                                    dx.device)  # fmt: skip
    band, extra_src, extra_wt, extra = row_band(map_h, taps, stride, pad_off, padding, dtype,
                                                dx.device)  # fmt: skip
    launch = resolve_config(op, dx, k, stride, config, relu=relu,
                            max_kernel=max_kernel if op == "max_blur_pool_bwd" else 0)
    rows = -(-launch["BLOCK_H"] // stride) * stride  # whole strides: the band's rows line up
    return tiled_launch(
        _streamed_backward_kernel,
        launch,
        dx.shape,
        taps_tensor(taps, dx.device, dtype), col_src, col_wt, band, extra_src, extra_wt,
        *plain_rows(map_h, taps, stride, pad_off, padding), c, h, w, map_h, map_w,
        grad.shape[2], *grad.stride(), *codes.stride(), *mask.stride(), *dx.stride(),
        tile=(rows, launch["BLOCK_W"]),
        TAPS=k,
        STRIDE=stride,
        PAD_BEFORE=pad_sizes(k, pad_off)[0],
        MAX_KERNEL=max_kernel,
        RELU=relu,
        PACK_C=pack_c,
        SLOTS=col_src.shape[0],
        BAND=band.shape[1],
        EXTRA=extra,
        ACC_DTYPE=accumulator_dtype(dx),
        INDEX_64=needs_int64(grad, codes, mask, dx),
        LANE_AXIS=(ALONG_C if keeps_channels_last(dx) else ALONG_W).value,
        BLOCK_H=rows,
    )  # fmt: skip


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


@functools.lru_cache(maxsize=512)
def column_routes(
    map_size: int,
    taps: tuple[float, ...],
    stride: int,
    pad_off: int,
    padding: str,
    max_kernel: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input column ``x``: the outputs whose taps reach any of its windows (map columns
    ``x - v``, ``v`` < ``max_kernel``), ``src`` (slots, width; -1: none), and the weight each
    has for each window, ``wt`` (max_kernel · slots, width): the backward's view of an axis
    along W, padding folded in."""
    src, wt = transposed_filter(map_size, taps, stride, pad_off, padding)
    width = map_size + max_kernel - 1
    routes: list[dict[int, list[float]]] = [{} for _ in range(width)]
    for x, route in enumerate(routes):
        for v in range(max_kernel):
            if 0 <= x - v < map_size:
                for output, weight in zip(src[x - v].tolist(), wt[x - v].tolist(), strict=True):
                    if output >= 0:
                        route.setdefault(output, [0.0] * max_kernel)[v] += weight
    slots = max(1, *(len(route) for route in routes))
    col_src = torch.full((slots, width), -1, dtype=torch.int32)
    col_wt = torch.zeros((max_kernel, slots, width), dtype=torch.float64)
    for x, route in enumerate(routes):
        for s, (output, weights) in enumerate(sorted(route.items())):
            col_src[s, x] = output
            col_wt[:, s, x] = torch.tensor(weights, dtype=torch.float64)
    return col_src.to(device), col_wt.reshape(max_kernel * slots, width).to(device, dtype)


@functools.lru_cache(maxsize=512)
def row_band(
    map_size: int,
    taps: tuple[float, ...],
    stride: int,
    pad_off: int,
    padding: str,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """:func:`row_weights` on ``device``, the weights in ``dtype``."""
    band, extra_src, extra_wt, count = row_weights(map_size, taps, stride, pad_off, padding)
    return band.to(device, dtype), extra_src.to(device), extra_wt.to(device, dtype), count


@functools.lru_cache(maxsize=512)
def row_weights(
    map_size: int, taps: tuple[float, ...], stride: int, pad_off: int, padding: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The backward's view of an axis along H: per map row ``a``, the weights of outputs
    ``(a + before) // stride - q`` (``q`` < ceil(taps / stride): every output a plain row's
    taps reach), ``band`` (map_size, q), padding folded in; and the outputs outside that band
    that read it, which only some paddings give (circular, reflect with an even filter, any
    on a map smaller than the filter): ``extra_src``/``extra_wt`` (map_size, at least 1; -1
    and 0 where a row has fewer), and how many a row has at most, ``extra``. Float64, on the
    CPU."""
    src, wt = transposed_filter(map_size, taps, stride, pad_off, padding)
    before = pad_sizes(len(taps), pad_off)[0]
    band = torch.zeros((map_size, -(-len(taps) // stride)), dtype=torch.float64)
    extras: list[list[tuple[int, float]]] = [[] for _ in range(map_size)]
    for a in range(map_size):
        last = (a + before) // stride
        for output, weight in zip(src[a].tolist(), wt[a].tolist(), strict=True):
            if 0 <= last - output < band.shape[1]:
                band[a, last - output] += weight
            elif output >= 0:
                extras[a].append((output, weight))
    count = max(len(extra) for extra in extras)
    extra_src = torch.full((map_size, max(count, 1)), -1, dtype=torch.int32)
    extra_wt = torch.zeros((map_size, max(count, 1)), dtype=torch.float64)
    for a, extra in enumerate(extras):
        for e, (output, weight) in enumerate(extra):
            extra_src[a, e], extra_wt[a, e] = output, weight
    return band, extra_src, extra_wt, count


@functools.lru_cache(maxsize=512)
def plain_rows(
    map_size: int, taps: tuple[float, ...], stride: int, pad_off: int, padding: str
) -> tuple[int, int]:
    """The longest stretch [first, last] of map rows whose band holds the plain filter's taps
    (tap ``(a + before) % stride + q·stride`` for output ``q``), every output of the band
    existing (those of its zero slots too: the plain path loads every band row unchecked),
    and nothing outside it: rows the backward weighs with the taps themselves and reads
    without checks. (1, 0) if none."""
    band, extra_src, _, _ = row_weights(map_size, taps, stride, pad_off, padding)
    before = pad_sizes(len(taps), pad_off)[0]
    out_size = blur_output_size(map_size, stride, pad_off)
    plain = []
    for a in range(map_size):
        row_plain = not bool((extra_src[a] >= 0).any())
        for q in range(band.shape[1]):
            tap = (a + before) % stride + q * stride
            weight = taps[tap] if tap < len(taps) else 0.0
            output = (a + before) // stride - q
            row_plain &= 0 <= output < out_size and float(band[a, q]) == weight
        plain.append(row_plain)
    return longest_run(plain)
