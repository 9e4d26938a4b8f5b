"""The reference blur-pool ops in plain PyTorch: spec §2 and §3 in code, and the CPU path.

Padding, correlation with the separable filter and subsampling are all linear along each axis,
so one axis of blur-pool is a small ``(n_out, n)`` matrix built from the padding index map and
the taps, and a whole blur-pool is two matrix products, ``A_h @ x @ A_w^T``. On CPU that runs on
the GEMM kernels in NCHW and in channels_last alike, every padding mode and pad size (also pads
larger than the map) comes out of the same few lines, and autograd differentiates it. One
consequence: a non-finite input reaches every output of its row and column (0 * inf is nan),
not only its neighbours.

The dense max of MaxBlurPool is a ``torch.maximum`` of shifted slices, bit-identical to
``max_pool2d(x, k, 1)`` and far cheaper on CPU, behind an autograd.Function whose backward sends
each window's gradient to its first maximum in row-major order, as ``torch.max_pool2d`` does.
Scripted, traced and exported graphs take ``max_pool2d`` itself, which every exporter knows.

Arguments are assumed valid here; ``kernels.functional`` checks them.
"""

import torch
import torch.nn.functional as F

from kernels.padding import pad_index


def blur_matrix(
    n: int, taps: torch.Tensor, stride: int, padding: str, pad_off: int
) -> torch.Tensor:
    """The float64 ``(n_out, n)`` matrix of one axis: pad, correlate with ``taps``, subsample.

    Row ``o`` holds the taps at the input positions that output ``o`` reads after padding by
    ``(k-1)//2 + pad_off`` before and ``k-1 - (k-1)//2 + pad_off`` after; taps that land on the
    same input (reflect and circular padding of small maps) add up, taps that read a zero drop.
    """
    size = taps.numel()
    before = (size - 1) // 2 + pad_off
    after = (size - 1) - (size - 1) // 2 + pad_off
    n_out = (n + 2 * pad_off - 1) // stride + 1
    source = pad_index(n, before, after, padding)
    padded_pos = torch.arange(n_out).unsqueeze(1) * stride + torch.arange(size).unsqueeze(0)
    columns = source[padded_pos]
    weights = taps.detach().cpu().double().expand(n_out, size)
    weights = torch.where(columns >= 0, weights, torch.zeros_like(weights))
    matrix = torch.zeros(n_out, n, dtype=torch.float64)
    return matrix.scatter_add_(1, columns.clamp(min=0), weights)


def blur_pool2d_reference(
    x: torch.Tensor, taps: torch.Tensor, stride: int, padding: str, pad_off: int, relu: bool
) -> torch.Tensor:
    """Blur-pool of spec §2 (after a ReLU when ``relu``); same dtype and memory format as ``x``.

    Half-precision inputs are computed in float32 and cast back once; float64 stays float64.
    """
    if relu:
        x = F.relu(x)
    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    n, c, h, w = x.shape
    rows = blur_matrix(h, taps, stride, padding, pad_off).to(x.device, compute_dtype)
    cols = blur_matrix(w, taps, stride, padding, pad_off).to(x.device, compute_dtype)
    xc = x.to(compute_dtype)
    if xc.is_contiguous(memory_format=torch.channels_last) and not xc.is_contiguous():
        # (N, H, W, C) in memory: contract W, then H, with C the fast axis of both GEMMs.
        per_row = torch.matmul(cols, xc.permute(0, 2, 3, 1))
        out = torch.matmul(rows, per_row.reshape(n, h, -1))
        out = out.reshape(n, rows.shape[0], cols.shape[0], c).permute(0, 3, 1, 2)
    else:
        out = torch.matmul(rows, torch.matmul(xc, cols.t()))
    return out.to(x.dtype)


def max_blur_pool2d_reference(
    x: torch.Tensor, taps: torch.Tensor, stride: int, padding: str, max_kernel: int
) -> torch.Tensor:
    """MaxBlurPool of spec §3: dense ``max_kernel`` max at stride 1, unpadded, then blur-pool."""
    if max_kernel > 1:
        x = F.max_pool2d(x, max_kernel, 1) if building_graph() else _dense_max2d(x, max_kernel)
    return blur_pool2d_reference(x, taps, stride, padding, 0, False)


def building_graph() -> bool:
    """True while scripting, tracing or exporting, when only plain aten ops may be recorded."""
    return torch.jit.is_scripting() or _tracing_or_exporting()


@torch.jit.unused
def _tracing_or_exporting() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


@torch.jit.unused
def _dense_max2d(x: torch.Tensor, kernel: int) -> torch.Tensor:
    return _DenseMax2d.apply(x, kernel)


class _DenseMax2d(torch.autograd.Function):
    """Max over every ``kernel x kernel`` window at stride 1, taken one axis at a time.

    The backward recomputes which element won each window from the saved input (cheap next to
    keeping index tensors alive between forward and backward) and routes the gradient there.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kernel = kernel
        row_max, _ = _window_max(x, kernel, dim=3, track_winner=False)
        out, _ = _window_max(row_max, kernel, dim=2, track_winner=False)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        kernel = ctx.kernel
        row_max, row_steps = _window_max(x, kernel, dim=3, track_winner=True)
        _, col_steps = _window_max(row_max, kernel, dim=2, track_winner=True)
        grad_row_max = _route_to_winner(grad, col_steps, dim=2, like=row_max)
        return _route_to_winner(grad_row_max, row_steps, dim=3, like=x), None


def _window_max(
    x: torch.Tensor, kernel: int, dim: int, track_winner: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Max over ``kernel`` consecutive entries along ``dim``, and how the winner was found.

    With ``track_winner``, ``steps[d - 1]`` marks where the entry at offset ``d`` is strictly
    greater than every earlier one, so the winner of a window is its last marked offset (0 if
    none): the first maximum. Taking the first winning row of the per-row first maxima gives
    the first maximum of the 2-D window in row-major order.
    """
    length = x.shape[dim] - kernel + 1
    best = x.narrow(dim, 0, length)
    steps = []
    for offset in range(1, kernel):
        candidate = x.narrow(dim, offset, length)
        if track_winner:
            steps.append(candidate > best)
        best = torch.maximum(best, candidate)
    return best, steps


def _route_to_winner(
    grad: torch.Tensor, steps: list[torch.Tensor], dim: int, like: torch.Tensor
) -> torch.Tensor:
    """Gradient wrt the input of ``_window_max``: each window's gradient goes to its winner.

    Offsets are visited from the last: a window's gradient is claimed by the last offset that
    marked a new maximum, and what no offset claimed belongs to offset 0.
    """
    length = grad.shape[dim]
    out = torch.empty_like(like)
    out.narrow(dim, length, len(steps)).zero_()
    claims = []
    unclaimed = grad
    for i, step in enumerate(reversed(steps)):
        claims.append(torch.where(step, unclaimed, 0))
        # The last remainder is offset 0's share: write it straight into place.
        target = out.narrow(dim, 0, length) if i == len(steps) - 1 else None
        unclaimed = torch.sub(unclaimed, claims[-1], out=target)
    for offset, claimed in zip(range(len(steps), 0, -1), claims, strict=True):
        out.narrow(dim, offset, length).add_(claimed)
    return out
