"""MaxBlurPool (dense max at stride 1, then blur-pool): Triton kernels, launchers and the
``shiftlab::max_blur_pool2d`` custom op with its autograd and fake implementations.

Forward: each program loads a window of the dense max map once (each value the max of its
``max_kernel``² block, so the map never goes to memory) and filters it on registers; when a
gradient will be needed it also writes, per max-map element, a one-byte code saying where in
its block the max lies (``torch.max_pool2d`` keeps an int64 index per output instead).
Backward, from the output gradient and those codes only, in one pass: each program takes
blur-pool's backward over a span of the max map on registers, then hands each window's
gradient to the element its code names (no temporary of the map's size).
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
    eager_autograd,
    element_offsets,
    empty_output,
    folds_once,
    gradient_buffer,
    gradient_tables,
    interleaved_transposed_blur,
    keeps_channels_last,
    needs_int64,
    output_buffer,
    padded_source,
    plain_interval,
    plane_offsets,
    pooled_shape,
    resolve_config,
    separable_gather,
    store_leading,
    taps_tensor,
    tile_offsets,
    tile_origin,
    tile_width,
    tiled_launch,
    traced,
)
from kernels.options import MAX_CODED_KERNEL
from kernels.padding import pad_sizes
from kernels.tuning import pow2_bucket


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
    pad_before,
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
    PADDING: tl.constexpr,
    FOLD_ONCE: tl.constexpr,
    MAX_KERNEL: tl.constexpr,
    SAVE_CODES: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    SPAN_H: tl.constexpr,
    SPAN_W: tl.constexpr,
    ROWS: tl.constexpr,
    COLS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """One program: ``BLOCK_C`` channels × a ``SPAN_H`` × ``SPAN_W`` window of the padded max
    map, read once, giving the ``ROWS`` × ``COLS`` outputs that window covers.

    Each element of the window is the max of its ``MAX_KERNEL``² block of the input, loaded
    once (the dense max map never goes to memory; :func:`_max_window`). Spans inside the max
    map (most of a large map's) read it at plain offsets without masks; the others go through
    the padding. The filter then runs separably on registers (:func:`_filtered_window`): the
    taps pick window columns, then rows, with ``tl.gather`` (warp shuffles), so a k-tap filter
    costs 2k gathers per output rather than k²·``MAX_KERNEL``² loads, as taking the max at
    every tap (blur-pool's kernel) would.

    ``SAVE_CODES``: also write, per max-map element, where in its block the max lies
    (``u·MAX_KERNEL + v``, as ``torch.max_pool2d``'s scan picks it: the last NaN, else the
    first maximum), one byte each, for the backward. Spans overlap and padding repeats
    elements, so some codes are written more than once, always with the same value.
    """
    plane, n, c, row0, col0 = tile_origin(tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C,
                                          ROWS, COLS)  # fmt: skip
    x_maps = x_ptr + plane_offsets(n, c, sx_n, sx_c, INDEX_64)
    code_maps = codes_ptr + plane_offsets(n, c, sk_n, sk_c, INDEX_64)
    top = row0 * STRIDE - pad_before
    left = col0 * STRIDE - pad_before
    inside = ((plane % c_blocks + 1) * BLOCK_C <= C) & (top >= 0) & (left >= 0)
    inside &= (top + SPAN_H <= H_map) & (left + SPAN_W <= W_map)
    if inside:
        window = _max_window(x_maps, code_maps, c < C, top, left, H_map, W_map, sx_h, sx_w, sk_h,
                             sk_w, PADDING, FOLD_ONCE, MAX_KERNEL, SAVE_CODES, False, ACC_DTYPE,
                             INDEX_64, SPAN_H, SPAN_W)  # fmt: skip
    else:
        window = _max_window(x_maps, code_maps, c < C, top, left, H_map, W_map, sx_h, sx_w, sk_h,
                             sk_w, PADDING, FOLD_ONCE, MAX_KERNEL, SAVE_CODES, True, ACC_DTYPE,
                             INDEX_64, SPAN_H, SPAN_W)  # fmt: skip

    acc = _filtered_window(window, taps_ptr, TAPS, STRIDE, ACC_DTYPE, BLOCK_H, BLOCK_W)
    store_leading(y_ptr, acc, n, c, C, row0, col0, H_out, W_out, sy_n, sy_c, sy_h, sy_w, ROWS,
                  COLS, INDEX_64)  # fmt: skip


@triton.jit
def _max_window(x_maps, code_maps, c_ok, top, left, H_map, W_map, sx_h, sx_w, sk_h, sk_w,
                PADDING: tl.constexpr, FOLD_ONCE: tl.constexpr, MAX_KERNEL: tl.constexpr,
                SAVE_CODES: tl.constexpr, CHECKED: tl.constexpr, ACC_DTYPE: tl.constexpr,
                INDEX_64: tl.constexpr, SPAN_H: tl.constexpr,
                SPAN_W: tl.constexpr):  # fmt: skip
    """The ``SPAN_H`` × ``SPAN_W`` window of the padded max map from (``top``, ``left``), each
    element the max of its ``MAX_KERNEL``² block of the maps at ``x_maps`` ([BC,1,1]); with
    ``SAVE_CODES`` the codes are written to ``code_maps``.

    ``CHECKED``: positions go through the padding (:func:`padded_source`) and reads are
    masked (channels by ``c_ok``). Unchecked, the window lies inside the max map and all
    channels exist: plain offsets, no mask.
    """
    rows = top + tl.arange(0, SPAN_H)
    cols = left + tl.arange(0, SPAN_W)
    if CHECKED:
        rows, ok_h = padded_source(rows, H_map, PADDING, FOLD_ONCE)
        cols, ok_w = padded_source(cols, W_map, PADDING, FOLD_ONCE)
        # A span can reach past the last padded position (its outputs there are masked off).
        ok_h &= (rows >= 0) & (rows < H_map)
        ok_w &= (cols >= 0) & (cols < W_map)
        mask = c_ok & ok_h[None, :, None] & ok_w[None, None, :]
    rows = rows[None, :, None]
    cols = cols[None, None, :]
    at = x_maps + element_offsets(0, rows, cols, sx_h, sx_w, INDEX_64)
    window = tl.load(at, mask=mask, other=0.0) if CHECKED else tl.load(at)
    code = tl.zeros(window.shape, tl.int32)
    for u in tl.static_range(MAX_KERNEL):
        for v in tl.static_range(MAX_KERNEL):
            if u + v > 0:
                at_uv = at + (u * sx_h + v * sx_w)
                other = tl.load(at_uv, mask=mask, other=0.0) if CHECKED else tl.load(at_uv)
                if SAVE_CODES:
                    take = (other > window) | (other != other)
                    window = tl.where(take, other, window)
                    code = tl.where(take, u * MAX_KERNEL + v, code)
                else:
                    window = tl.maximum(window, other, propagate_nan=tl.PropagateNan.ALL)
    if SAVE_CODES:
        codes_at = code_maps + element_offsets(0, rows, cols, sk_h, sk_w, INDEX_64)
        if CHECKED:
            tl.store(codes_at, code.to(tl.uint8), mask=mask)
        else:
            tl.store(codes_at, code.to(tl.uint8))
    return window.to(ACC_DTYPE)


@triton.jit
def _filtered_window(window, taps_ptr, TAPS: tl.constexpr, STRIDE: tl.constexpr,
                    ACC_DTYPE: tl.constexpr, BLOCK_H: tl.constexpr,
                    BLOCK_W: tl.constexpr):  # fmt: skip
    """The filter on a window held in registers ([BC, SPAN_H, SPAN_W]), run separably: the taps
    pick window columns, then rows, with ``tl.gather`` (warp shuffles), giving [BC, BLOCK_H,
    BLOCK_W] outputs (those past the window's last full tap read its last row or column)."""
    span_h: tl.constexpr = window.shape[1]
    span_w: tl.constexpr = window.shape[2]
    out_w = tl.arange(0, BLOCK_W)[None, None, :]
    across = tl.zeros((window.shape[0], span_h, BLOCK_W), ACC_DTYPE)
    for j in tl.static_range(TAPS):
        pick = tl.broadcast_to(tl.minimum(out_w * STRIDE + j, span_w - 1), across.shape)
        across += tl.load(taps_ptr + j) * tl.gather(window, pick, axis=2)
    out_h = tl.arange(0, BLOCK_H)[None, :, None]
    acc = tl.zeros((window.shape[0], BLOCK_H, BLOCK_W), ACC_DTYPE)
    for i in tl.static_range(TAPS):
        pick = tl.broadcast_to(tl.minimum(out_h * STRIDE + i, span_h - 1), acc.shape)
        acc += tl.load(taps_ptr + i) * tl.gather(across, pick, axis=1)
    return acc


@triton.jit
def _shifted(t, by: tl.constexpr, AXIS: tl.constexpr):
    """``t`` read ``by`` places further along ``AXIS`` (its last element repeated past the
    end), with ``tl.gather`` (warp shuffles); ``t`` itself when ``by`` is 0."""
    if by == 0:
        return t
    size: tl.constexpr = t.shape[AXIS]
    step = tl.arange(0, size)
    step = step[None, :, None] if AXIS == 1 else step[None, None, :]
    pick = tl.broadcast_to(tl.minimum(step + by, size - 1), t.shape)
    return tl.gather(t, pick, axis=AXIS)


@triton.jit
def _routed(grad_max, code, MAX_KERNEL: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """The max's backward on registers: element (a, b) of the result (of a tile starting
    ``MAX_KERNEL`` - 1 rows and columns after the windows') gathers the gradient of each
    window (a + K-1 - u, b + K-1 - v) whose code says it picked its element (u, v)."""
    acc = tl.zeros(grad_max.shape, ACC_DTYPE)
    for u in tl.static_range(MAX_KERNEL):
        row_part = tl.zeros(grad_max.shape, ACC_DTYPE)
        for v in tl.static_range(MAX_KERNEL):
            picked = tl.where(code == u * MAX_KERNEL + v, grad_max, 0.0)
            row_part += _shifted(picked, MAX_KERNEL - 1 - v, 2)
        acc += _shifted(row_part, MAX_KERNEL - 1 - u, 1)
    return acc


@triton.jit
def _max_blur_pool_bwd_kernel(
    g_ptr,
    codes_ptr,
    dx_ptr,
    taps_ptr,
    src_h_ptr,
    wt_h_ptr,
    src_w_ptr,
    wt_w_ptr,
    count_h_ptr,
    count_w_ptr,
    before,
    first_h,
    last_h,
    first_w,
    last_w,
    C,
    H,
    W,
    sg_n,
    sg_c,
    sg_h,
    sg_w,
    sk_n,
    sk_c,
    sk_h,
    sk_w,
    sd_n,
    sd_c,
    sd_h,
    sd_w,
    c_blocks,
    tiles_w,
    tiles,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    MAX_KERNEL: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
    ROWS: tl.constexpr,
    COLS: tl.constexpr,
):
    """One program: ``ROWS`` × ``COLS`` of the input gradient, fused (no temporary).

    The program first takes the max map's gradient over the ``BLOCK_H`` × ``BLOCK_W`` windows
    whose tops lie up to ``MAX_KERNEL`` - 1 rows and columns before its tile: blur-pool's
    transpose, a plain filter with each position's own taps inside the max map's plain
    interval along both axes (``common.interleaved_transposed_blur``: most spans of a large
    map), the per-axis gather tables elsewhere (``common.separable_gather``). It keeps each
    where the window's code names the element at (u, v) of it, and hands it on registers to
    that element: ``MAX_KERNEL``² selections and shifts by ``tl.gather`` per element, in
    place of a map-sized temporary written and read back.
    """
    plane, n, c, row0, col0 = tile_origin(tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C,
                                          ROWS, COLS)  # fmt: skip
    H_map = H - MAX_KERNEL + 1
    W_map = W - MAX_KERNEL + 1
    # The windows (max-map positions) this tile's elements lie in.
    tops = row0 - (MAX_KERNEL - 1) + tl.arange(0, BLOCK_H)[None, :, None]
    lefts = col0 - (MAX_KERNEL - 1) + tl.arange(0, BLOCK_W)[None, None, :]
    row_ok = (tops >= 0) & (tops < H_map)
    col_ok = (lefts >= 0) & (lefts < W_map)
    window_ok = (c < C) & row_ok & col_ok
    g_plane = plane_offsets(n, tl.minimum(c, C - 1), sg_n, sg_c, INDEX_64)
    code_at = codes_ptr + tile_offsets(n, c, tops, lefts, sk_n, sk_c, sk_h, sk_w, INDEX_64)
    inside = (plane % c_blocks + 1) * BLOCK_C <= C
    inside &= (row0 - (MAX_KERNEL - 1) >= first_h) & (row0 - MAX_KERNEL + BLOCK_H <= last_h)
    inside &= (col0 - (MAX_KERNEL - 1) >= first_w) & (col0 - MAX_KERNEL + BLOCK_W <= last_w)
    if inside:
        grad_max = interleaved_transposed_blur(g_ptr + g_plane, tops, lefts, before, sg_h, sg_w,
                                               taps_ptr, TAPS, STRIDE, ACC_DTYPE,
                                               INDEX_64)  # fmt: skip
        code = tl.load(code_at)
    else:
        grad_max = separable_gather(
            g_ptr, g_plane, tops, lefts, row_ok, col_ok, window_ok, sg_h, sg_w, src_h_ptr,
            wt_h_ptr, src_w_ptr, wt_w_ptr, H_map, W_map, tile_width(count_h_ptr, tops, row_ok),
            tile_width(count_w_ptr, lefts, col_ok), 0, 0, taps_ptr, TAPS, STRIDE, False,
            ACC_DTYPE, INDEX_64,
        )  # fmt: skip
        code = tl.load(code_at, mask=window_ok, other=255)
    acc = _routed(grad_max, code, MAX_KERNEL, ACC_DTYPE)
    store_leading(dx_ptr, acc, n, c, C, row0, col0, H, W, sd_n, sd_c, sd_h, sd_w, ROWS, COLS,
                  INDEX_64)  # fmt: skip


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

    The config's ``BLOCK_H``/``BLOCK_W`` are the span of the max map a program reads (at least
    the filter's size); its outputs are the ones that span covers. ``codes``
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
    launch = resolve_config("max_blur_pool_fwd", x, k, stride, config, max_kernel=max_kernel)
    span_h, span_w = (max(launch[f], pow2_bucket(k)) for f in ("BLOCK_H", "BLOCK_W"))
    rows, cols = ((span - k) // stride + 1 for span in (span_h, span_w))
    map_h, map_w = h - max_kernel + 1, w - max_kernel + 1
    return tiled_launch(
        _max_blur_pool_fwd_kernel,
        launch,
        y.shape,
        taps_tensor(taps, x.device, accumulator_torch_dtype(x)), c, map_h, map_w, y.shape[2],
        y.shape[3], pad_sizes(k, 0)[0], *x.stride(), *y.stride(), *stored.stride(),
        tile=(rows, cols),
        TAPS=k,
        STRIDE=stride,
        PADDING=PADDING_CODES[padding],
        FOLD_ONCE=folds_once((map_h, map_w), k - 1),
        MAX_KERNEL=max_kernel,
        SAVE_CODES=save_codes,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(x, y, stored),
        SPAN_H=span_h,
        SPAN_W=span_w,
        ROWS=rows,
        COLS=cols,
        BLOCK_H=pow2_bucket(rows),
        BLOCK_W=pow2_bucket(cols),
    )  # fmt: skip


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

    One fused pass (:func:`_max_blur_pool_bwd_kernel`): no temporary of the max map's size.
    The config's ``BLOCK_H``/``BLOCK_W`` are the span of max-map windows a program takes (at
    least ``max_kernel``); it writes the ``max_kernel`` - 1 fewer rows and columns of the
    input gradient whose windows all lie in that span.
    """
    dx = input_gradient_buffer(grad, codes, max_kernel, out)
    if dx.numel() == 0:
        return dx
    _backward_launch((grad, codes, dx), taps, stride, padding, max_kernel, config)
    return dx


@MemoisedLaunch
def _backward_launch(grad, codes, dx, taps, stride, padding, max_kernel, config):
    """The backward's :class:`Launch` for these tensors' layouts and these options."""
    _, c, h, w = dx.shape
    k = len(taps)
    map_h, map_w = codes.shape[2:]
    rows = gradient_tables(map_h, taps, stride, 0, padding, dx.device)
    cols = gradient_tables(map_w, taps, stride, 0, padding, dx.device)
    plain_h = plain_interval(map_h, k, stride, 0, padding)
    plain_w = plain_interval(map_w, k, stride, 0, padding)
    launch = resolve_config("max_blur_pool_bwd", dx, k, stride, config, max_kernel=max_kernel)
    span_h, span_w = (max(launch[f], pow2_bucket(max_kernel)) for f in ("BLOCK_H", "BLOCK_W"))
    tile = (span_h - max_kernel + 1, span_w - max_kernel + 1)
    return tiled_launch(
        _max_blur_pool_bwd_kernel,
        launch,
        dx.shape,
        taps_tensor(taps, dx.device, accumulator_torch_dtype(dx)), rows.src, rows.wt, cols.src,
        cols.wt, rows.count, cols.count, pad_sizes(k, 0)[0], *plain_h, *plain_w, c, h, w,
        *grad.stride(), *codes.stride(), *dx.stride(),
        tile=tile,
        TAPS=k,
        STRIDE=stride,
        MAX_KERNEL=max_kernel,
        ACC_DTYPE=accumulator_dtype(dx),
        INDEX_64=needs_int64(grad, codes, dx),
        BLOCK_H=span_h,
        BLOCK_W=span_w,
        ROWS=tile[0],
        COLS=tile[1],
    )  # fmt: skip


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
