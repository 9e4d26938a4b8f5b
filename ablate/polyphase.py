"""Adaptive polyphase sampling (APS): subsample on the grid where the signal is strongest.

Subsampling by s keeps one of the s² polyphase components of a map, the one on the grid that
starts at (0, 0). A circular shift of the input permutes the components (and shifts them), so
the fixed choice sees a different component after a shift. APS (Chaman & Dokmanić, "Truly
Shift-Invariant Convolutional Neural Networks", CVPR 2021) keeps, per sample, the component of
largest l2 norm instead: a circular shift of the input then only shifts the output, and a net
whose every layer commutes with circular shifts (circular padding throughout) and that ends in
a global pool becomes exactly invariant to circular shifts.

Component (i, j) of an H × W map is the map rolled by (-i, -j), subsampled from (0, 0), so every
component is ceil(H/s) × ceil(W/s) (the size blur-pool outputs). Exactness needs s to divide
H and W: on other maps the components wrap around and overlap. Ties go to the first component
in row-major order.

Two subsamplings of the same input grid must pick the same component, or their sum mixes grids:
a residual block subsamples its main path and its shortcut. `PhaseLink` ties such modules
together: the one that runs first (a model runs them in a fixed order) chooses in every forward
pass, and the others take its choice of that pass.
"""

from __future__ import annotations

import torch
from torch import nn

from kernels.layout import memory_format_of


class PhaseLink:
    """The component chosen by the first linked module to run; shared by the linked modules."""

    def __init__(self) -> None:
        self.leader: PolyphasePool2d | None = None
        self.phase: torch.Tensor | None = None


class PolyphasePool2d(nn.Module):
    """Subsample by `stride` keeping, per sample, the polyphase component of largest l2 norm.

    With `link`, the first linked module to run chooses for all of them (see `PhaseLink`).
    """

    def __init__(self, stride: int = 2, link: PhaseLink | None = None) -> None:
        super().__init__()
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride={stride!r} is invalid: expected an integer >= 1")
        self.stride = stride
        self.link = link

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        components = polyphase_components(x, self.stride)
        link = self.link
        if link is not None and link.leader not in (None, self):
            if link.phase is None or link.phase.shape[0] != x.shape[0]:
                raise RuntimeError(
                    "a linked PolyphasePool2d ran before the module that chooses its component"
                )
            phase = link.phase
        else:
            phase = components.flatten(2).norm(dim=2).argmax(dim=1)
            if link is not None:
                link.leader, link.phase = self, phase
        picked = components[torch.arange(x.shape[0], device=x.device), phase]
        return picked.contiguous(memory_format=memory_format_of(x))

    def extra_repr(self) -> str:
        return f"stride={self.stride}" + (", linked" if self.link is not None else "")


def polyphase_components(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The stride² components of (N, C, H, W) `x` as (N, stride², C, ceil(H/s), ceil(W/s))."""
    return torch.stack(
        [
            torch.roll(x, (-i, -j), dims=(2, 3))[:, :, ::stride, ::stride]
            for i in range(stride)
            for j in range(stride)
        ],
        dim=1,
    )
