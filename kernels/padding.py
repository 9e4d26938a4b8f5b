"""Pad sizes, output sizes and index maps of the four padding modes (spec §2), defined for any
pad size.

``torch.nn.functional.pad`` refuses reflect padding as large as the map and circular padding
larger than it, yet the 2x2 maps deep in a CIFAR network meet filters of 5 taps and more. An
index map says, for every position of the padded axis, which input position it reads; the
reference ops fold it into their per-axis matrices, and the Triton kernels compute the same map.
The code is TorchScript-compatible because the scripted and exported modules run it.
"""

import torch


def pad_sizes(filter_size: int, pad_off: int) -> tuple[int, int]:
    """Pad before and after an axis for a ``filter_size``-tap filter (spec §2): the floor half
    of ``filter_size - 1`` before, the rest after, each grown by ``pad_off``."""
    half = (filter_size - 1) // 2
    return half + pad_off, filter_size - 1 - half + pad_off


def dense_max_size(size: int, max_kernel: int) -> int:
    """Rows (or columns) of the dense ``max_kernel`` max of ``size`` rows, at stride 1 with no
    padding (spec §3): what MaxBlurPool blurs."""
    return size - max_kernel + 1


def blur_output_size(size: int, stride: int, pad_off: int) -> int:
    """Spec §2: ``floor((size + 2·pad_off - 1) / stride) + 1`` (works on SymInts too)."""
    return (size + 2 * pad_off - 1) // stride + 1


def pad_index(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source index in [0, n) of each of the ``before + n + after`` padded positions.

    Positions that read a zero (``mode="zeros"`` outside the map) get -1. ``n`` must be >= 1,
    ``before`` and ``after`` >= 0; any pad size is accepted in every mode.
    """
    if n < 1 or before < 0 or after < 0:
        raise ValueError(
            f"pad_index needs n >= 1 and pads >= 0, got n={n}, before={before}, after={after}"
        )
    i = torch.arange(-before, n + after, device="cpu")  # a host table, whatever the default
    if mode == "zeros":
        return torch.where((i >= 0) & (i < n), i, torch.full_like(i, -1))
    if mode == "replicate":
        return i.clamp(0, n - 1)
    # Divisors as tensors: ONNX export of a graph with a dynamic map size cannot take a
    # symbolic size as a scalar divisor.
    if mode == "circular":
        return i.remainder(torch.full_like(i, n))
    if mode == "reflect":
        period = 2 * (n - 1)  # mirror without repeating the edge; a 1-pixel map: all zeros
        folded = i.remainder(torch.full_like(i, period).clamp_min(1))
        return torch.where(folded < n, folded, period - folded)
    # Spelled out: TorchScript cannot read the PADDING_MODES tuple from here.
    raise ValueError(f"padding='{mode}' is not one of zeros, reflect, replicate, circular")
