"""MaxBlurPool (dense max at stride 1, then blur-pool): Triton kernels, launchers and the
``shiftlab::max_blur_pool2d`` custom op with its autograd and fake implementations.

Forward: blur-pool's kernel (``kernels.ops.blur_pool``) with the max of each ``max_kernel``²
window taken on the fly at every tap the blur reads, so the dense max map never goes to memory.
Backward: saves only the input; each input element gathers, over the windows that contain it
and pick it as their maximum (first maximum in row-major order, NaN winning, as
``torch.max_pool2d``), the blur-pool gradient of that window's max.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels.ops.blur_pool import blur_pool2d_forward
from kernels.ops.common import (
    accumulator_dtype,
    axis_tables,
    element_offsets,
    empty_output,
    launch_tiled,
    needs_int64,
    output_buffer,
    plane_offsets,
    pooled_shape,
    resolve_config,
    separable_gather,
    tile_coords,
    tile_offsets,
    tile_width,
)


@triton.jit
def _window_argmax(x_ptr, plane, top, left, mask, stride_h, stride_w, MAX_KERNEL: tl.constexpr,
                   INDEX_64: tl.constexpr):  # fmt: skip
    """Row-major position of the max of each window at (top, left): the first maximum, or the
    last NaN if any (the scan ``torch.max_pool2d`` does)."""
    offs = element_offsets(plane, top, left, stride_h, stride_w, INDEX_64)
    best = tl.load(x_ptr + offs, mask=mask, other=0.0)
    best_at = tl.zeros(best.shape, tl.int32)
    for u in tl.static_range(MAX_KERNEL):
        for v in tl.static_range(MAX_KERNEL):
            if u + v > 0:
                value = tl.load(x_ptr + offs + u * stride_h + v * stride_w, mask=mask, other=0.0)
                take = (value > best) | (value != value)
                best = tl.where(take, value, best)
                best_at = tl.where(take, u * MAX_KERNEL + v, best_at)
    return best_at


@triton.jit
def _max_blur_pool_bwd_kernel(
    g_ptr,
    x_ptr,
    dx_ptr,
    src_h_ptr,
    wt_h_ptr,
    src_w_ptr,
    wt_w_ptr,
    count_h_ptr,
    count_w_ptr,
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
    n, c, rows, cols = tile_coords(
        tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C, BLOCK_H, BLOCK_W
    )
    mask = (c < C) & (rows < H) & (cols < W)
    x_plane = plane_offsets(n, c, sx_n, sx_c, INDEX_64)
    g_plane = plane_offsets(n, c, sg_n, sg_c, INDEX_64)
    max_h = H - MAX_KERNEL + 1  # size of the dense max map (the blur's input)
    max_w = W - MAX_KERNEL + 1
    acc = tl.zeros(mask.shape, ACC_DTYPE)
    # Window (top, left) = (rows - u, cols - v) holds this element at its position (u, v).
    for u in tl.static_range(MAX_KERNEL):
        for v in tl.static_range(MAX_KERNEL):
            top = rows - u
            left = cols - v
            top_ok = (top >= 0) & (top < max_h)
            left_ok = (left >= 0) & (left < max_w)
            window = mask & top_ok & left_ok
            argmax = _window_argmax(x_ptr, x_plane, top, left, window, sx_h, sx_w, MAX_KERNEL,
                                    INDEX_64)  # fmt: skip
            acc += separable_gather(
                g_ptr, g_plane, top, left, top_ok, left_ok,
                window & (argmax == u * MAX_KERNEL + v),
                sg_h, sg_w, src_h_ptr, wt_h_ptr, src_w_ptr, wt_w_ptr,
                max_h, max_w, tile_width(count_h_ptr, top, top_ok),
                tile_width(count_w_ptr, left, left_ok), ACC_DTYPE, False, 1, INDEX_64,
            )  # fmt: skip
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
    """Launch the forward kernel (spec §3): blur-pool's, with each window's max taken on load."""
    return blur_pool2d_forward(
        x, taps, stride, padding, 0, False, max_kernel=max_kernel, config=config, out=out
    )


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
    """Launch the backward kernel: the gradient of :func:`max_blur_pool2d_forward` w.r.t. ``x``."""
    c, h, w = x.shape[1:]
    dx = output_buffer(out, x, tuple(x.shape))
    if dx.numel() == 0:
        return dx
    rows = axis_tables(h - max_kernel + 1, taps, stride, 0, padding, x.device)
    cols = axis_tables(w - max_kernel + 1, taps, stride, 0, padding, x.device)
    launch_tiled(
        _max_blur_pool_bwd_kernel,
        resolve_config("max_blur_pool_bwd", x, len(taps), stride, config, max_kernel=max_kernel),
        dx,
        grad, x, dx, rows.bwd_src, rows.bwd_wt, cols.bwd_src, cols.bwd_wt, rows.bwd_count,
        cols.bwd_count, c, h, w, *grad.stride(), *x.stride(), *dx.stride(),
        MAX_KERNEL=max_kernel,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(grad, x, dx),
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
