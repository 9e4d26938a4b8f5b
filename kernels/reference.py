"""The reference blur-pool ops in plain PyTorch: spec §2 and §3 in code, and the CPU path.

Padding, correlation with the separable filter and subsampling are all linear along each axis,
so one axis of blur-pool is a small ``(n_out, n)`` matrix built from the padding index map and
the taps, and a whole blur-pool is two matrix products, ``A_h @ x @ A_w^T``. On CPU that runs on
the GEMM kernels in NCHW and in channels_last alike, every padding mode and pad size (also pads
larger than the map) comes out of the same few lines, and autograd differentiates it. The
products meet every input, most with weight 0, and 0 * inf is nan: a non-finite input would
turn its whole output plane into NaN, where spec §2 and the fused kernels keep it to the
outputs whose window holds it. So where the output holds a non-finite value (its sum says
so, for a few per cent of the op's time), the op is computed again window by window, as spec
§2 states it. That check runs on CPU tensors in eager code; on a GPU it would wait for the device at
every call, and a graph (scripted, traced, exported, compiled) cannot branch on data, so
those keep the products' NaN planes. A one-tap filter is taken as the slice it is,
``x[:, :, ::s, ::s]``, exactly. The products run with autocast off, in float32 or float64.

The dense max of MaxBlurPool is a ``torch.maximum`` of shifted slices in either layout,
bit-identical to ``max_pool2d(x, k, 1)`` and far cheaper on CPU, behind an autograd.Function
whose backward sends each window's gradient to its first maximum in row-major order (its last
NaN if it holds one), as ``torch.max_pool2d`` does. Graphs being scripted, traced, exported
or compiled take ``max_pool2d`` itself.

Arguments are assumed valid here; ``kernels.functional`` checks them.
"""

import torch
import torch.nn.functional as F

from kernels.layout import keeps_channels_last, memory_format_of
from kernels.padding import blur_output_size, pad_index, pad_sizes
from kernels.tracing import (
    backward_in_plain_ops,
    batched,
    building_graph,
    compiling,
    exporting,
    tracing_or_exporting,
    transforms_active,
)

#: Device types autocast can be on for.
AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps")


def blur_matrix(
    n: int, taps: torch.Tensor, stride: int, padding: str, pad_off: int
) -> torch.Tensor:
    """The float64 ``(n_out, n)`` matrix of one axis: pad, correlate with ``taps``, subsample.

    Row ``o`` holds the taps at the input positions that output ``o`` reads after padding by
    ``(k-1)//2 + pad_off`` before and ``k-1 - (k-1)//2 + pad_off`` after; taps that land on the
    same input (reflect and circular padding of small maps) add up, taps that read a zero drop.
    """
    size = taps.numel()
    before, after = pad_sizes(size, pad_off)
    n_out = blur_output_size(n, stride, pad_off)
    source = pad_index(n, before, after, padding)
    # host tables, built on the CPU whatever the default device (moved once made)
    steps = torch.arange(n_out, device="cpu").unsqueeze(1) * stride
    padded_pos = steps + torch.arange(size, device="cpu").unsqueeze(0)
    columns = source[padded_pos]
    weights = taps.detach().cpu().double().expand(n_out, size)
    weights = torch.where(columns >= 0, weights, torch.zeros_like(weights))
    matrix = torch.zeros(n_out, n, dtype=torch.float64, device="cpu")
    return matrix.scatter_add_(1, columns.clamp(min=0), weights)


def blur_pool2d_reference(
    x: torch.Tensor, taps: torch.Tensor, stride: int, padding: str, pad_off: int, relu: bool
) -> torch.Tensor:
    """Blur-pool of spec §2 (after a ReLU when ``relu``); same dtype and memory format as ``x``.

    Half-precision inputs are computed in float32 and cast back once (also under autocast,
    which would run the products in its lower precision); float64 stays float64. One tap
    without ``pad_off`` is plain subsampling, ``x[:, :, ::s, ::s]``, exactly.
    """
    # The input's layout, not the ReLU's output's: of an input in neither format (a slice of a
    # channels_last tensor), F.relu returns a dense channels_last tensor.
    return _blur_pool2d(x, taps, stride, padding, pad_off, relu, _output_channels_last(x))


def _blur_pool2d(
    x: torch.Tensor,
    taps: torch.Tensor,
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
    channels_last: bool,
) -> torch.Tensor:
    """:func:`blur_pool2d_reference`, its output channels_last where ``channels_last``."""
    if relu:
        x = F.relu(x)
    if taps.numel() == 1 and pad_off == 0:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        return x[:, :, ::stride, ::stride].clone(memory_format=layout)
    rows, cols = _blur_matrices(x.shape[2], x.shape[3], taps, stride, padding, pad_off, x)
    xc = x.to(rows.dtype)
    if torch.jit.is_scripting() or not _autocasting(x.device.type):
        out = _blur_products(xc, rows, cols, channels_last)
    else:  # (TorchScript cannot hold the autocast block, nor meets autocast)
        out = _blur_products_without_autocast(xc, rows, cols, channels_last)
    if not torch.jit.is_scripting() and _met_non_finite(out):
        out = _windowed_blur(xc, taps, stride, padding, pad_off, channels_last)
    return out.to(x.dtype)


