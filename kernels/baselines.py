"""The formulations shiftlab's kernels are measured against, at the benchmarks' settings
(stride 2, reflect padding, a 2x2 max): the plain-PyTorch pad + depthwise ``conv2d`` users write
today (adobe/antialiased-cnns' formulation), and kornia's ops."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kernels.filters import make_taps
from kernels.padding import pad_sizes

# The anti-aliased pool every benchmark and tuning run measures: the paper's stride, reflect
# padding, and MaxBlurPool's 2×2 max.
STRIDE = 2
PADDING = "reflect"
MAX_KERNEL = 2


def pad_conv_formulation(
    op: str, filter_size: int, channels: int, dtype: torch.dtype, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The plain-PyTorch formulation: reflect pad (floor before, ceil after), depthwise conv."""
    taps = make_taps(filter_size)
    weight = torch.outer(taps, taps).to(device=device, dtype=dtype).expand(channels, 1, -1, -1)
    weight = weight.contiguous()
    pads = pad_sizes(filter_size, 0) * 2

    def run(x: torch.Tensor) -> torch.Tensor:
        if op == "blur_pool_relu":
            x = F.relu(x)
        elif op == "max_blur_pool":
            x = F.max_pool2d(x, MAX_KERNEL, stride=1)
        return F.conv2d(F.pad(x, pads, mode=PADDING), weight, stride=STRIDE, groups=channels)

    return run


def smallest_side(filter_size: int) -> int:
    """The smallest H and W :func:`pad_conv_formulation` takes: reflect padding needs a pad
    smaller than the map, which the 2x2 max makes one row and column shorter."""
    return pad_sizes(filter_size, 0)[1] + MAX_KERNEL


def kornia_op(op: str, filter_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """kornia's blur-pool ops (its zero padding is the `zeros` mode's from kornia 0.9 on)."""
    import kornia.filters

    if op == "max_blur_pool":
        return functools.partial(
            kornia.filters.max_blur_pool2d,
            kernel_size=filter_size,
            stride=STRIDE,
            max_pool_size=MAX_KERNEL,
        )
    blur = functools.partial(kornia.filters.blur_pool2d, kernel_size=filter_size, stride=STRIDE)
    if op == "blur_pool_relu":
        return lambda x: blur(F.relu(x))
    return blur
