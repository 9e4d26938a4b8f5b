"""BlurPool and ConvBlurPool (ReLU fused on load): launchers and the ``shiftlab::blur_pool2d``
custom op with its autograd and fake implementations.

Forward: each program streams a row of outputs down the map, filtering each input row along W
as it is read (``streamed_forward``, shared with MaxBlurPool). Backward: each program streams
down a tile of the input gradient row by row, from the output-gradient rows whose taps reach
it, each loaded once (``streamed_backward``, shared with MaxBlurPool; no atomics).
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.layout import bit_packed_shape, keeps_channels_last
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
from kernels.reference import blur_pool2d_input_gradient
from kernels.tracing import backward_in_plain_ops, traced


def relu_mask_buffer(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised uint8 tensor for the forward's ReLU mask: one bit per element of
    ``x``, eight to a byte along its contiguous axis: the channels when ``x`` is
    channels_last (N, ⌈C/8⌉, H, W, channels_last; bit ``c % 8`` of byte ``c // 8``), else
    the columns (N, C, H, ⌈W/8⌉; bit ``w % 8`` of byte ``w // 8``): :func:`bit_packed_shape`."""
    if keeps_channels_last(x):
        return empty_output(x, bit_packed_shape(x), torch.uint8)
    return torch.empty(bit_packed_shape(x), dtype=torch.uint8, device=x.device)


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

    With ``relu``, a ``mask`` (:func:`relu_mask_buffer`) receives ``not x <= 0`` (NaN passes,
    as in ``torch.relu``): what the backward needs of ``x``, in 1/16 of the bytes of a bf16
    ``x``.
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
    return forward_launch(
        "blur_pool_fwd", x, y, stored, taps=taps, stride=stride, padding=padding,
        pad_off=pad_off, max_kernel=1, relu=relu, save_codes=False, save_mask=save_mask,
        config=config,
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
    return backward_launch(
        "blur_pool_bwd", grad, unread, mask, dx, taps=taps, stride=stride, padding=padding,
        pad_off=pad_off, max_kernel=1, relu=relu, pack_c=channels_last, config=config,
    )  # fmt: skip


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


def relu_mask_of(mask: torch.Tensor, x_shape: tuple[int, ...], channels_last: bool) -> torch.Tensor:
    """The boolean ``not x <= 0`` of the ``x_shape`` input that :func:`relu_mask_buffer`'s
    ``mask`` holds packed."""
    n, c, h, w = x_shape
    bits = 1 << torch.arange(8, device=mask.device, dtype=torch.uint8)
    if channels_last:  # bit c % 8 of byte c // 8: (N, C/8, 8, H, W) -> (N, C, H, W)
        unpacked = (mask.unsqueeze(2) & bits.view(8, 1, 1)) != 0
        return unpacked.reshape(n, -1, h, w)[:, :c]
    unpacked = (mask.unsqueeze(-1) & bits) != 0  # bit w % 8 of byte w // 8
    return unpacked.reshape(n, c, h, -1)[..., :w]


def differentiable_input_gradient(
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
    """What :func:`_input_gradient` computes, as a graph in ``grad`` (the reference's
    transposed products, through the unpacked ReLU mask): for a backward that builds a graph
    (``create_graph``, a gradient penalty), whose own backward is blur-pool again."""
    exact_taps = torch.tensor(taps, dtype=torch.float64)
    dx = blur_pool2d_input_gradient(grad, (height, width), channels_last, exact_taps, stride,
                                    padding, pad_off)  # fmt: skip
    if mask is None:
        return dx
    return dx * relu_mask_of(mask, (*grad.shape[:2], height, width), channels_last)


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
    plain = backward_in_plain_ops(grad)
    dx = (differentiable_input_gradient if plain else ctx.input_gradient)(grad, mask, *ctx.params)
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
