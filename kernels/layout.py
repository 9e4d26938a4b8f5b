"""Which memory format an op's outputs take: the input's, when that is channels_last.

A tensor can be contiguous in both formats (one channel, or 1×1 maps); it then counts as NCHW,
so outputs derived from it are laid out the way most code expects.
"""

from typing import Literal, get_args

import torch

#: The layouts by name, as tuned tables, benchmarks and command lines give them.
Layout = Literal["nchw", "channels_last"]
LAYOUTS: tuple[str, ...] = get_args(Layout)


def keeps_channels_last(x: torch.Tensor) -> bool:
    """Whether outputs derived from ``x`` should be channels_last (x is, and not also NCHW)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def bit_packed_shape(x: torch.Tensor) -> tuple[int, int, int, int]:
    """The (N, C, H, W) shape of one bit per element of ``x``, eight to a byte along its
    contiguous axis: the channels when ``x`` is channels_last (N, ⌈C/8⌉, H, W), else the
    columns (N, C, H, ⌈W/8⌉). How the fused ReLU keeps its mask for the backward."""
    n, c, h, w = x.shape
    if keeps_channels_last(x):
        return n, (c + 7) // 8, h, w
    return n, c, h, (w + 7) // 8


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The memory format outputs derived from ``x`` take (:func:`keeps_channels_last`)."""
    return memory_format(keeps_channels_last(x))


def layout_of(x: torch.Tensor) -> Layout:
    """The name of the layout outputs derived from ``x`` take (:func:`keeps_channels_last`)."""
    return "channels_last" if keeps_channels_last(x) else "nchw"


def in_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` in the layout named ``layout`` (one of LAYOUTS)."""
    return x.contiguous(memory_format=memory_format(layout == "channels_last"))


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last``, or ``torch.contiguous_format`` (NCHW)."""
    return torch.channels_last if channels_last else torch.contiguous_format
