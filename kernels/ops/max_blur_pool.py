"""MaxBlurPool (dense max at stride 1, then blur-pool): Triton kernels, launchers and the
``shiftlab::max_blur_pool2d`` custom op with its autograd and fake implementations.

Forward: each program loads a window of the dense max map once (each value the max of its
``max_kernel``² block, so the map never goes to memory) and filters it on registers.
Backward: saves only the input. Blur-pool's backward gives the gradient of the dense max map;
then each input element gathers it over the windows that contain it and pick it as their
maximum (first maximum in row-major order, NaN winning, as ``torch.max_pool2d``).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels.ops.blur_pool import blur_pool2d_backward
from kernels.ops.common import (
    PADDING_CODES,
    accumulator_dtype,
    accumulator_torch_dtype,
    element_offsets,
    empty_output,
    folds_once,
    launch_tiled,
    needs_int64,
    output_buffer,
    padded_source,
    plane_offsets,
    pooled_shape,
    resolve_config,
    taps_tensor,
    tile_coords,
    tile_offsets,
    tile_origin,
)
from kernels.tuning import pow2_bucket


@triton.jit
def _max_blur_pool_fwd_kernel(
    x_ptr,
    y_ptr,
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
    c_blocks,
    tiles_w,
    tiles,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    PADDING: tl.constexpr,
    FOLD_ONCE: tl.constexpr,
    MAX_KERNEL: tl.constexpr,
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
    once (the dense max map never goes to memory). The filter then runs separably on
    registers: the taps pick window columns, then rows, with ``tl.gather`` (warp shuffles), so
    a k-tap filter costs 2k gathers per output rather than k²·``MAX_KERNEL``² loads, as taking
    the max at every tap (blur-pool's kernel) would.
    """
    pid = tl.program_id(0)
    plane = pid // tiles
    tile = pid % tiles
    n = plane // c_blocks
    c = ((plane % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C))[:, None, None]
    row0 = (tile // tiles_w) * ROWS
    col0 = (tile % tiles_w) * COLS
    src_h, ok_h = padded_source(
        row0 * STRIDE - pad_before + tl.arange(0, SPAN_H), H_map, PADDING, FOLD_ONCE
    )
    src_w, ok_w = padded_source(
        col0 * STRIDE - pad_before + tl.arange(0, SPAN_W), W_map, PADDING, FOLD_ONCE
    )
    # A span can reach past the last padded position (its outputs there are masked off).
    ok_h &= (src_h >= 0) & (src_h < H_map)
    ok_w &= (src_w >= 0) & (src_w < W_map)
    mask = (c < C) & ok_h[None, :, None] & ok_w[None, None, :]
    at = x_ptr + element_offsets(
        plane_offsets(n, c, sx_n, sx_c, INDEX_64), src_h[None, :, None], src_w[None, None, :],
        sx_h, sx_w, INDEX_64,
    )  # fmt: skip
    window = tl.load(at, mask=mask, other=0.0)
    for u in tl.static_range(MAX_KERNEL):
        for v in tl.static_range(MAX_KERNEL):
            if u + v > 0:
                other = tl.load(at + (u * sx_h + v * sx_w), mask=mask, other=0.0)
                window = tl.maximum(window, other, propagate_nan=tl.PropagateNan.ALL)
    window = window.to(ACC_DTYPE)

    out_w = tl.arange(0, BLOCK_W)[None, None, :]
    across = tl.zeros((BLOCK_C, SPAN_H, BLOCK_W), ACC_DTYPE)
    for j in tl.static_range(TAPS):
        pick = tl.broadcast_to(tl.minimum(out_w * STRIDE + j, SPAN_W - 1), across.shape)
        across += tl.load(taps_ptr + j) * tl.gather(window, pick, axis=2)
    out_h = tl.arange(0, BLOCK_H)[None, :, None]
    acc = tl.zeros((BLOCK_C, BLOCK_H, BLOCK_W), ACC_DTYPE)
    for i in tl.static_range(TAPS):
        pick = tl.broadcast_to(tl.minimum(out_h * STRIDE + i, SPAN_H - 1), acc.shape)
        acc += tl.load(taps_ptr + i) * tl.gather(across, pick, axis=1)

    rows = row0 + out_h
    cols = col0 + out_w
    ok = (c < C) & (out_h < ROWS) & (rows < H_out) & (out_w < COLS) & (cols < W_out)
    y_offs = tile_offsets(n, c, rows, cols, sy_n, sy_c, sy_h, sy_w, INDEX_64)
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _neighbour(centre, rows, cols, mask, H, W, stride_h, stride_w, DH: tl.constexpr,
               DW: tl.constexpr, CHECKED: tl.constexpr):  # fmt: skip
    """``x`` at offset (``DH``, ``DW``) from each element (0 outside the map; unchecked, the
    caller vouches that it is inside). Every window reads its elements through this one
    expression, so repeated reads are the same load."""
    at = centre + (DH * stride_h + DW * stride_w)
    if CHECKED:
        r = rows + DH
        c = cols + DW
        value = tl.load(at, mask=mask & (r >= 0) & (r < H) & (c >= 0) & (c < W), other=0.0)
    else:
        value = tl.load(at)
    return value


@triton.jit
def _routed_gradient(centre, gm_ptr, g_plane, rows, cols, mask, H, W, sx_h, sx_w, sg_h, sg_w,
                     MAX_KERNEL: tl.constexpr, CHECKED: tl.constexpr, ACC_DTYPE: tl.constexpr,
                     INDEX_64: tl.constexpr):  # fmt: skip
    """The sum of the max-map gradient (``gm_ptr + g_plane``: each channel's map) over the
    windows that pick each element (at ``centre``) as their maximum: the last NaN if the
    window holds one, else its first maximum in row-major order, where ``torch.max_pool2d``'s
    scan ends. An element is picked when it beats each other element of the window by that
    rule, so it is compared with its (2·``MAX_KERNEL`` - 1)² neighbours, each read once.
    ``CHECKED``: elements near the edge or outside ``mask``; unchecked, every neighbour and
    window exists."""
    x = tl.load(centre, mask=mask, other=0.0) if CHECKED else tl.load(centre)
    x_nan = x != x
    acc = tl.zeros(mask.shape, ACC_DTYPE)
    # Window (top, left) = (rows - u, cols - v) holds this element at its position (u, v).
    for u in tl.static_range(MAX_KERNEL):
        for v in tl.static_range(MAX_KERNEL):
            top = rows - u
            left = cols - v
            picked = mask
            if CHECKED:
                picked &= (top >= 0) & (top <= H - MAX_KERNEL)
                picked &= (left >= 0) & (left <= W - MAX_KERNEL)
            for a in tl.static_range(MAX_KERNEL):
                for b in tl.static_range(MAX_KERNEL):
                    if a * MAX_KERNEL + b < u * MAX_KERNEL + v:  # scanned before this element
                        other = _neighbour(centre, rows, cols, mask, H, W, sx_h, sx_w, a - u,
                                           b - v, CHECKED)  # fmt: skip
                        picked &= x_nan | (x > other)
                    elif a * MAX_KERNEL + b > u * MAX_KERNEL + v:  # scanned after it
                        other = _neighbour(centre, rows, cols, mask, H, W, sx_h, sx_w, a - u,
                                           b - v, CHECKED)  # fmt: skip
                        picked &= tl.where(x_nan, other == other, x >= other)
            at = gm_ptr + element_offsets(g_plane, top, left, sg_h, sg_w, INDEX_64)
            acc += tl.load(at, mask=picked, other=0.0).to(ACC_DTYPE)
    return acc


@triton.jit
def _max_pool_route_kernel(
    gm_ptr,
    x_ptr,
    dx_ptr,
    C,
    H,
    W,
    sg_n,
    sg_c,
    sg_h,
    sg_w,
    sx_n,
    sx_c,
    sx_h,
    sx_w,
    sd_n,
    sd_c,
    sd_h,
    sd_w,
    c_blocks,
    tiles_w,
    tiles,
    MAX_KERNEL: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """The dense max's backward: each input element gathers the max-map gradient ``gm`` of
    every window that picks it as its maximum (:func:`_routed_gradient`). Tiles whose
    elements all have every neighbour and window inside the map read without masks."""
    pid = tl.program_id(0)
    n, c, rows, cols = tile_coords(pid, c_blocks, tiles_w, tiles, BLOCK_C, BLOCK_H, BLOCK_W)
    plane, row0, col0 = tile_origin(pid, tiles, tiles_w, BLOCK_H, BLOCK_W)
    mask = (c < C) & (rows < H) & (cols < W)
    centre = x_ptr + tile_offsets(n, c, rows, cols, sx_n, sx_c, sx_h, sx_w, INDEX_64)
    g_plane = plane_offsets(n, c, sg_n, sg_c, INDEX_64)
    inside = (plane % c_blocks + 1) * BLOCK_C <= C
    inside &= (row0 >= MAX_KERNEL - 1) & (row0 + BLOCK_H <= H - MAX_KERNEL + 1)
    inside &= (col0 >= MAX_KERNEL - 1) & (col0 + BLOCK_W <= W - MAX_KERNEL + 1)
    if inside:
        acc = _routed_gradient(centre, gm_ptr, g_plane, rows, cols, mask, H, W, sx_h, sx_w,
                               sg_h, sg_w, MAX_KERNEL, False, ACC_DTYPE, INDEX_64)  # fmt: skip
    else:
        acc = _routed_gradient(centre, gm_ptr, g_plane, rows, cols, mask, H, W, sx_h, sx_w,
                               sg_h, sg_w, MAX_KERNEL, True, ACC_DTYPE, INDEX_64)  # fmt: skip
    dx_offs = tile_offsets(n, c, rows, cols, sd_n, sd_c, sd_h, sd_w, INDEX_64)
    tl.store(dx_ptr + dx_offs, acc.to(dx_ptr.dtype.element_ty), mask=mask)


def max_blur_pool2d_forward(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
    *,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the forward kernel (spec §3); ``config`` overrides the tuned launch config.

    The config's ``BLOCK_H``/``BLOCK_W`` are the span of the max map a program reads (at least
    the filter's size); its outputs are the ones that span covers.
    """
    c, h, w = x.shape[1:]
    shape = pooled_shape(tuple(x.shape), stride, 0, max_kernel)
    y = output_buffer(out, x, shape)
    if y.numel() == 0:
        return y
    k = len(taps)
    launch = resolve_config("max_blur_pool_fwd", x, k, stride, config, max_kernel=max_kernel)
    span_h, span_w = (max(launch[f], pow2_bucket(k)) for f in ("BLOCK_H", "BLOCK_W"))
    rows, cols = ((span - k) // stride + 1 for span in (span_h, span_w))
    map_h, map_w = h - max_kernel + 1, w - max_kernel + 1
    launch_tiled(
        _max_blur_pool_fwd_kernel,
        launch,
        y,
        x, y, taps_tensor(taps, x.device, accumulator_torch_dtype(x)),
        c, map_h, map_w, shape[2], shape[3], (k - 1) // 2, *x.stride(), *y.stride(),
        tile=(rows, cols),
        TAPS=k,
        STRIDE=stride,
        PADDING=PADDING_CODES[padding],
        FOLD_ONCE=folds_once((map_h, map_w), k - 1),
        MAX_KERNEL=max_kernel,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(x, y),
        SPAN_H=span_h,
        SPAN_W=span_w,
        ROWS=rows,
        COLS=cols,
        BLOCK_H=pow2_bucket(rows),
        BLOCK_W=pow2_bucket(cols),
    )  # fmt: skip
    return y


def max_blur_pool2d_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
    *,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the backward: the gradient of :func:`max_blur_pool2d_forward` w.r.t. ``x``.

    Two passes: blur-pool's backward gives the gradient of the dense max map (a temporary of
    about ``x``'s size, in ``x``'s dtype, as the unfused ops would store it); the routing kernel
    then hands each window's gradient to its maximum. Recomputing that map's gradient inside
    the routing kernel would repeat it for each of the ``max_kernel``² windows an element
    lies in.
    """
    n, c, h, w = x.shape
    dx = output_buffer(out, x, tuple(x.shape))
    if dx.numel() == 0:
        return dx
    grad_max = empty_output(x, (n, c, h - max_kernel + 1, w - max_kernel + 1))
    # Without the ReLU the blur backward reads only its ``x`` argument's shape and layout,
    # so the buffer it fills can stand for it.
    blur_pool2d_backward(grad, grad_max, taps, stride, padding, 0, False, config=config,
                         out=grad_max)  # fmt: skip
    launch_tiled(
        _max_pool_route_kernel,
        resolve_config("max_blur_pool_bwd", x, len(taps), stride, config, max_kernel=max_kernel),
        dx,
        grad_max, x, dx, c, h, w, *grad_max.stride(), *x.stride(), *dx.stride(),
        MAX_KERNEL=max_kernel,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(grad_max, x, dx),
    )  # fmt: skip
    return dx


# ----------------------------------------------------------------------------- custom ops


@torch.library.custom_op("shiftlab::max_blur_pool2d", mutates_args=())
def max_blur_pool2d_op(
    x: torch.Tensor, taps: list[float], stride: int, padding: str, max_kernel: int
) -> torch.Tensor:
    """MaxBlurPool (spec §3); differentiable, traceable."""
    return max_blur_pool2d_forward(x, tuple(taps), stride, padding, max_kernel)


@max_blur_pool2d_op.register_fake
def _max_blur_pool2d_fake(x, taps, stride, padding, max_kernel):
    return empty_output(x, pooled_shape(tuple(x.shape), stride, 0, max_kernel))


@torch.library.custom_op("shiftlab::max_blur_pool2d_backward", mutates_args=())
def max_blur_pool2d_backward_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    taps: list[float],
    stride: int,
    padding: str,
    max_kernel: int,
) -> torch.Tensor:
    """Gradient of ``shiftlab::max_blur_pool2d`` with respect to its input."""
    return max_blur_pool2d_backward(grad, x, tuple(taps), stride, padding, max_kernel)


@max_blur_pool2d_backward_op.register_fake
def _max_blur_pool2d_backward_fake(grad, x, taps, stride, padding, max_kernel):
    return empty_output(x, tuple(x.shape))


def _setup_context(ctx, inputs, output):
    x, taps, stride, padding, max_kernel = inputs
    ctx.save_for_backward(x)
    ctx.params = (taps, stride, padding, max_kernel)


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    dx = torch.ops.shiftlab.max_blur_pool2d_backward(grad, x, *ctx.params)
    return dx, None, None, None, None


max_blur_pool2d_op.register_autograd(_backward, setup_context=_setup_context)


def max_blur_pool2d_triton(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
) -> torch.Tensor:
    """The Triton path of ``kernels.max_blur_pool2d``; arguments arrive validated."""
    return torch.ops.shiftlab.max_blur_pool2d(x, list(taps), stride, padding, max_kernel)
