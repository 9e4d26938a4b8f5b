"""Drop-in ``nn.Module`` forms of the blur-pool ops.

The filter taps are built once, at construction, and kept as a buffer (so they are in the
``state_dict`` and move with ``.to()``); nothing is rebuilt from ``x.size(1)`` at run time,
which is what breaks TorchScript and ONNX export of filters built per call. Scripted, traced
and exported graphs run the plain-PyTorch reference; eager calls go through the backend
dispatch of ``kernels.functional``.
"""

from collections.abc import Sequence

import torch
from torch import nn

from kernels.filters import make_taps
from kernels.functional import check_blur_args, run_blur_pool2d, run_max_blur_pool2d, tap_values
from kernels.reference import blur_pool2d_reference, building_graph, max_blur_pool2d_reference


class BlurPool2d(nn.Module):
    """Low-pass filter then subsample each of ``channels`` channels (spec §2).

    With ``relu=True`` a ReLU runs first, fused in the Triton kernel: the paper's
    ``Conv(stride 1) -> BN -> ReLU -> blur-pool`` with the ReLU folded in.
    """

    taps: torch.Tensor

    def __init__(
        self,
        channels: int,
        filter_size: int | None = 4,
        stride: int = 2,
        padding: str = "reflect",
        *,
        filter: str = "binomial",
        taps: Sequence[float] | torch.Tensor | None = None,
        sigma: float | None = None,
        pad_off: int = 0,
        relu: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_channels(channels)
        self.register_buffer("taps", make_taps(filter_size, filter, taps=taps, sigma=sigma))
        self.tap_values = tap_values(self.taps)
        check_blur_args(stride=stride, padding=padding, pad_off=pad_off, relu=relu, backend=backend)
        self.channels = channels
        self.filter = filter
        self.sigma = sigma
        self.stride = stride
        self.padding = padding
        self.pad_off = pad_off
        self.relu = relu
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input_channels(x, self.channels)
        if building_graph():
            return blur_pool2d_reference(
                x, self.taps, self.stride, self.padding, self.pad_off, self.relu
            )
        return self._dispatch(x)

    @torch.jit.unused
    def _dispatch(self, x: torch.Tensor) -> torch.Tensor:
        return run_blur_pool2d(
            x,
            self.taps,
            self.tap_values,
            self.stride,
            self.padding,
            self.pad_off,
            self.relu,
            self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {_describe_filter(self.filter, self.taps, self.sigma)}, "
            f"stride={self.stride}, "
            f"padding={self.padding!r}, pad_off={self.pad_off}, relu={self.relu}, "
            f"backend={self.backend!r}"
        )


class MaxBlurPool2d(nn.Module):
    """Dense ``max_kernel`` max-pool at stride 1, then blur-pool (spec §3): the paper's
    replacement for ``MaxPool2d(2, stride)``."""

    taps: torch.Tensor

    def __init__(
        self,
        channels: int,
        filter_size: int | None = 4,
        stride: int = 2,
        padding: str = "reflect",
        *,
        max_kernel: int = 2,
        filter: str = "binomial",
        taps: Sequence[float] | torch.Tensor | None = None,
        sigma: float | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_channels(channels)
        self.register_buffer("taps", make_taps(filter_size, filter, taps=taps, sigma=sigma))
        self.tap_values = tap_values(self.taps)
        check_blur_args(stride=stride, padding=padding, max_kernel=max_kernel, backend=backend)
        self.channels = channels
        self.filter = filter
        self.sigma = sigma
        self.stride = stride
        self.padding = padding
        self.max_kernel = max_kernel
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input_channels(x, self.channels)
        if building_graph():
            return max_blur_pool2d_reference(
                x, self.taps, self.stride, self.padding, self.max_kernel
            )
        return self._dispatch(x)

    @torch.jit.unused
    def _dispatch(self, x: torch.Tensor) -> torch.Tensor:
        return run_max_blur_pool2d(
            x,
            self.taps,
            self.tap_values,
            self.stride,
            self.padding,
            self.max_kernel,
            self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {_describe_filter(self.filter, self.taps, self.sigma)}, "
            f"stride={self.stride}, "
            f"padding={self.padding!r}, max_kernel={self.max_kernel}, backend={self.backend!r}"
        )


def _check_channels(channels: object) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels={channels!r} is invalid: expected an integer >= 1")


def _check_input_channels(x: torch.Tensor, channels: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"input of shape {x.shape} is invalid: expected (N, {channels}, H, W), "
            "the channel count this module was built for"
        )


def _describe_filter(family: str, taps: torch.Tensor, sigma: float | None) -> str:
    if family == "custom":
        return "taps=[" + ", ".join(f"{t:.4g}" for t in taps.tolist()) + "]"
    described = f"filter_size={taps.numel()}, filter={family!r}"
    return described if sigma is None else f"{described}, sigma={sigma}"
