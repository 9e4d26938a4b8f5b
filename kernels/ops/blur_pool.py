"""BlurPool and ConvBlurPool (ReLU fused on load): Triton kernels, launchers and the
``shiftlab::blur_pool2d`` custom op with its autograd and fake implementations.

Forward: each program computes one output tile, reading the input once (halo re-reads hit
cache) and writing the output once. Backward: each program computes one tile of the input
gradient by gathering the output-gradient elements whose taps reach it (no atomics).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels.ops.common import (
    accumulator_dtype,
    axis_tables,
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
def _blur_pool_fwd_kernel(
    x_ptr,
    y_ptr,
    src_h_ptr,
    wt_h_ptr,
    src_w_ptr,
    wt_w_ptr,
    C,
    H_out,
    W_out,
    taps,
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
    RELU: tl.constexpr,
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
    row_ok = rows < H_out
    col_ok = cols < W_out
    mask = (c < C) & row_ok & col_ok
    acc = separable_gather(
        x_ptr, plane_offsets(n, c, sx_n, sx_c, INDEX_64), rows, cols, row_ok, col_ok, mask,
        sx_h, sx_w, src_h_ptr, wt_h_ptr, src_w_ptr, wt_w_ptr, H_out, W_out, taps, taps,
        ACC_DTYPE, RELU, MAX_KERNEL, INDEX_64,
    )  # fmt: skip
    y_offs = tile_offsets(n, c, rows, cols, sy_n, sy_c, sy_h, sy_w, INDEX_64)
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _blur_pool_bwd_kernel(
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
    RELU: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    n, c, rows, cols = tile_coords(
        tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C, BLOCK_H, BLOCK_W
    )
    row_ok = rows < H
    col_ok = cols < W
    mask = (c < C) & row_ok & col_ok
    acc = separable_gather(
        g_ptr, plane_offsets(n, c, sg_n, sg_c, INDEX_64), rows, cols, row_ok, col_ok, mask,
        sg_h, sg_w, src_h_ptr, wt_h_ptr, src_w_ptr, wt_w_ptr, H, W,
        tile_width(count_h_ptr, rows, row_ok), tile_width(count_w_ptr, cols, col_ok),
        ACC_DTYPE, False, 1, INDEX_64,
    )  # fmt: skip
    if RELU:
        x_offs = tile_offsets(n, c, rows, cols, sx_n, sx_c, sx_h, sx_w, INDEX_64)
        x = tl.load(x_ptr + x_offs, mask=mask, other=0.0)
        acc = tl.where(x > 0, acc, 0.0)
    dx_offs = tile_offsets(n, c, rows, cols, sd_n, sd_c, sd_h, sd_w, INDEX_64)
    tl.store(dx_ptr + dx_offs, acc.to(dx_ptr.dtype.element_ty), mask=mask)


def blur_pool2d_forward(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
    *,
    max_kernel: int = 1,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the forward kernel (spec §2); ``config`` overrides the tuned launch config.

    With ``max_kernel > 1`` each value the blur reads is the max of the ``max_kernel``² window
    at that position (no padding, stride 1): MaxBlurPool's forward (spec §3), in one pass.
    """
    c, h, w = x.shape[1:]
    shape = pooled_shape(tuple(x.shape), stride, pad_off, max_kernel)
    y = output_buffer(out, x, shape)
    if y.numel() == 0:
        return y
    rows = axis_tables(h - max_kernel + 1, taps, stride, pad_off, padding, x.device)
    cols = axis_tables(w - max_kernel + 1, taps, stride, pad_off, padding, x.device)
    if max_kernel > 1:
        launch = resolve_config(
            "max_blur_pool_fwd", x, len(taps), stride, config, max_kernel=max_kernel
        )
    else:
        launch = resolve_config("blur_pool_fwd", x, len(taps), stride, config, relu=relu)
    launch_tiled(
        _blur_pool_fwd_kernel,
        launch,
        y,
        x, y, rows.fwd_src, rows.fwd_wt, cols.fwd_src, cols.fwd_wt,
        c, shape[2], shape[3], len(taps), *x.stride(), *y.stride(),
        RELU=relu,
        MAX_KERNEL=max_kernel,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(x, y),
    )  # fmt: skip
    return y


def blur_pool2d_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
    *,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the backward kernel: the gradient of :func:`blur_pool2d_forward` w.r.t. ``x``."""
    c, h, w = x.shape[1:]
    dx = output_buffer(out, x, tuple(x.shape))
    if dx.numel() == 0:
        return dx
    rows = axis_tables(h, taps, stride, pad_off, padding, x.device)
    cols = axis_tables(w, taps, stride, pad_off, padding, x.device)
    launch_tiled(
        _blur_pool_bwd_kernel,
        resolve_config("blur_pool_bwd", x, len(taps), stride, config, relu=relu),
        dx,
        grad, x, dx, rows.bwd_src, rows.bwd_wt, cols.bwd_src, cols.bwd_wt, rows.bwd_count,
        cols.bwd_count, c, h, w, *grad.stride(), *x.stride(), *dx.stride(),
        RELU=relu,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(grad, x, dx),
    )  # fmt: skip
    return dx


# ----------------------------------------------------------------------------- custom ops


@torch.library.custom_op("shiftlab::blur_pool2d", mutates_args=())
def blur_pool2d_op(
    x: torch.Tensor, taps: list[float], stride: int, padding: str, pad_off: int, relu: bool
) -> torch.Tensor:
    """Blur-pool (spec §2), ReLU applied first when ``relu``; differentiable, traceable."""
    return blur_pool2d_forward(x, tuple(taps), stride, padding, pad_off, relu)


@blur_pool2d_op.register_fake
def _blur_pool2d_fake(x, taps, stride, padding, pad_off, relu):
    return empty_output(x, pooled_shape(tuple(x.shape), stride, pad_off))


@torch.library.custom_op("shiftlab::blur_pool2d_backward", mutates_args=())
def blur_pool2d_backward_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    taps: list[float],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
) -> torch.Tensor:
    """Gradient of ``shiftlab::blur_pool2d`` with respect to its input."""
    return blur_pool2d_backward(grad, x, tuple(taps), stride, padding, pad_off, relu)


@blur_pool2d_backward_op.register_fake
def _blur_pool2d_backward_fake(grad, x, taps, stride, padding, pad_off, relu):
    return empty_output(x, tuple(x.shape))


def _setup_context(ctx, inputs, output):
    x, taps, stride, padding, pad_off, relu = inputs
    ctx.save_for_backward(x)
    ctx.params = (taps, stride, padding, pad_off, relu)


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    dx = torch.ops.shiftlab.blur_pool2d_backward(grad, x, *ctx.params)
    return dx, None, None, None, None, None


blur_pool2d_op.register_autograd(_backward, setup_context=_setup_context)


def blur_pool2d_triton(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
) -> torch.Tensor:
    """The Triton path of ``kernels.blur_pool2d``; arguments arrive validated."""
    return torch.ops.shiftlab.blur_pool2d(x, list(taps), stride, padding, pad_off, relu)
