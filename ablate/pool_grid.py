"""Keep a converted pool on the output grid of the pool it replaced.

Blur-pool makes ``ceil(n / stride)`` rows of a map of ``n`` rows (spec §2). A pool makes the
rows torch's pooling formula gives, which is not always as many: ``AvgPool(2, 2)`` on an odd
map drops its last row (DenseNet's transitions away from 224-pixel inputs), and a ceil-mode
max-pool (SqueezeNet, GoogLeNet) adds a window that hangs over the edge. A network whose
branches meet again (a residual addition) needs each site to keep its rows, so such sites are
wrapped in :class:`PoolGrid`, which trims the surplus rows and, for a ceil-mode max-pool, gives
the dense max the overhanging windows (padding with -inf, as the pool itself reads past the
edge).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kernels.padding import blur_output_size
from kernels.tracing import exporting


def pool_rows(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Output rows of ``nn.MaxPool2d``/``nn.AvgPool2d`` on ``size`` input rows, as torch counts
    them (a ceil-mode window must start inside the input or its left padding)."""
    rows = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (rows - 1) * stride >= size + padding:
        rows -= 1
    return rows


def grid_differs(growth: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> bool:
    """Whether blur-pool at ``stride`` makes other than the pool's rows on some input size, on
    a map ``growth`` rows longer than the input (a dense max's ``2·padding - kernel + 1``; 0
    with none). Both counts are floors of ``(size + constant) / stride``, so their difference
    repeats every ``stride`` sizes: two periods from the smallest input the pool takes cover
    them all."""
    first = max(1, kernel - 2 * padding)
    return any(
        blur_output_size(size + growth, stride, 0)
        != pool_rows(size, kernel, stride, padding, ceil_mode)
        for size in range(first, first + 2 * stride)
    )


class PoolGrid(nn.Module):
    """``inner`` (an anti-aliased pool) with the output rows and columns of the pool
    ``MaxPool2d``/``AvgPool2d(kernel, stride, padding, ceil_mode)`` on the same input.

    ``dense_max``: ``inner`` starts with a dense max over ``kernel`` windows, which is given
    the ceil-mode windows that overhang the input (the input padded at the bottom and right
    with -inf). Rows beyond the pool's are trimmed.
    """

    def __init__(
        self,
        inner: nn.Module,
        kernel: int,
        stride: int,
        padding: int,
        ceil_mode: bool,
        *,
        dense_max: bool,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.ceil_mode, self.dense_max = ceil_mode, dense_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = pool_rows(x.shape[-2], self.kernel, self.stride, self.padding, self.ceil_mode)
        cols = pool_rows(x.shape[-1], self.kernel, self.stride, self.padding, self.ceil_mode)
        if self.dense_max and self.ceil_mode:
            extra_h = self._overhang(x.shape[-2], rows)
            extra_w = self._overhang(x.shape[-1], cols)
            if extra_h > 0 or extra_w > 0:
                x = F.pad(x, [0, max(extra_w, 0), 0, max(extra_h, 0)], value=-math.inf)
        out = self.inner(x)
        if not torch.jit.is_scripting() and exporting():
            # a slice's end is clamped to the map: a comparison torch.export cannot prove for
            # every size (floor(h/2) <= ceil(h/2)), so it would fix a dynamic size's parity
            out = out.index_select(-2, torch.arange(rows, device=out.device))
            return out.index_select(-1, torch.arange(cols, device=out.device))
        return out[..., :rows, :cols]

    def _overhang(self, size: int, rows: int) -> int:
        """How far the last of ``rows`` windows reaches past the input and its padding."""
        return (rows - 1) * self.stride + self.kernel - (size + 2 * self.padding)

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}, dense_max={self.dense_max}"
        )
