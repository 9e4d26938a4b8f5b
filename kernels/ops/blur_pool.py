"""BlurPool and ConvBlurPool (ReLU fused on load): Triton kernels, launchers and the
``shiftlab::blur_pool2d`` custom op with its autograd and fake implementations.

Forward: each program computes one output tile, reading the input once (halo re-reads hit
cache) and writing the output once. Backward: each program streams down a tile of the input
gradient row by row, from the output-gradient rows whose taps reach it, each loaded once
(``streamed_backward``, shared with MaxBlurPool; no atomics).
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
    tile_offsets,
    tile_origin,
    tiled_launch,
    traced,
)
from kernels.ops.streamed_backward import backward_launch
from kernels.padding import pad_sizes
from kernels.tuning import pow2_bucket


@triton.jit
def _blur_pool_fwd_kernel(
    x_ptr,
    y_ptr,
    m_ptr,
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
    sm_n,
    sm_c,
    sm_h,
    sm_w,
    c_blocks,
    tiles_w,
    tiles,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    PADDING: tl.constexpr,
    FOLD_ONCE: tl.constexpr,
    RELU: tl.constexpr,
    SAVE_MASK: tl.constexpr,
    MASK_W: tl.constexpr,
    PACK_C: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """One program: one ``BLOCK_C`` × ``BLOCK_H`` × ``BLOCK_W`` tile of the output.

    The taps are unrolled (``TAPS`` is a constexpr). Each input element is read by about
    ``TAPS²/STRIDE²`` taps: the re-reads hit L1, and for the usual filters this costs fewer
    instructions than loading a window once and shuffling it (MaxBlurPool's kernel, where
    each read would be ``max_kernel``² loads). Tiles whose taps all read inside the map (most
    tiles of a large map) take :func:`_blurred_tile`'s plain path: every tap is a load at a
    fixed offset from the tile's corner and an FMA, with no padding arithmetic and no mask.
    Tiles inside it along W only skip the column arithmetic, the costly one in NCHW (each
    thread holds several columns); the padding along W costs little in channels_last.

    ``SAVE_MASK`` (with ``RELU``): the program also writes ``x > 0``, one bit per input
    element, for the ``STRIDE`` × ``STRIDE`` blocks of the input its outputs start at (these
    blocks cover the input once), so that the backward keeps 1/16 of a bf16 ``x``
    (:func:`relu_mask_buffer` says how the bits are packed).
    """
    plane, n, c, row0, col0 = tile_origin(tl.program_id(0), c_blocks, tiles_w, tiles, BLOCK_C,
                                          BLOCK_H, BLOCK_W)  # fmt: skip
    rows = row0 + tl.arange(0, BLOCK_H)[None, :, None]
    cols = col0 + tl.arange(0, BLOCK_W)[None, None, :]
    maps = x_ptr + plane_offsets(n, c, sx_n, sx_c, INDEX_64)
    y_offs = tile_offsets(n, c, rows, cols, sy_n, sy_c, sy_h, sy_w, INDEX_64)
    mask = (c < C) & (rows < H_out) & (cols < W_out)
    # Whether the tile's taps read inside the map along each axis (and all its channels exist).
    inside_h = (row0 * STRIDE >= pad_before) & (
        (row0 + BLOCK_H - 1) * STRIDE - pad_before + TAPS <= H_map
    )
    inside_w = (col0 * STRIDE >= pad_before) & (
        (col0 + BLOCK_W - 1) * STRIDE - pad_before + TAPS <= W_map
    )
    if inside_h & inside_w & ((plane % c_blocks + 1) * BLOCK_C <= C):
        acc = _blurred_tile(maps, rows, cols, mask, H_map, W_map, pad_before, sx_h, sx_w,
                            taps_ptr, TAPS, STRIDE, PADDING, FOLD_ONCE, RELU, False, False,
                            ACC_DTYPE, INDEX_64)  # fmt: skip
        tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty))
    else:
        if inside_w:
            acc = _blurred_tile(maps, rows, cols, mask, H_map, W_map, pad_before, sx_h, sx_w,
                                taps_ptr, TAPS, STRIDE, PADDING, FOLD_ONCE, RELU, True, False,
                                ACC_DTYPE, INDEX_64)  # fmt: skip
        else:
            acc = _blurred_tile(maps, rows, cols, mask, H_map, W_map, pad_before, sx_h, sx_w,
                                taps_ptr, TAPS, STRIDE, PADDING, FOLD_ONCE, RELU, True, True,
                                ACC_DTYPE, INDEX_64)  # fmt: skip
        tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=mask)
    if SAVE_MASK:
        c0 = plane % c_blocks * BLOCK_C
        # Whether the input elements this tile's outputs start at all lie inside the map.
        if ((row0 + BLOCK_H) * STRIDE <= H_map) & ((col0 + BLOCK_W) * STRIDE <= W_map) & (
            c0 + BLOCK_C <= C
        ):
            _store_relu_mask(maps, m_ptr, n, c, c0, rows, col0, C, H_map, W_map, sx_h, sx_w,
                             sm_n, sm_c, sm_h, sm_w, STRIDE, BLOCK_C, BLOCK_H, BLOCK_W, MASK_W,
                             PACK_C, False, INDEX_64)  # fmt: skip
        else:
            _store_relu_mask(maps, m_ptr, n, c, c0, rows, col0, C, H_map, W_map, sx_h, sx_w,
                             sm_n, sm_c, sm_h, sm_w, STRIDE, BLOCK_C, BLOCK_H, BLOCK_W, MASK_W,
                             PACK_C, True, INDEX_64)  # fmt: skip


@triton.jit
def _store_relu_mask(maps, m_ptr, n, c, c0, rows, col0, C, H, W, sx_h, sx_w, sm_n, sm_c, sm_h,
                     sm_w, STRIDE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                     BLOCK_W: tl.constexpr, MASK_W: tl.constexpr, PACK_C: tl.constexpr,
                     CHECKED: tl.constexpr, INDEX_64: tl.constexpr):  # fmt: skip
    """Write ``x > 0`` for the input elements the tile's outputs start at (rows from
    ``rows``·STRIDE, ``STRIDE`` each; ``STRIDE``·``BLOCK_W`` columns from ``col0``·STRIDE, read
    as one contiguous run of ``MASK_W``, the next power of two), eight bits to a byte along
    the channels (``PACK_C``) or the columns. The program's channel block (``PACK_C``) or run
    holds whole bytes. Unless ``CHECKED``, all of the elements lie inside the map and every
    channel exists. It is the ReLU's gradient mask: 0 where ``x`` is NaN, as ``torch.relu``'s.
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
        bits = (value > 0).to(tl.int32)
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


