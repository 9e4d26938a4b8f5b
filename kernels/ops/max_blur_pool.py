"""MaxBlurPool (dense max at stride 1, then blur-pool): Triton kernels, launchers and the
``shiftlab::max_blur_pool2d`` custom op with its autograd and fake implementations.

Forward: blur-pool's kernel (``kernels.ops.blur_pool``) with the max of each ``max_kernel``²
window taken on the fly at every tap the blur reads, so the dense max map never goes to memory.
Backward: saves only the input. Blur-pool's backward gives the gradient of the dense max map;
then each input element gathers it over the windows that contain it and pick it as their
maximum (first maximum in row-major order, NaN winning, as ``torch.max_pool2d``).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kernels.ops.blur_pool import blur_pool2d_backward, blur_pool2d_forward
from kernels.ops.common import (
    accumulator_dtype,
    element_offsets,
    empty_output,
    launch_tiled,
    needs_int64,
    output_buffer,
    plane_offsets,
    pooled_shape,
    resolve_config,
    tile_coords,
    tile_offsets,
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
    every window that contains it and picks it as its maximum."""
    n, c, rows, cols = tile_coords(
        tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C, BLOCK_H, BLOCK_W
    )
    mask = (c < C) & (rows < H) & (cols < W)
    x_plane = plane_offsets(n, c, sx_n, sx_c, INDEX_64)
    g_plane = plane_offsets(n, c, sg_n, sg_c, INDEX_64)
    max_h = H - MAX_KERNEL + 1  # size of the dense max map
    max_w = W - MAX_KERNEL + 1
    acc = tl.zeros(mask.shape, ACC_DTYPE)
    # Window (top, left) = (rows - u, cols - v) holds this element at its position (u, v).
    for u in tl.static_range(MAX_KERNEL):
        for v in tl.static_range(MAX_KERNEL):
            top = rows - u
            left = cols - v
            window = mask & (top >= 0) & (top < max_h) & (left >= 0) & (left < max_w)
            argmax = _window_argmax(x_ptr, x_plane, top, left, window, sx_h, sx_w, MAX_KERNEL,
                                    INDEX_64)  # fmt: skip
            at = element_offsets(g_plane, top, left, sg_h, sg_w, INDEX_64)
            picked = window & (argmax == u * MAX_KERNEL + v)
            acc += tl.load(gm_ptr + at, mask=picked, other=0.0).to(ACC_DTYPE)
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
