"""Batched image shifts of the shift metrics (spec §4): circular rolls and padded crops.

Every image of a batch may get its own offset, so a whole test set is shifted with one indexing
operation on the device instead of a Python loop per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F

ShiftKind = Literal["circular", "crop"]
SHIFT_KINDS: tuple[str, ...] = get_args(ShiftKind)
CropFill = Literal["zeros", "reflect"]
CROP_FILLS: tuple[str, ...] = get_args(CropFill)

Offsets = torch.Tensor | Sequence[int]


def shift_images(
    x: torch.Tensor,
    offsets: Offsets,
    kind: ShiftKind,
    *,
    pad: int = 0,
    fill: CropFill = "zeros",
) -> torch.Tensor:
    """Shift a batch N×C×H×W by `offsets` with the `kind` protocol (`pad`/`fill`: crop only).

    `offsets` is one (dh, dw) pair for the whole batch or an N×2 integer tensor, one per image.
    """
    if kind == "circular":
        return circular_shift(x, offsets)
    if kind == "crop":
        return crop_shift(x, offsets, pad=pad, fill=fill)
    raise ValueError(f"kind must be one of {SHIFT_KINDS}, got {kind!r}")


def circular_shift(x: torch.Tensor, offsets: Offsets) -> torch.Tensor:
    """`torch.roll(x[i], offsets[i], dims=(-2, -1))` for every image i at once."""
    _check_images(x)
    n, _, h, w = x.shape
    off = _per_image_offsets(offsets, n, x.device)
    rows = (torch.arange(h, device=x.device) - off[:, :1]) % h
    cols = (torch.arange(w, device=x.device) - off[:, 1:]) % w
    return _take_windows(x, rows, cols)


def crop_shift(
    x: torch.Tensor, offsets: Offsets, *, pad: int, fill: CropFill = "zeros"
) -> torch.Tensor:
    """Pad each image by `pad` (`fill`: zeros or reflect) and crop H×W at (pad+dh, pad+dw)."""
    _check_images(x)
    if fill not in CROP_FILLS:
        raise ValueError(f"fill must be one of {CROP_FILLS}, got {fill!r}")
    n, _, h, w = x.shape
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if fill == "reflect" and pad >= min(h, w):
        raise ValueError(f"pad={pad} with fill 'reflect' must be smaller than the image {h}×{w}")
    off = _per_image_offsets(offsets, n, x.device)
    if n and int(off.abs().max()) > pad:
        raise ValueError(
            f"offsets up to {int(off.abs().max())} do not fit in pad={pad}; use |offset| <= pad"
        )
    padded = F.pad(x, (pad, pad, pad, pad), mode="constant" if fill == "zeros" else "reflect")
    rows = pad + off[:, :1] + torch.arange(h, device=x.device)
    cols = pad + off[:, 1:] + torch.arange(w, device=x.device)
    return _take_windows(padded, rows, cols)


def _take_windows(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[i, c, r, s] = x[i, c, rows[i, r], cols[i, s]] by one advanced-indexing gather."""
    n, c = x.shape[:2]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def _per_image_offsets(offsets: Offsets, n: int, device: torch.device) -> torch.Tensor:
    """An N×2 int64 tensor on `device` from one (dh, dw) pair or N pairs."""
    off = torch.as_tensor(offsets, device=device)
    if off.is_floating_point() or off.is_complex():
        raise ValueError(f"offsets must be integers, got dtype {off.dtype}")
    if off.shape == (2,):
        off = off.expand(n, 2)
    if off.shape != (n, 2):
        raise ValueError(
            f"offsets must be one (dh, dw) pair or of shape ({n}, 2), got {tuple(off.shape)}"
        )
    return off.long()


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of images N×C×H×W, got shape {tuple(x.shape)}")