@triton.jit
def _blurred_tile(maps, rows, cols, mask, H_map, W_map, pad_before, sx_h, sx_w, taps_ptr,
                  TAPS: tl.constexpr, STRIDE: tl.constexpr, PADDING: tl.constexpr,
                  FOLD_ONCE: tl.constexpr, RELU: tl.constexpr, CHECK_H: tl.constexpr,
                  CHECK_W: tl.constexpr, ACC_DTYPE: tl.constexpr,
                  INDEX_64: tl.constexpr):  # fmt: skip
    """``Σ_ij w_i·w_j·x[rows·STRIDE - pad_before + i, cols·STRIDE - pad_before + j]`` over
    the padded maps starting at ``maps`` ([BC,1,1]), ReLU on load when ``RELU``.

    ``CHECK_H``/``CHECK_W``: along that axis each tap's source goes through the padding
    (:func:`padded_source`). Along an unchecked axis every tap reads inside the map, at a
    fixed offset from the tile's first row or column. Reads are masked by ``mask`` unless
    both axes are unchecked (``mask`` then only gives the shape).
    """
    top = rows * STRIDE - pad_before
    left = cols * STRIDE - pad_before
    base = maps
    if not CHECK_H:
        base += as_index(top, INDEX_64) * sx_h
    if not CHECK_W:
        base += as_index(left, INDEX_64) * sx_w
    acc = tl.zeros(mask.shape, ACC_DTYPE)
    for i in tl.static_range(TAPS):
        row_ok = mask
        if CHECK_H:
            src_h, ok_h = padded_source(top + i, H_map, PADDING, FOLD_ONCE)
            row = base + as_index(src_h, INDEX_64) * sx_h
            row_ok &= ok_h
        else:
            row = base + i * sx_h
        row_sum = tl.zeros(mask.shape, ACC_DTYPE)
        for j in tl.static_range(TAPS):
            if CHECK_W:
                src_w, ok_w = padded_source(left + j, W_map, PADDING, FOLD_ONCE)
                at = row + as_index(src_w, INDEX_64) * sx_w
                value = tl.load(at, mask=row_ok & ok_w, other=0.0)
            elif CHECK_H:
                value = tl.load(row + j * sx_w, mask=row_ok, other=0.0)
            else:
                value = tl.load(row + j * sx_w)
            value = value.to(ACC_DTYPE)
            if RELU:
                value = tl.maximum(value, 0.0, propagate_nan=tl.PropagateNan.ALL)
            row_sum += tl.load(taps_ptr + j) * value
        acc += tl.load(taps_ptr + i) * row_sum
    return acc