@torch.jit.unused
def _met_non_finite(out: torch.Tensor) -> bool:
    """Whether the products' output holds a non-finite value, asked only where the answer
    costs no wait for a device and no graph break: on CPU, in eager code."""
    if out.device.type != "cpu" or compiling() or tracing_or_exporting():
        return False
    if transforms_active() or batched(out):
        return False
    return not bool(torch.isfinite(out.sum()))


@torch.jit.unused
def _windowed_blur(
    x: torch.Tensor,
    taps: torch.Tensor,
    stride: int,
    padding: str,
    pad_off: int,
    channels_last: bool,
) -> torch.Tensor:
    """Blur-pool as spec §2 states it, one axis at a time: pad by the index map, then each
    output the weighted sum of its own window. A non-finite input reaches only the outputs
    whose window holds it (the products reach every output of its plane). A channels_last
    ``x`` is taken as the (N, H, W, C) tensor it is in memory: the input gradient autograd
    builds of the index_selects (a new tensor of their input's shape) is then channels_last
    too, as the products' and the fused kernels' are."""
    size = taps.numel()
    weights = taps.to(x.device, x.dtype)
    before, after = pad_sizes(size, pad_off)
    if channels_last:
        x = x.permute(0, 2, 3, 1)
    for dim in (1, 2) if channels_last else (2, 3):
        source = pad_index(x.shape[dim], before, after, padding).to(x.device)
        padded = x.index_select(dim, source.clamp(min=0))
        reads_zero = (source < 0).view([-1 if d == dim else 1 for d in range(4)])
        padded = padded.masked_fill(reads_zero, 0)
        starts = torch.arange(blur_output_size(x.shape[dim], stride, pad_off), device=x.device)
        x = weights[0] * padded.index_select(dim, starts * stride)
        for tap in range(1, size):
            x = x + weights[tap] * padded.index_select(dim, starts * stride + tap)
    return x.permute(0, 3, 1, 2) if channels_last else x


def _output_channels_last(x: torch.Tensor) -> bool:
    """:func:`keeps_channels_last`, but NCHW under vmap (which cannot be asked about a layout:
    its batches run as NCHW) and other ``torch.func`` transforms."""
    return (
        torch.jit.is_scripting() or not (transforms_active() or batched(x))
    ) and keeps_channels_last(x)


