"""MaxBlurPool (dense max at stride 1, then blur-pool): launchers and the
``shiftlab::max_blur_pool2d`` custom op with its autograd and fake implementations.

Forward (``streamed_forward``, shared with blur-pool): each program streams down its tile's
columns one row of the dense max map at a time (each value the max of its ``max_kernel``²
block, formed on load, so the map never goes to memory); when a gradient will be needed it
also writes, per max-map element, a one-byte code saying where in its block the max lies.
Backward (``streamed_backward``, shared with blur-pool), from the output gradient and those
codes only, in one pass: blur-pool's backward of each max-map row on registers, each window's
gradient handed to the element its code names (no temporary of the map's size).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.layout import keeps_channels_last, memory_format
from kernels.ops.common import (
    MemoisedLaunch,
    eager_autograd,
    empty_output,
    gradient_buffer,
    output_buffer,
    pooled_shape,
)
from kernels.ops.streamed_backward import backward_launch
from kernels.ops.streamed_forward import forward_launch
from kernels.options import MAX_CODED_KERNEL
from kernels.padding import dense_max_size
from kernels.reference import blur_pool2d_input_gradient
from kernels.tracing import backward_in_plain_ops, traced


def max_codes_buffer(x: torch.Tensor, max_kernel: int) -> torch.Tensor:
    """An uninitialised uint8 tensor for the forward's argmax codes: one per max-map element,
    in ``x``'s memory format."""
    n, c, h, w = x.shape
    map_h, map_w = dense_max_size(h, max_kernel), dense_max_size(w, max_kernel)
    return empty_output(x, (n, c, map_h, map_w), torch.uint8)


def input_gradient_buffer(
    grad: torch.Tensor,
    codes: torch.Tensor,
    max_kernel: int,
    channels_last: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``out`` when given (checked), else a new tensor for the backward's input gradient: the
    input's shape (the codes' plus ``max_kernel`` - 1) and format, ``grad``'s dtype. (The
    codes cannot tell the format: a 1 × 1 max map is contiguous in both.)"""
    n, c, h, w = codes.shape
    shape = (n, c, h + max_kernel - 1, w + max_kernel - 1)
    return gradient_buffer(grad, shape, channels_last, out)


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
    map_shape = (*x.shape[:2], *(dense_max_size(size, max_kernel) for size in x.shape[2:]))
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
    return forward_launch(
        "max_blur_pool_fwd", x, y, stored, taps=taps, stride=stride, padding=padding,
        pad_off=0, max_kernel=max_kernel, relu=False, save_codes=save_codes, save_mask=False,
        config=config,
    )  # fmt: skip


def max_blur_pool2d_backward(
    grad: torch.Tensor,
    codes: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
    *,
    channels_last: bool | None = None,
    config: dict[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the backward: the gradient of :func:`max_blur_pool2d_forward` w.r.t. its input,
    from the output gradient and the codes the forward saved. The input gradient has
    ``grad``'s dtype and the input's memory format (``channels_last``; None: the codes').

    One fused pass (``streamed_backward``): no temporary of the max map's size.
    A program writes ``BLOCK_C`` × ``BLOCK_H`` × ``BLOCK_W`` of the input gradient, streaming
    its rows (``BLOCK_H`` rounded up to whole strides).
    """
    if channels_last is None:
        channels_last = keeps_channels_last(codes)
    dx = input_gradient_buffer(grad, codes, max_kernel, channels_last, out)
    if dx.numel() == 0:
        return dx
    _backward_launch((grad, codes, dx, dx), taps, stride, padding, max_kernel, config)
    return dx


@MemoisedLaunch
def _backward_launch(grad, codes, unread, dx, taps, stride, padding, max_kernel, config):
    """The backward's :class:`Launch` for these tensors' layouts and these options (the
    kernel's ReLU mask is ``unread``)."""
    return backward_launch(
        "max_blur_pool_bwd", grad, codes, unread, dx, taps=taps, stride=stride,
        padding=padding, pad_off=0, max_kernel=max_kernel, relu=False, pack_c=False,
        config=config,
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


def differentiable_input_gradient(
    grad: torch.Tensor,
    codes: torch.Tensor,
    channels_last: bool,
    taps: list[float],
    stride: int,
    padding: str,
    max_kernel: int,
) -> torch.Tensor:
    """What :func:`_input_gradient` computes, as a graph in ``grad``: the reference's
    transposed blur to the max map, each window's gradient then added to the element its
    code (row · ``max_kernel`` + column) names. For a backward that builds a graph
    (``create_graph``, a gradient penalty), whose own backward gathers by the same codes."""
    n, c, h, w = codes.shape
    k = max_kernel
    exact_taps = torch.tensor(taps, dtype=torch.float64)
    grad_max = blur_pool2d_input_gradient(grad, (h, w), channels_last, exact_taps, stride,
                                          padding, 0)  # fmt: skip
    # A code the blur never reads was not written (its window's gradient is 0): keep it
    # inside the window, whatever the byte holds.
    code = codes.long().clamp(max=k * k - 1)
    rows = torch.arange(h, device=codes.device).view(h, 1) + code // k
    cols = torch.arange(w, device=codes.device) + code % k
    width = w + k - 1
    index = (rows * width + cols).reshape(n, c, h * w)
    dx = grad_max.new_zeros((n, c, (h + k - 1) * width))
    dx = dx.scatter_add(2, index, grad_max.reshape(n, c, h * w))
    return dx.view(n, c, h + k - 1, width).contiguous(memory_format=memory_format(channels_last))


def _input_gradient(
    grad: torch.Tensor,
    codes: torch.Tensor,
    channels_last: bool,
    taps: list[float],
    stride: int,
    padding: str,
    max_kernel: int,
) -> torch.Tensor:
    """Gradient of ``shiftlab::max_blur_pool2d`` with respect to its input (channels_last or
    not)."""
    return max_blur_pool2d_backward(grad, codes, tuple(taps), stride, padding, max_kernel,
                                    channels_last=channels_last)  # fmt: skip


max_blur_pool2d_backward_op = torch.library.custom_op(
    "shiftlab::max_blur_pool2d_backward", _input_gradient, mutates_args=()
)


@max_blur_pool2d_backward_op.register_fake
def _max_blur_pool2d_backward_fake(grad, codes, channels_last, taps, stride, padding,
                                   max_kernel):  # fmt: skip
    return input_gradient_buffer(grad, codes, max_kernel, channels_last)


def _setup_context(ctx, inputs, output):
    x, taps, stride, padding, max_kernel, save_codes = inputs
    ctx.save_for_backward(output[1])
    # The codes have no gradient: without this, autograd would fill a tensor of their size
    # (half a bf16 input's bytes) with zeros for every backward.
    ctx.set_materialize_grads(False)
    ctx.params = (keeps_channels_last(x), taps, stride, padding, max_kernel, save_codes)
    ctx.input_gradient = torch.ops.shiftlab.max_blur_pool2d_backward


def _backward(ctx, grad, _grad_codes):
    if grad is None:  # grads are not materialised: nothing flows back
        return (None,) * 6
    (codes,) = ctx.saved_tensors
    channels_last, taps, stride, padding, max_kernel, save_codes = ctx.params
    if not save_codes:
        raise RuntimeError(
            "shiftlab::max_blur_pool2d: backward through a call with save_codes=False; "
            "call it with save_codes=True (max_blur_pool2d_triton does when grad is needed)"
        )
    plain = backward_in_plain_ops(grad)
    input_gradient = differentiable_input_gradient if plain else ctx.input_gradient
    dx = input_gradient(grad, codes, channels_last, taps, stride, padding, max_kernel)
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