def relu_mask_buffer(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised uint8 tensor for the forward's ReLU mask: one bit per element of
    ``x``, eight to a byte along its contiguous axis: the channels when ``x`` is
    channels_last (N, ⌈C/8⌉, H, W, channels_last; bit ``c % 8`` of byte ``c // 8``), else
    the columns (N, C, H, ⌈W/8⌉; bit ``w % 8`` of byte ``w // 8``)."""
    n, c, h, w = x.shape
    if keeps_channels_last(x):
        return empty_output(x, (n, (c + 7) // 8, h, w), torch.uint8)
    return torch.empty((n, c, h, (w + 7) // 8), dtype=torch.uint8, device=x.device)


def _owning_whole_bytes(launch: dict[str, int], pack_c: bool) -> dict[str, int]:
    """``launch`` with a channel block (``pack_c``) or a tile width of at least 8, so that
    each program writes whole bytes of the mask: eight channels, or ``8·stride`` columns."""
    field = "BLOCK_C" if pack_c else "BLOCK_W"
    return {**launch, field: max(launch[field], 8)}


def blur_pool2d_forward(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
    *,
    mask: torch.Tensor | None = None,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the forward kernel (spec §2); ``config`` overrides the tuned launch config.

    With ``relu``, a ``mask`` (:func:`relu_mask_buffer`) receives ``x > 0``: what the
    backward needs of ``x``, in 1/16 of the bytes of a bf16 ``x``.
    """
    if mask is not None and not relu:
        raise ValueError("mask: only the fused ReLU saves one; pass relu=True or no mask")
    y = output_buffer(out, x, pooled_shape(tuple(x.shape), stride, pad_off))
    if y.numel() == 0:
        return y
    stored = y if mask is None else mask  # never written when no mask is saved
    _forward_launch((x, y, stored), taps, stride, padding, pad_off, relu, mask is not None,
                    config)  # fmt: skip
    return y


@MemoisedLaunch
def _forward_launch(x, y, stored, taps, stride, padding, pad_off, relu, save_mask, config):
    """The forward's :class:`Launch` for these tensors' layouts and these options."""
    c, h, w = x.shape[1:]
    k = len(taps)
    pack_c = keeps_channels_last(x)
    launch = resolve_config("blur_pool_fwd", x, k, stride, config, relu=relu)
    if save_mask:
        launch = _owning_whole_bytes(launch, pack_c)
    return tiled_launch(
        _blur_pool_fwd_kernel,
        launch,
        y.shape,
        taps_tensor(taps, x.device, accumulator_torch_dtype(x)), c, h, w, y.shape[2],
        y.shape[3], pad_sizes(k, pad_off)[0], *x.stride(), *y.stride(), *stored.stride(),
        TAPS=k,
        STRIDE=stride,
        PADDING=PADDING_CODES[padding],
        FOLD_ONCE=folds_once((h, w), k - 1 + pad_off),
        RELU=relu,
        SAVE_MASK=save_mask,
        MASK_W=pow2_bucket(stride * launch["BLOCK_W"]),
        PACK_C=pack_c,
        ACC_DTYPE=accumulator_dtype(x),
        INDEX_64=needs_int64(x, y, stored),
    )  # fmt: skip


def blur_pool2d_backward(
    grad: torch.Tensor,
    size: tuple[int, int],
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    *,
    mask: torch.Tensor | None = None,
    channels_last: bool = False,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the backward kernel: the gradient of :func:`blur_pool2d_forward` w.r.t. ``x``.

    Blur-pool is linear, so all it needs of the input is its ``size`` (H, W) and layout
    (``channels_last``); after the fused ReLU, also the forward's ``mask``.
    """
    dx = gradient_buffer(grad, (*grad.shape[:2], *size), channels_last, out)
    if dx.numel() == 0:
        return dx
    read = dx if mask is None else mask  # never read without the ReLU
    _backward_launch((grad, grad, read, dx), taps, stride, padding, pad_off, mask is not None,
                     channels_last, config)  # fmt: skip
    return dx


@MemoisedLaunch
def _backward_launch(grad, unread, mask, dx, taps, stride, padding, pad_off, relu, channels_last,
                     config):  # fmt: skip
    """The backward's :class:`Launch` for these tensors' layouts and these options (the
    kernel's codes are ``unread``)."""
    return backward_launch("blur_pool_bwd", grad, unread, mask, dx, taps, stride, padding,
                           pad_off, 1, relu, channels_last, config)  # fmt: skip


# ----------------------------------------------------------------------------- custom ops


def _pooled(
    x: torch.Tensor,
    taps: list[float],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
    save_mask: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blur-pool (spec §2), ReLU applied first when ``relu``, and with ``save_mask`` the
    ReLU mask its backward needs (else an empty uint8 tensor); differentiable, traceable."""
    mask = _mask_output(x, relu, save_mask)
    y = blur_pool2d_forward(x, tuple(taps), stride, padding, pad_off, relu,
                            mask=mask if save_mask else None)  # fmt: skip
    return y, mask


blur_pool2d_op = torch.library.custom_op("shiftlab::blur_pool2d", _pooled, mutates_args=())


def _mask_output(x: torch.Tensor, relu: bool, save_mask: bool) -> torch.Tensor:
    """The op's mask output: a buffer for it, or an empty tensor when none is saved."""
    if save_mask and not relu:
        raise ValueError("save_mask=True: only the fused ReLU saves a mask; pass relu=True")
    return relu_mask_buffer(x) if save_mask else x.new_empty(0, dtype=torch.uint8)


@blur_pool2d_op.register_fake
def _blur_pool2d_fake(x, taps, stride, padding, pad_off, relu, save_mask):
    y = empty_output(x, pooled_shape(tuple(x.shape), stride, pad_off))
    return y, _mask_output(x, relu, save_mask)


def _input_gradient(
    grad: torch.Tensor,
    mask: torch.Tensor | None,
    height: int,
    width: int,
    channels_last: bool,
    taps: list[float],
    stride: int,
    padding: str,
    pad_off: int,
) -> torch.Tensor:
    """Gradient of ``shiftlab::blur_pool2d`` with respect to its input (of size ``height`` ×
    ``width``), through the ReLU when its ``mask`` is given."""
    return blur_pool2d_backward(grad, (height, width), tuple(taps), stride, padding, pad_off,
                                mask=mask, channels_last=channels_last)  # fmt: skip


blur_pool2d_backward_op = torch.library.custom_op(
    "shiftlab::blur_pool2d_backward", _input_gradient, mutates_args=()
)


@blur_pool2d_backward_op.register_fake
def _blur_pool2d_backward_fake(grad, mask, height, width, channels_last, taps, stride, padding,
                               pad_off):  # fmt: skip
    return gradient_buffer(grad, (*grad.shape[:2], height, width), channels_last)


def _setup_context(ctx, inputs, output):
    x, taps, stride, padding, pad_off, relu, save_mask = inputs
    # Blur-pool is linear: without the ReLU its backward keeps nothing of x but its shape.
    if relu:
        ctx.save_for_backward(output[1])
    ctx.relu, ctx.save_mask = relu, save_mask
    # The mask output has no gradient: without this, autograd would fill a tensor of its
    # size with zeros for every backward.
    ctx.set_materialize_grads(False)
    ctx.params = (x.shape[2], x.shape[3], keeps_channels_last(x), taps, stride, padding, pad_off)
    ctx.input_gradient = torch.ops.shiftlab.blur_pool2d_backward


def _backward(ctx, grad, _grad_mask):
    if grad is None:  # grads are not materialised: nothing flows back
        return (None,) * 7
    mask = None
    if ctx.relu:
        if not ctx.save_mask:
            raise RuntimeError(
                "shiftlab::blur_pool2d: backward through the fused ReLU of a call with "
                "save_mask=False; call it with save_mask=True (blur_pool2d_triton does when grad "
                "is needed)"
            )
        (mask,) = ctx.saved_tensors
    dx = ctx.input_gradient(grad, mask, *ctx.params)
    return dx, None, None, None, None, None, None


blur_pool2d_op.register_autograd(_backward, setup_context=_setup_context)
_BlurPool2dEager = eager_autograd(_pooled, _setup_context, _backward,
                                  _input_gradient)  # fmt: skip


def blur_pool2d_triton(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
) -> torch.Tensor:
    """The Triton path of ``kernels.blur_pool2d``; arguments arrive validated. The ReLU mask
    is written only when a gradient will be asked for; with none, the launch runs alone."""
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    if traced():
        return torch.ops.shiftlab.blur_pool2d(x, list(taps), stride, padding, pad_off, relu,
                                              relu and needs_grad)[0]  # fmt: skip
    if needs_grad:
        return _BlurPool2dEager.apply(x, list(taps), stride, padding, pad_off, relu, relu)[0]
    return blur_pool2d_forward(x, taps, stride, padding, pad_off, relu)