def _blur_matrices(
    h: int, w: int, taps: torch.Tensor, stride: int, padding: str, pad_off: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The :func:`blur_matrix` of the rows and of the columns of an ``h`` × ``w`` map, on
    ``like``'s device, in the precision the products run in: float64 for float64, else
    float32."""
    dtype = compute_dtype(like.dtype)
    rows = blur_matrix(h, taps, stride, padding, pad_off).to(like.device, dtype)
    cols = blur_matrix(w, taps, stride, padding, pad_off).to(like.device, dtype)
    return rows, cols


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision the reference computes in: float64 for float64, else float32 (half
    precision is taken up, and its result rounded once)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _blur_products(
    x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, channels_last: bool
) -> torch.Tensor:
    """``rows @ x @ cols^T`` per plane, in ``x``'s dtype."""
    n, c, h, w = x.shape
    # A channels_last map of 8 or more channels is blurred in its own layout; below, its planes
    # are taken in NCHW, as with 1-3 channels they run faster (2-7x on CPU; the copies to NCHW
    # and back cost less than the C-wide products of the channels_last path). (A literal:
    # TorchScript reads no module-level int.)
    if channels_last and c >= 8 and (torch.jit.is_scripting() or not exporting()):
        # (N, H, W, C) in memory: contract H over rows of W*C (few large GEMMs), then W.
        per_col = torch.matmul(rows, x.permute(0, 2, 3, 1).reshape(n, h, w * c))
        return torch.matmul(cols, per_col.reshape(n, rows.shape[0], w, c)).permute(0, 3, 1, 2)
    # (fewer channels: the W products above are C-wide, memory-bound; exporting channels_last:
    # the plane products of x in NCHW, whose size guards an export can prove; merging N and C
    # of a channels_last map asks whether it is 1x1)
    planes = _in_layout(x, False) if channels_last else x
    return _in_layout(_matmul(rows, _matmul(planes, cols.t())), channels_last)


def _in_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` dense in channels_last where ``channels_last``, else in NCHW. An export copies it
    into a new tensor of that layout: ``contiguous`` would ask whether ``x`` is laid out so
    already, which of a map that can be 1x1 (dense in both formats) is a guard on its size."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if torch.jit.is_scripting() or not exporting():
        return x.contiguous(memory_format=layout)
    return torch.empty_like(x, memory_format=layout).copy_(x)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``, one of them a matrix and the other a stack of planes: ``torch.matmul``, or
    while exporting one ``bmm`` over the planes, the matrix expanded (not copied). matmul merges
    dims with reshapes whose size guards (is the map one row high?) ``torch.export`` cannot
    prove over a bounded ``Dim`` of the image size, and so refuses the export; the bmm merges
    only the batch and channel dims."""
    if torch.jit.is_scripting() or not exporting():
        return torch.matmul(a, b)
    if a.dim() == 2:
        planes = b.flatten(0, -3)
        return torch.bmm(a.expand(planes.shape[0], -1, -1), planes).unflatten(0, b.shape[:-2])
    planes = a.flatten(0, -3)
    return torch.bmm(planes, b.expand(planes.shape[0], -1, -1)).unflatten(0, a.shape[:-2])


@torch.jit.unused
def _autocasting(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (never for one it does not know: meta)."""
    return device_type in AUTOCAST_DEVICES and torch.is_autocast_enabled(device_type)


@torch.jit.unused
def _blur_products_without_autocast(
    x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, channels_last: bool
) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return _blur_products(x, rows, cols, channels_last)


def blur_pool2d_input_gradient(
    grad: torch.Tensor,
    size: tuple[int, int],
    channels_last: bool,
    taps: torch.Tensor,
    stride: int,
    padding: str,
    pad_off: int,
) -> torch.Tensor:
    """The gradient of blur-pool (no ReLU) for an input of ``size`` (H, W), given the output
    gradient ``grad``: the transposed products ``A_h^T @ grad @ A_w``, which autograd and vmap
    see through, for a gradient of the gradient or a batched one (blur-pool is linear, so this
    needs nothing of the input, and its own gradient is blur-pool again). In ``grad``'s dtype
    (computed as the forward computes), laid out as the input was (``channels_last``)."""
    rows, cols = _blur_matrices(size[0], size[1], taps, stride, padding, pad_off, grad)
    dx = _matmul(rows.t(), _matmul(grad.to(rows.dtype), cols)).to(grad.dtype)
    if channels_last and not batched(grad):
        return dx.contiguous(memory_format=torch.channels_last)
    return dx


def max_blur_pool2d_reference(
    x: torch.Tensor, taps: torch.Tensor, stride: int, padding: str, max_kernel: int
) -> torch.Tensor:
    """MaxBlurPool of spec §3: dense ``max_kernel`` max at stride 1, unpadded, then blur-pool.

    A half-precision input is taken to float32 first (the max is exact in either), so that
    the backward too sums each input's window gradients in float32 and rounds once."""
    dtype = x.dtype
    channels_last = _output_channels_last(x)
    if max_kernel > 1:
        # (laid out as x decides: the max of a channel slice of a channels_last map is dense)
        x = _in_layout(_dense_max2d(x.to(compute_dtype(dtype)), max_kernel), channels_last)
        # A 1x1 max map counts as NCHW (kernels.layout). An export keeps x's layout: asking
        # would guard on the max map's size, and a 1x1 output is contiguous in both formats.
        if channels_last and (torch.jit.is_scripting() or not exporting()):
            channels_last = not x.is_contiguous()
    return _blur_pool2d(x, taps, stride, padding, 0, False, channels_last).to(dtype)


def _dense_max2d(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """``max_pool2d(x, kernel, 1)`` as the max of shifted slices, with its own backward.

    Bit-identical to PyTorch's max-pool and several times faster on CPU in both layouts (its
    stride-1 max-pool is not vectorised for this case). Graphs being scripted, traced,
    exported or compiled record the plain op (``torch.compile`` cannot capture the backward's
    writes into slices, and makes its own kernel of the plain op), and so do calls under
    ``torch.func`` transforms and forward-mode AD, which only PyTorch's own ops support.
    """
    if building_graph() or compiling() or transforms_active():
        return F.max_pool2d(x, kernel, 1)
    return _slice_max2d(x, kernel)


@torch.jit.unused
def _slice_max2d(x: torch.Tensor, kernel: int) -> torch.Tensor:
    return _DenseMax2d.apply(x, kernel)


class _DenseMax2d(torch.autograd.Function):
    """Max over every ``kernel x kernel`` window at stride 1, taken one axis at a time.

    The backward recomputes which element won each window from the saved input (cheap next to
    keeping masks alive between forward and backward) and routes the gradient there, with 0/1
    masks in multiply-adds: an infinite incoming gradient leaves NaN, not 0, at the window's
    other entries (0 * inf), which a gradient scaler skips as it skips the inf. A channels_last
    input takes ``max_pool2d``'s own backward on its indices instead (the masks' passes over
    (N, H, W, C) cost about twice as much; in NCHW they cost less than ``max_pool2d``'s indices
    alone). Where a graph of the gradient is being built, or the gradient is batched
    (:func:`backward_in_plain_ops`), it routes by ``max_pool2d``'s indices in a scatter, which
    autograd and vmap see through.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kernel = kernel
        return _window_max(_window_max(x, kernel, dim=3), kernel, dim=2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        kernel = ctx.kernel
        if backward_in_plain_ops(grad):  # max_pool2d's routing, as a scatter autograd sees
            _, winners = F.max_pool2d(x, kernel, 1, return_indices=True)
            n, c, h, w = x.shape
            routed = grad.reshape(n, c, -1)  # (flatten is a view legacy vmap cannot batch)
            dx = grad.new_zeros((n, c, h * w)).scatter_add(2, winners.reshape(n, c, -1), routed)
            dx = dx.reshape(n, c, h, w)
            return (dx if batched(grad) else dx.contiguous(memory_format=memory_format_of(x))), None
        if keeps_channels_last(x):
            _, winners = F.max_pool2d(x, kernel, 1, return_indices=True)
            return torch.ops.aten.max_pool2d_with_indices_backward(
                grad, x, [kernel, kernel], [1, 1], [0, 0], [1, 1], False, winners
            ), None
        row_max = _window_max(x, kernel, dim=3)
        # Fresh pages cost as much as the arithmetic on them: the masks of both stages share
        # buffers, and row_max, spent once its masks are known, takes the row gradient.
        masks = [torch.empty_like(row_max) for _ in range(kernel - 1)]
        col_steps = _winner_steps(row_max, kernel, dim=2, out=masks)
        grad_row_max = _route_to_winner(grad, col_steps, dim=2, out=row_max)
        row_steps = _winner_steps(x, kernel, dim=3, out=masks)
        return _route_to_winner(grad_row_max, row_steps, dim=3, out=torch.empty_like(x)), None


def _window_max(x: torch.Tensor, kernel: int, dim: int) -> torch.Tensor:
    """Max over ``kernel`` consecutive entries along ``dim``, at stride 1."""
    length = x.shape[dim] - kernel + 1
    best = x.narrow(dim, 0, length)
    for offset in range(1, kernel):
        best = torch.maximum(best, x.narrow(dim, offset, length))
    return best


def _winner_steps(
    x: torch.Tensor, kernel: int, dim: int, out: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Where each offset of a ``_window_max`` window beats all earlier ones, as 0/1 masks.

    ``steps[d - 1]`` is 1 where the entry at offset ``d`` is strictly greater than every
    earlier one or is NaN, so a window's winner is its last marked offset (0 if none): the
    last NaN if it holds one, else the first maximum, where ``torch.max_pool2d``'s scan ends.
    Taking the winning row of the per-row winners (a row's maximum is NaN if it holds one)
    gives that element of the 2-D window in row-major order. The masks have the dtype of
    ``x``, so that the backward's multiply-adds need no conversion, and are written into the
    leading part of ``out``.
    """
    length = x.shape[dim] - kernel + 1
    best = x.narrow(dim, 0, length)
    steps = []
    for offset in range(1, kernel):
        candidate = x.narrow(dim, offset, length)
        step = out[offset - 1].narrow(dim, 0, length)
        steps.append(torch.logical_or(torch.gt(candidate, best), candidate.isnan(), out=step))
        if offset < kernel - 1:
            best = torch.maximum(best, candidate)
    return steps


def _route_to_winner(
    grad: torch.Tensor, steps: list[torch.Tensor], dim: int, out: torch.Tensor
) -> torch.Tensor:
    """Gradient wrt the input of ``_window_max``, written into ``out``: each window's gradient
    goes to its winner.

    Offsets are visited from the last: offset ``d`` takes the gradient its step marks among
    what later offsets left unclaimed, and offset 0 takes the rest, written straight into place
    so that no full-size zero fill is needed.
    """
    length = grad.shape[dim]
    unclaimed = [grad]
    for step in steps[:0:-1]:
        unclaimed.append(torch.addcmul(unclaimed[-1], unclaimed[-1], step, value=-1))
    first = out.narrow(dim, 0, length)
    torch.addcmul(unclaimed[-1], unclaimed[-1], steps[0], value=-1, out=first)
    out.narrow(dim, length, len(steps)).zero_()
    for offset, step, left in zip(range(len(steps), 0, -1), steps[::-1], unclaimed, strict=True):
        out.narrow(dim, offset, length).addcmul_(left, step)
    return out
