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
    PADDING_CODES,
    accumulator_dtype,
    accumulator_torch_dtype,
    element_offsets,
    empty_output,
    gradient_tables,
    launch_tiled,
    needs_int64,
    output_buffer,
    padded_source,
    plane_offsets,
    pooled_shape,
    resolve_config,
    separable_gather,
    taps_tensor,
    tile_coords,
    tile_offsets,
    tile_width,
)
from kernels.tuning import pow2_bucket


@triton.jit
def _blur_pool_fwd_kernel(
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
    RELU: tl.constexpr,
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
    """One program: ``BLOCK_C`` channels × a ``SPAN_H`` × ``SPAN_W`` window of the padded map,
    read once, giving the ``ROWS`` × ``COLS`` outputs that window covers.

    Each element of the window is loaded once (for MaxBlurPool: the max of its
    ``MAX_KERNEL``² window, so the dense max map never goes to memory). The filter then runs
    separably on registers: the taps pick window columns, then rows, with ``tl.gather`` (a
    register or shared-memory shuffle), so a k-tap filter costs 2k gathers per output rather
    than k² loads.
    """
    pid = tl.program_id(0)
    plane = pid // tiles
    tile = pid % tiles
    n = plane // c_blocks
    c = ((plane % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C))[:, None, None]
    row0 = (tile // tiles_w) * ROWS
    col0 = (tile % tiles_w) * COLS
    src_h, ok_h = padded_source(
        row0 * STRIDE - pad_before + tl.arange(0, SPAN_H), H_map, PADDING
    )
    src_w, ok_w = padded_source(
        col0 * STRIDE - pad_before + tl.arange(0, SPAN_W), W_map, PADDING
    )
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
    if RELU:
        window = tl.maximum(window, 0.0, propagate_nan=tl.PropagateNan.ALL)

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
        ACC_DTYPE, INDEX_64,
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
    The config's ``BLOCK_H``/``BLOCK_W`` are the window a program reads (its input span), at
    least the filter's size.
    """
    c, h, w = x.shape[1:]
    shape = pooled_shape(tuple(x.shape), stride, pad_off, max_kernel)
    y = output_buffer(out, x, shape)
    if y.numel() == 0:
        return y
    k = len(taps)
    if max_kernel > 1:
        launch = resolve_config("max_blur_pool_fwd", x, k, stride, config, max_kernel=max_kernel)
    else:
        launch = resolve_config("blur_pool_fwd", x, k, stride, config, relu=relu)
    span_h, span_w = (max(launch[f], pow2_bucket(k)) for f in ("BLOCK_H", "BLOCK_W"))
    rows, cols = ((span - k) // stride + 1 for span in (span_h, span_w))
    c_blocks = triton.cdiv(c, launch["BLOCK_C"])
    tiles_w = triton.cdiv(shape[3], cols)
    tiles = triton.cdiv(shape[2], rows) * tiles_w
    _blur_pool_fwd_kernel[(shape[0] * c_blocks * tiles,)](
        x, y, taps_tensor(taps, x.device, accumulator_torch_dtype(x)),
        c, h - max_kernel + 1, w - max_kernel + 1, shape[2], shape[3], (k - 1) // 2 + pad_off,
        *x.stride(), *y.stride(), c_blocks, tiles_w, tiles,
        TAPS=k,
        STRIDE=stride,
        PADDING=PADDING_CODES[padding],
        RELU=relu,
        MAX_KERNEL=max_kernel,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(x, y),
        BLOCK_C=launch["BLOCK_C"],
        SPAN_H=span_h,
        SPAN_W=span_w,
        ROWS=rows,
        COLS=cols,
        BLOCK_H=pow2_bucket(rows),
        BLOCK_W=pow2_bucket(cols),
        num_warps=launch["num_warps"],
        num_stages=launch["num_stages"],
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
    rows = gradient_tables(h, taps, stride, pad_off, padding, x.device)
    cols = gradient_tables(w, taps, stride, pad_off, padding, x.device)
    launch_tiled(
        _blur_pool_bwd_kernel,
        resolve_config("blur_pool_bwd", x, len(taps), stride, config, relu=relu),
        dx,
        grad, x, dx, rows.src, rows.wt, cols.src, cols.wt, rows.count,
        cols.count, c, h, w, *grad.stride(), *x.stride(), *dx.stride(),
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
