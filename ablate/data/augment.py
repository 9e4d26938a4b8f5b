"""Training augmentation: padded random crop and horizontal flip, batched on the device.

The standard CIFAR recipe (pad 4, crop 32, flip with probability 1/2), the padding scaled with
the image (an eighth of its shorter side), done as one gather per batch instead of a Python loop
per image, so it costs nothing next to a training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.layout import memory_format_of

CROP_FRACTION = 8  # the padding is 1/8 of the shorter side: CIFAR's 4 pixels at 32


def crop_padding(height: int, width: int) -> int:
    """The pixels `augment` pads each side of a height × width image by (at least 1)."""
    return max(1, min(height, width) // CROP_FRACTION)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return a randomly cropped and flipped copy of the image batch `x` (N×C×H×W).

    The batch is zero-padded by P = `crop_padding(H, W)` on each side (zero is the mean colour
    of normalised images) and each image is cropped back to H×W at an offset drawn uniformly in
    [0, 2·P]², then mirrored left-right with probability 1/2. All draws come from
    `generator` (on any device), so the same generator state gives the same batch. The result
    has the dtype and memory format of `x`.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be an N×C×H×W batch, got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    pad = crop_padding(h, w)
    draws = dict(generator=generator, device=generator.device)
    top = torch.randint(2 * pad + 1, (n,), **draws).to(x.device)
    left = torch.randint(2 * pad + 1, (n,), **draws).to(x.device)
    flip = (torch.rand(n, **draws) < 0.5).to(x.device)

    padded = F.pad(x, (pad,) * 4)
    rows = top[:, None] + torch.arange(h, device=x.device)
    columns = torch.arange(w, device=x.device)
    columns = torch.where(flip[:, None], columns.flip(0), columns) + left[:, None]
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indexing on dims 0, 2, 3 moves the result to N×H×W×C
    out = padded[batch, :, rows[:, :, None], columns[:, None, :]].permute(0, 3, 1, 2)
    return out.contiguous(memory_format=memory_format_of(x))
