"""The fused Triton ops against the reference ops (kernels.reference), forward and backward.

Runs under the Triton interpreter on CPU (tiny shapes) and, where CUDA is present, on the GPU.
Every launch writes into an output buffer filled with NaN beforehand, so an element the kernel
forgets to write fails the comparison; each buffer lies inside a larger one whose margins must
stay as they were, so a write past either end fails too (on a GPU it would corrupt memory or
fault). Inputs come in three layouts: NCHW, channels_last and a strided view that is neither,
each inside NaN margins, so an unmasked read past the input shows as NaN in the output.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch._dynamo.testing import CompileCounterWithBackend
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._python_dispatch import TorchDispatchMode

from kernels import (
    BlurPool2d,
    MaxBlurPool2d,
    blur_pool2d,
    functional,
    hardware,
    max_blur_pool2d,
    tuning,
)
from kernels.filters import make_taps
from kernels.layout import keeps_channels_last
from kernels.ops import blur_pool, common, max_blur_pool, streamed_backward, streamed_forward
from kernels.ops.blur_pool import blur_pool2d_backward, blur_pool2d_forward, blur_pool2d_triton
from kernels.ops.max_blur_pool import (
    max_blur_pool2d_backward,
    max_blur_pool2d_forward,
    max_blur_pool2d_triton,
)
from kernels.options import MAX_CODED_KERNEL, MAX_FUSED_TAPS, PADDING_MODES
from kernels.reference import blur_matrix, blur_pool2d_reference, max_blur_pool2d_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float64: 1e-10}
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what the cases rotate through
LAYOUTS = ("nchw", "channels_last", "strided")


def layout_and_dtype(index: int) -> tuple[str, torch.dtype]:
    """The input kind of a grid's `index`-th case: every (layout, dtype) pair once in nine
    indices. Rotating both with the index alone had tied each dtype to one layout (fp16 ran
    only channels_last)."""
    return LAYOUTS[index % len(LAYOUTS)], KERNEL_DTYPES[index // len(LAYOUTS) % len(KERNEL_DTYPES)]
MARGIN = 64  # elements of a guarded buffer either side of the tensor


# ----------------------------------------------------------------------------- helpers


def guarded(like: torch.Tensor) -> torch.Tensor:
    """A tensor with ``like``'s shape, strides, dtype and device inside a larger buffer, all of
    it poisoned (NaN, or 0xA5 for bytes): its ``MARGIN`` elements either side must stay so
    (:func:`assert_margins_kept`)."""
    fill = math.nan if like.is_floating_point() else 0xA5
    size = common.element_extent(like) + 2 * MARGIN
    buffer = torch.full((size,), fill, dtype=like.dtype, device=like.device)
    return buffer.as_strided(like.shape, like.stride(), MARGIN)


def assert_margins_kept(t: torch.Tensor) -> None:
    """Nothing was written into the margins of a :func:`guarded` tensor."""
    buffer = t._base
    assert buffer is not None and t.storage_offset() == MARGIN
    margins = torch.cat([buffer[:MARGIN], buffer[MARGIN + common.element_extent(t) :]])
    kept = margins.isnan() if t.is_floating_point() else margins == 0xA5
    assert kept.all(), f"{int((~kept).sum())} elements written past the ends of {tuple(t.shape)}"


def make_input(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    layout: str,
    seed: int,
    *,
    ties: bool = False,
) -> torch.Tensor:
    """A random input in ``layout`` (:func:`guarded`: NaN around it, and in the columns a
    strided input skips); ``ties`` draws small integers so max windows tie often."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    if ties:
        x = x.mul(1.5).round()
    x = x.to(device=DEVICE, dtype=dtype)
    if layout == "strided":  # every other column of a (N, H, C, 2W) tensor: neither format
        n, c, h, w = shape
        like = torch.empty(n, h, c, 2 * w, dtype=dtype, device=DEVICE).permute(0, 2, 1, 3)
        like = like[..., ::2]
    else:
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        like = x.contiguous(memory_format=fmt)
    return guarded(like).copy_(x)


def poisoned(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A :func:`guarded` output buffer in the memory format the op must produce for ``like``."""
    return guarded(common.empty_output(like, shape))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), atol=tol, rtol=tol)


def assert_layout_kept(out: torch.Tensor, x: torch.Tensor) -> None:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)


def packed_relu_mask(x: torch.Tensor) -> torch.Tensor:
    """``not x <= 0`` (``torch.relu``'s gradient mask: NaN passes) packed eight bits to a byte
    as ``relu_mask_buffer`` lays it out, the bits past the last channel or column zero."""
    bits = (~(x <= 0)).to(torch.uint8)
    weights = 2 ** torch.arange(8, device=x.device, dtype=torch.uint8)
    n, c, h, w = x.shape
    if keeps_channels_last(x):
        bits = torch.cat([bits, bits.new_zeros(n, -c % 8, h, w)], dim=1)
        return (bits.view(n, -1, 8, h, w) * weights[:, None, None]).sum(2, dtype=torch.uint8)
    bits = torch.cat([bits, bits.new_zeros(n, c, h, -w % 8)], dim=3)
    return (bits.view(n, c, h, -1, 8) * weights).sum(4, dtype=torch.uint8)


def taps_tensor(taps: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(taps, dtype=torch.float64)


def reference_and_grads(fn, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """Reference output, an upstream gradient (in ``x``'s dtype) and the reference's input
    gradient, the reference run in float64 on ``x``'s values: the kernels sum in float32 and
    round once, where a half-precision reference rounds at each sum of its backward (a max
    input that wins nine windows was two half-precision steps off)."""
    x_ref = x.detach().double().requires_grad_(True)
    out = fn(x_ref)
    gen = torch.Generator().manual_seed(seed + 1)
    grad = torch.randn(out.shape, generator=gen).to(device=x.device, dtype=x.dtype)
    (dx,) = torch.autograd.grad(out, x_ref, grad.double())
    return out.detach(), grad, dx


def check_blur_pool(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
    seed: int = 0,
    config: dict[str, int] | None = None,
) -> None:
    """Forward and backward launchers (into poisoned buffers) against the reference."""
    expected, grad, expected_dx = reference_and_grads(
        lambda t: blur_pool2d_reference(t, taps_tensor(taps), stride, padding, pad_off, relu),
        x,
        seed,
    )
    mask = guarded(blur_pool.relu_mask_buffer(x)) if relu else None
    y = blur_pool2d_forward(
        x, taps, stride, padding, pad_off, relu, mask=mask, config=config,
        out=poisoned(x, tuple(expected.shape)),
    )  # fmt: skip
    assert_close(y, expected, x.dtype)
    assert_layout_kept(y, x)
    assert_margins_kept(y)
    if relu:
        assert torch.equal(mask, packed_relu_mask(x))
        assert_layout_kept(mask, x)
        assert_margins_kept(mask)
    dx = blur_pool2d_backward(
        grad, tuple(x.shape[2:]), taps, stride, padding, pad_off, mask=mask,
        channels_last=keeps_channels_last(x), config=config,
        out=poisoned(x, tuple(x.shape)),
    )  # fmt: skip
    assert_close(dx, expected_dx, x.dtype)
    assert_layout_kept(dx, x)
    assert_margins_kept(dx)


def check_max_blur_pool(
    x: torch.Tensor,
    taps: tuple[float, ...],
    stride: int,
    padding: str,
    max_kernel: int,
    seed: int = 0,
    config: dict[str, int] | None = None,
) -> None:
    """Forward and backward launchers (into poisoned buffers) against the reference."""
    expected, grad, expected_dx = reference_and_grads(
        lambda t: max_blur_pool2d_reference(t, taps_tensor(taps), stride, padding, max_kernel),
        x,
        seed,
    )
    y = max_blur_pool2d_forward(
        x, taps, stride, padding, max_kernel, config=config,
        out=poisoned(x, tuple(expected.shape)),
    )  # fmt: skip
    assert_close(y, expected, x.dtype)
    assert_layout_kept(y, x)
    assert_margins_kept(y)
    codes = guarded(max_blur_pool.max_codes_buffer(x, max_kernel))
    y_with_codes = max_blur_pool2d_forward(
        x, taps, stride, padding, max_kernel, codes=codes, config=config,
        out=poisoned(x, tuple(y.shape)),
    )  # fmt: skip
    assert torch.equal(y_with_codes, y)
    assert_margins_kept(y_with_codes)
    assert_margins_kept(codes)
    dx = max_blur_pool2d_backward(
        grad, codes, taps, stride, padding, max_kernel, config=config,
        out=poisoned(x, tuple(x.shape)),
    )  # fmt: skip
    assert_close(dx, expected_dx, x.dtype)
    assert_layout_kept(dx, x)
    assert_margins_kept(dx)


def binomial(size: int) -> tuple[float, ...]:
    return tuple(make_taps(size).tolist())


def skewed(size: int, seed: int) -> tuple[float, ...]:
    """Asymmetric custom taps, so a flipped filter or a swapped axis shows."""
    raw = torch.rand(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return tuple((raw + 0.1).div((raw + 0.1).sum()).tolist())


# ----------------------------------------------------------------------------- grid

# (shape, taps, stride, pad_off, relu): paper sizes, maps smaller than the pad (2x2 with 7
# taps), size 1 (plain subsampling), 15 taps at stride 4, odd and non-square maps.
BLUR_CASES = [
    ((2, 3, 6, 7), binomial(4), 2, 0, False),
    ((1, 5, 5, 4), skewed(3, 1), 1, 1, True),
    ((2, 2, 2, 2), skewed(7, 2), 2, 0, False),
    ((1, 3, 5, 3), binomial(1), 2, 0, False),
    ((1, 2, 9, 6), skewed(15, 3), 4, 2, True),
]


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("case", range(len(BLUR_CASES)))
def test_blur_pool_matches_reference(case: int, padding: str) -> None:
    shape, taps, stride, pad_off, relu = BLUR_CASES[case]
    index = case + PADDING_MODES.index(padding)
    layout, dtype = layout_and_dtype(index)
    x = make_input(shape, dtype, layout, seed=index)
    check_blur_pool(x, taps, stride, padding, pad_off, relu, seed=index)


# (shape, taps, stride, max_kernel, ties)
MAX_BLUR_CASES = [
    ((2, 3, 6, 7), binomial(4), 2, 2, True),
    ((1, 2, 6, 5), skewed(3, 4), 1, 3, True),
    ((1, 3, 3, 3), skewed(5, 5), 2, 2, False),
    ((2, 2, 7, 3), binomial(1), 3, 2, True),
]


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("case", range(len(MAX_BLUR_CASES)))
def test_max_blur_pool_matches_reference(case: int, padding: str) -> None:
    shape, taps, stride, max_kernel, ties = MAX_BLUR_CASES[case]
    index = case + PADDING_MODES.index(padding)
    layout, dtype = layout_and_dtype(index)
    x = make_input(shape, dtype, layout, seed=index, ties=ties)
    check_max_blur_pool(x, taps, stride, padding, max_kernel, seed=index)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    op=st.sampled_from(["blur", "max_blur"]),
    n=st.integers(1, 2),
    c=st.integers(1, 5),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    size=st.integers(1, 9),
    stride=st.integers(1, 4),
    padding=st.sampled_from(PADDING_MODES),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(KERNEL_DTYPES),
    seed=st.integers(0, 2**16),
)
def test_drawn_design_points_match_reference(
    data, op, n, c, h, w, size, stride, padding, layout, dtype, seed
) -> None:
    taps = data.draw(st.sampled_from([binomial(size), skewed(size, seed)]), label="taps")
    if op == "blur":
        pad_off = data.draw(st.integers(0, 2), label="pad_off")
        relu = data.draw(st.booleans(), label="relu")
        x = make_input((n, c, h, w), dtype, layout, seed)
        check_blur_pool(x, taps, stride, padding, pad_off, relu, seed=seed)
    else:
        max_kernel = data.draw(st.sampled_from([2, 3]), label="max_kernel")
        shape = (n, c, max(h, max_kernel), max(w, max_kernel))
        x = make_input(shape, dtype, layout, seed, ties=data.draw(st.booleans(), label="ties"))
        check_max_blur_pool(x, taps, stride, padding, max_kernel, seed=seed)


# ----------------------------------------------------------------------------- launch paths


@pytest.mark.parametrize("max_kernel", [2, 3])
def test_max_routing_follows_torch_with_nan_and_ties(max_kernel: int) -> None:
    """Windows holding one NaN, two NaNs and tied maxima send their gradient to the element
    ``torch.max_pool2d`` picks: the last NaN, else the first maximum."""
    x = make_input((1, 2, 7, 8), torch.float32, "nchw", seed=3, ties=True)
    x[0, 0, 1, 1] = x[0, 0, 4, 4] = x[0, 0, 4, 5] = x[0, 1, 5, 2] = x[0, 1, 6, 2] = math.nan
    taps = skewed(3, 9)
    _, grad, expected = reference_and_grads(
        lambda t: max_blur_pool2d_reference(t, taps_tensor(taps), 2, "reflect", max_kernel),
        x,
        seed=3,
    )
    codes = guarded(max_blur_pool.max_codes_buffer(x, max_kernel))
    max_blur_pool2d_forward(x, taps, 2, "reflect", max_kernel, codes=codes)
    assert_margins_kept(codes)
    dx = max_blur_pool2d_backward(grad, codes, taps, 2, "reflect", max_kernel,
                                  out=poisoned(x, tuple(x.shape)))  # fmt: skip
    assert_close(dx, expected, x.dtype)
    assert_margins_kept(dx)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fused_relu_passes_the_gradient_at_nan_as_torch_relu(layout: str) -> None:
    """``torch.relu``'s backward passes the gradient wherever its output is not <= 0, NaN too."""
    x = make_input((1, 9, 5, 6), torch.float32, layout, seed=4)
    x[0, 0, 2, 2] = x[0, 8, 4, 1] = math.nan
    grads = []
    for backend in ("torch", "triton"):
        leaf = x.detach().clone().requires_grad_(True)
        out = blur_pool2d(leaf, 3, 1, "zeros", relu=True, backend=backend)
        out.backward(torch.ones_like(out))
        grads.append(leaf.grad)
    assert grads[0][0, 0, 2, 2] > 0 and grads[0][0, 8, 4, 1] > 0
    assert_close(grads[1], grads[0], x.dtype)


def test_many_tiles_and_channel_blocks() -> None:
    """Small explicit tiles: a map spans many tiles in H and W, channels several blocks.

    The backward's tiles then take both of its paths: the taps themselves inside the map's
    plain rows, per-row weights near its top and bottom.
    """
    config = {"BLOCK_H": 2, "BLOCK_W": 4, "BLOCK_C": 2, "num_warps": 1, "num_stages": 1}
    first, last = streamed_backward.plain_rows(12, binomial(4), 2, 0, "reflect")
    assert first > 0 and last - first >= 4 and last < 11  # interior and edge tiles both
    x = make_input((1, 3, 12, 16), torch.float32, "channels_last", seed=7)
    check_blur_pool(x, binomial(4), 2, "reflect", 0, True, config=config)
    x = make_input((1, 3, 5, 9), torch.float32, "nchw", seed=8, ties=True)
    check_max_blur_pool(x, binomial(4), 2, "circular", 2, config=config)


@pytest.mark.parametrize("max_kernel", [1, 2], ids=["blur", "max_blur"])
@pytest.mark.parametrize("padding", PADDING_MODES)
def test_forward_pads_on_registers_where_outputs_read_their_sources(
    padding: str, max_kernel: int
) -> None:
    """The streamed forward pads on registers where every padded row and column an output
    reads repeats one it reads anyway (any padding but circular, on maps wider than the
    filter); circular reads through the map instead. Small tiles put programs on every path.
    Infinities at the edges, against pad + conv (the reference's dense matrices would spread
    them as NaNs): no padded tap weighs one by zero. Blur-pool's runs through its ReLU."""
    taps, stride = skewed(5, 11), 2
    layout = LAYOUTS[PADDING_MODES.index(padding) % len(LAYOUTS)]
    x = make_input((1, 3, 9, 12), torch.float32, layout, seed=11, ties=True)
    before = (len(taps) - 1) // 2
    local = [streamed_forward.reads_own(size, outputs, stride, before, 5, padding)
             for size, outputs in ((8, 4), (11, 6))]  # fmt: skip
    assert local == [padding != "circular"] * 2
    config = {"BLOCK_H": 2, "BLOCK_W": 2, "BLOCK_C": 2, "num_warps": 1, "num_stages": 1}
    if max_kernel == 1:
        check_blur_pool(x, taps, stride, padding, 0, True, config=config)
    else:
        check_max_blur_pool(x, taps, stride, padding, max_kernel, seed=11, config=config)

    x[0, 0, 0, 1] = x[0, 1, 8, 11] = math.inf
    x[0, 2, 6, 0] = -math.inf if max_kernel > 1 else -2.0
    # The pad + conv in float64: a float32 conv on CUDA may run on TF32 (cuDNN's default for
    # convolutions, taken for a channels_last depthwise one), ~1e-3 off the filter's weights.
    row = torch.tensor(taps, dtype=torch.float64, device=x.device)
    weight = torch.outer(row, row).expand(3, 1, -1, -1)
    mode = "constant" if padding == "zeros" else padding
    dense = torch.nn.functional.max_pool2d(x, max_kernel, 1) if max_kernel > 1 else x.relu()
    dense = dense.double()
    padded = torch.nn.functional.pad(dense, (before, before) * 2, mode=mode)
    expected = torch.nn.functional.conv2d(padded, weight, stride=stride, groups=3)
    out = poisoned(x, tuple(expected.shape))
    if max_kernel > 1:
        y = max_blur_pool2d_forward(x, taps, stride, padding, max_kernel, config=config, out=out)
    else:
        y = blur_pool2d_forward(x, taps, stride, padding, 0, True, config=config, out=out)
    assert y.isinf().any()
    assert_close(y, expected, x.dtype)
    assert_margins_kept(y)


@pytest.mark.parametrize("size", [4, 7])
def test_gpu_heuristic_for_small_nchw_maps(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """The launches the GPU heuristic gives small NCHW maps (whole maps of several planes per
    program) compute every output, ReLU mask bit and gradient."""
    monkeypatch.setattr(hardware, "device_name", lambda: "NVIDIA H100 80GB HBM3")
    x = make_input((2, 12, size, size), torch.float32, "nchw", seed=size, ties=True)
    for op in tuning.OPS:
        key = tuning.tuning_key(x, 4, 2, max_kernel=2 if op.startswith("max") else 0)
        config = tuning.launch_config(op, key)
        assert config["BLOCK_C"] > 1 and config["BLOCK_H"] == tuning.whole_map_tile(op, key)
    check_blur_pool(x, binomial(4), 2, "reflect", 0, True)
    check_max_blur_pool(x, binomial(4), 2, "zeros", 2)


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("size_stride", [(3, 2), (4, 2), (6, 3)])
def test_interior_tiles_match_reference(padding: str, size_stride: tuple[int, int]) -> None:
    """Maps many small tiles wide, so the backward's plain paths (blur-pool's phase filter,
    MaxBlurPool's filter with each position's own taps and unmasked codes) run beside their
    table paths."""
    size, stride = size_stride
    index = PADDING_MODES.index(padding) + size
    config = {"BLOCK_H": 4, "BLOCK_W": 4, "BLOCK_C": 2, "num_warps": 1, "num_stages": 1}
    layout, dtype = layout_and_dtype(index)
    x = make_input((1, 3, 13, 18), dtype, layout, seed=index)
    check_blur_pool(x, skewed(size, index), stride, padding, index % 2, index % 3 == 0,
                    seed=index, config=config)  # fmt: skip
    x = make_input((1, 3, 9, 14), dtype, layout, seed=index, ties=True)
    check_max_blur_pool(x, skewed(size, index), stride, padding, 2, seed=index, config=config)


def inside_forward_tiles(size: int, taps: int, stride: int, before: int, block: int) -> int:
    """How many output tiles of ``block`` along an axis of ``size`` read only inside the map
    (the forward kernels' unchecked path), written out from the spec's padding."""
    out_size = (size + taps - 1 + 0 - taps) // stride + 1  # pads sum to taps - 1 at pad_off 0
    starts = range(0, out_size, block)
    return sum(r0 * stride >= before and (r0 + block - 1) * stride - before + taps <= size
               for r0 in starts)  # fmt: skip


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("taps_stride", [(3, 2), (4, 2), (5, 3)])
def test_forward_interior_tiles_match_reference(padding: str, taps_stride: tuple[int, int]) -> None:
    """Output tiles two wide (MaxBlurPool: 2×2 and 3×3 max windows): most of a map's tiles
    read only inside it and take the forward's unchecked path (no padding arithmetic, no
    masks), beside tiles at its edges (blur-pool: padding along H only, the path that checks
    rows alone; along W, both checked). MaxBlurPool's backward runs with its default config:
    it checks the forward's codes."""
    size, stride = taps_stride
    index = PADDING_MODES.index(padding) + size
    config = {"BLOCK_H": 2, "BLOCK_W": 2, "BLOCK_C": 2, "num_warps": 1, "num_stages": 1}
    assert inside_forward_tiles(15, size, stride, (size - 1) // 2, 2) >= 1
    layout, dtype = layout_and_dtype(index)
    x = make_input((1, 4, 15, 17), dtype, layout, seed=index)
    taps, relu = skewed(size, index), index % 2 == 0
    expected = blur_pool2d_reference(x, taps_tensor(taps), stride, padding, 0, relu)
    mask = guarded(blur_pool.relu_mask_buffer(x)) if relu else None
    y = blur_pool2d_forward(x, taps, stride, padding, 0, relu, mask=mask, config=config,
                            out=poisoned(x, tuple(expected.shape)))  # fmt: skip
    assert_close(y, expected, x.dtype)
    assert_margins_kept(y)
    if relu:
        assert torch.equal(mask, packed_relu_mask(x))
        assert_margins_kept(mask)

    x = make_input((1, 4, 16, 18), x.dtype, LAYOUTS[(index + 1) % len(LAYOUTS)], seed=index,
                   ties=True)  # fmt: skip
    max_kernel = 2 + index % 2
    expected, grad, expected_dx = reference_and_grads(
        lambda t: max_blur_pool2d_reference(t, taps_tensor(taps), stride, padding, max_kernel),
        x,
        index,
    )
    codes = guarded(max_blur_pool.max_codes_buffer(x, max_kernel))
    y = max_blur_pool2d_forward(x, taps, stride, padding, max_kernel, codes=codes, config=config,
                                out=poisoned(x, tuple(expected.shape)))  # fmt: skip
    assert_close(y, expected, x.dtype)
    assert_margins_kept(y)
    assert_margins_kept(codes)
    dx = max_blur_pool2d_backward(grad, codes, taps, stride, padding, max_kernel,
                                  out=poisoned(x, tuple(x.shape)))  # fmt: skip
    assert_close(dx, expected_dx, x.dtype)
    assert_margins_kept(dx)


@pytest.mark.parametrize("padding", PADDING_MODES)
def test_backward_tables_are_the_blur_matrix(padding: str) -> None:
    """The backward weighs output ``o`` at map column ``b`` and row ``a`` by the blur matrix's
    entry (o, b) and (o, a): each input column's routes (MaxBlurPool: windows ``x - v``), each
    row's band and extra rows, through every padding and pad offset; inside the plain rows the
    band holds the taps themselves and every output it weighs exists."""
    cpu = torch.device("cpu")
    for size, taps, stride, pad_off, max_kernel in [
        (16, skewed(4, 3), 2, 0, 2), (13, skewed(7, 4), 2, 1, 3), (11, skewed(5, 5), 3, 0, 2),
        (3, skewed(7, 6), 2, 0, 2), (2, skewed(7, 0), 1, 0, 1), (5, skewed(4, 1), 2, 1, 1),
        (14, skewed(5, 2), 2, 1, 1),
    ]:  # fmt: skip
        matrix = blur_matrix(size, taps_tensor(taps), stride, padding, pad_off)
        src, wt = streamed_backward.column_routes(size, taps, stride, pad_off, padding,
                                                  max_kernel, torch.float64, cpu)  # fmt: skip
        wt = wt.view(max_kernel, src.shape[0], -1)
        for x in range(size + max_kernel - 1):
            for v in range(max_kernel):
                column = torch.zeros(matrix.shape[0], dtype=torch.float64)
                for s in range(src.shape[0]):
                    if src[s, x] >= 0:
                        column[src[s, x]] += wt[v, s, x]
                expected = matrix[:, x - v] if 0 <= x - v < size else torch.zeros_like(column)
                torch.testing.assert_close(column, expected, atol=1e-12, rtol=0)

        band, extra_src, extra_wt, extra = streamed_backward.row_weights(
            size, taps, stride, pad_off, padding
        )
        first, last = streamed_backward.plain_rows(size, taps, stride, pad_off, padding)
        before = (len(taps) - 1) // 2 + pad_off  # spec §2, written out
        if padding in ("zeros", "replicate") and size > len(taps) + pad_off:
            assert extra == 0  # their padded taps land on rows the band weighs anyway
        for a in range(size):
            column = torch.zeros(matrix.shape[0], dtype=torch.float64)
            for q in range(band.shape[1]):
                if band[a, q] != 0:
                    column[(a + before) // stride - q] += band[a, q]
            for e in range(extra):
                if extra_src[a, e] >= 0:
                    column[extra_src[a, e]] += extra_wt[a, e]
            torch.testing.assert_close(column, matrix[:, a], atol=1e-12, rtol=0)
            if first <= a <= last:
                assert not (extra_src[a] >= 0).any()
                for q in range(band.shape[1]):
                    tap = (a + before) % stride + q * stride
                    weight = taps[tap] if tap < len(taps) else 0.0
                    assert float(band[a, q]) == weight
                    # every band row is loaded unchecked, a zero slot's too
                    assert 0 <= (a + before) // stride - q < matrix.shape[0]
        if size > 2 * (len(taps) + pad_off):
            assert last - first >= size - 2 * (len(taps) + pad_off)


@pytest.mark.parametrize("padding", PADDING_MODES)
def test_backward_plain_and_edge_rows(padding: str) -> None:
    """Programs two rows tall down a tall map: those inside the plain rows weigh their rows
    with the taps and check nothing along H, those near the top and bottom read their rows'
    weights (and, circular, extra rows); blur-pool's after the fused ReLU, MaxBlurPool's with
    2×2 and 3×3 max windows."""
    taps, stride = skewed(4, 13), 2
    first, last = streamed_backward.plain_rows(19, taps, stride, 0, padding)
    assert last - first >= 10  # the first program, its rows from -1 on, is never plain
    config = {"BLOCK_H": 2, "BLOCK_W": 8, "BLOCK_C": 2, "num_warps": 1, "num_stages": 1}
    x = make_input((1, 2, 19, 5), torch.float32, LAYOUTS[PADDING_MODES.index(padding) % 3],
                   seed=13)  # fmt: skip
    check_blur_pool(x, taps, stride, padding, 1, True, seed=13, config=config)
    for max_kernel in (2, 3):
        layout = LAYOUTS[(PADDING_MODES.index(padding) + max_kernel) % len(LAYOUTS)]
        x = make_input((1, 2, 18 + max_kernel, 5), torch.float32, layout, seed=13, ties=True)
        check_max_blur_pool(x, taps, stride, padding, max_kernel, seed=13, config=config)


@pytest.fixture
def fresh_plans():
    """Launches planned before a test (which may patch what planning reads) are forgotten
    before and after it."""
    tuning.clear_cache()
    yield
    tuning.clear_cache()


def test_64_bit_offsets_give_the_same_result(monkeypatch: pytest.MonkeyPatch, fresh_plans) -> None:
    """The int64 indexing path (taken for tensors of >= 2**31 elements) on a small tensor."""
    monkeypatch.setattr(streamed_forward, "needs_int64", lambda *tensors: True)
    monkeypatch.setattr(streamed_backward, "needs_int64", lambda *tensors: True)
    x = make_input((1, 2, 5, 6), torch.float32, "channels_last", seed=9)
    check_blur_pool(x, binomial(4), 2, "zeros", 1, False)
    check_max_blur_pool(x, binomial(3), 2, "replicate", 2)
    # A map many tiles wide: the backward's plain paths too.
    config = {"BLOCK_H": 4, "BLOCK_W": 4, "BLOCK_C": 2, "num_warps": 1, "num_stages": 1}
    x = make_input((1, 3, 13, 18), torch.float32, "nchw", seed=10)
    check_blur_pool(x, binomial(3), 2, "reflect", 0, True, config=config)


def test_needs_int64_counts_elements_and_strided_extent() -> None:
    assert not common.needs_int64(torch.empty(0), torch.empty(2, 3))
    assert common.needs_int64(torch.empty(2, 3), torch.empty(2**31, device="meta"))
    wide = torch.empty_strided((2, 2), (2**31, 1), device="meta")  # far through a stride
    assert common.needs_int64(wide)
    assert not common.needs_int64(torch.empty_strided((2, 2), (2**30, 1), device="meta"))


def test_64_bit_offsets_of_a_stride_times_a_tap(fresh_plans) -> None:
    """A W stride of 2**30 (x spans over 2**31 elements: the int64 path) times the third tap's
    column is 2**31, which int32 wraps: outputs read a column 4 GiB away. The strides lie in
    an anonymous mapping of which only the few pages read are ever backed."""
    if DEVICE != "cpu":
        pytest.skip("the interpreter reads the mapping on the host")
    import mmap

    stride_w = 2**30
    # The storage reaches far enough back that the wrapped reads land in the mapping too.
    start = 3 * stride_w
    elements = start + 2 * stride_w + 1
    try:
        mapping = mmap.mmap(-1, 2 * elements)
    except (OSError, OverflowError, ValueError) as error:
        pytest.skip(f"no {2 * elements} bytes of address space: {error}")
    buffer = torch.frombuffer(mapping, dtype=torch.float16)
    x = buffer.as_strided((1, 1, 1, 3), (3 * stride_w,) * 3 + (stride_w,), start)
    x.copy_(torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 1, 3))
    assert common.needs_int64(x)
    taps = binomial(3)
    y = blur_pool2d_forward(x, taps, 1, "zeros", 0, False)
    expected = blur_pool2d_reference(x.clone(), torch.tensor(taps, dtype=torch.float64), 1,
                                     "zeros", 0, False)  # fmt: skip
    torch.testing.assert_close(y, expected)
    del x, buffer
    mapping.close()


def test_launches_past_the_grid_limit_are_refused(fresh_plans) -> None:
    """2**31 images of a 2 × 2 map take one program each: one more than a launch's grid holds.
    Planned on expanded tensors, nothing allocated or launched."""
    x = torch.zeros(1, 1, 2, 2, device=DEVICE).expand(2**31, 1, 2, 2)
    y = torch.zeros(1, 1, 1, 1, device=DEVICE).expand(2**31, 1, 1, 1)
    config = {"BLOCK_H": 1, "BLOCK_W": 1, "BLOCK_C": 1, "num_warps": 1, "num_stages": 1}
    with pytest.raises(ValueError, match=r"2147483648 programs.*split the batch"):
        streamed_forward.forward_launch(
            "blur_pool_fwd", x, y, y, taps=binomial(3), stride=2, padding="zeros", pad_off=0,
            max_kernel=1, relu=False, save_codes=False, save_mask=False, config=config,
        )  # fmt: skip
    with pytest.raises(ValueError, match="4294967296 programs"):  # two 2 × 1 tiles an image
        streamed_backward.backward_launch(
            "blur_pool_bwd", y, y, y, x, taps=binomial(3), stride=2, padding="zeros",
            pad_off=0, max_kernel=1, relu=False, pack_c=False, config=config,
        )  # fmt: skip
    half = x[: 2**30]  # within the limit: planned
    streamed_forward.forward_launch(
        "blur_pool_fwd", half, y[: 2**30], y[: 2**30], taps=binomial(3), stride=2,
        padding="zeros", pad_off=0, max_kernel=1, relu=False, save_codes=False,
        save_mask=False, config=config,
    )  # fmt: skip


@pytest.mark.parametrize("op", ["blur", "max_blur"])
def test_empty_batch(op: str) -> None:
    x = make_input((0, 3, 6, 5), torch.float32, "channels_last", seed=0).requires_grad_(True)
    taps = binomial(4)
    if op == "blur":
        y = blur_pool2d_triton(x, taps, 2, "reflect", 0, False)
        assert y.shape == (0, 3, 3, 3)
    else:
        y = max_blur_pool2d_triton(x, taps, 2, "reflect", 2)
        assert y.shape == (0, 3, 3, 2)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_out_buffer_of_wrong_shape_is_rejected() -> None:
    x = make_input((1, 1, 4, 4), torch.float32, "nchw", seed=0)
    with pytest.raises(ValueError, match="out"):
        blur_pool2d_forward(x, binomial(2), 2, "zeros", 0, False, out=torch.empty(1, 1, 3, 3))


# ----------------------------------------------------------------------------- autograd, compile


@pytest.mark.parametrize("path", ["eager", "custom_op"])
@pytest.mark.parametrize("op", ["blur", "max_blur"])
def test_autograd_matches_reference(op: str, path: str) -> None:
    """Gradients through autograd (not the launchers) on a non-contiguous input, by both
    paths: the eager autograd.Function and the custom op's registered autograd (what traced
    code runs)."""
    x = make_input((2, 3, 7, 6), torch.float32, "strided", seed=11, ties=op == "max_blur")
    taps = skewed(5, 11)
    tt = taps_tensor(taps)
    if op == "blur":

        def fused(t):
            if path == "eager":
                return blur_pool2d_triton(t, taps, 2, "reflect", 1, True)
            return torch.ops.shiftlab.blur_pool2d(t, list(taps), 2, "reflect", 1, True, True)[0]

        def ref(t):
            return blur_pool2d_reference(t, tt, 2, "reflect", 1, True)
    else:

        def fused(t):
            if path == "eager":
                return max_blur_pool2d_triton(t, taps, 2, "zeros", 3)
            return torch.ops.shiftlab.max_blur_pool2d(t, list(taps), 2, "zeros", 3, True)[0]

        def ref(t):
            return max_blur_pool2d_reference(t, tt, 2, "zeros", 3)

    expected, grad, expected_dx = reference_and_grads(ref, x, seed=11)
    x_fused = x.detach().clone().requires_grad_(True)
    y = fused(x_fused)
    assert ("Eager" in type(y.grad_fn).__name__) == (path == "eager")
    y.backward(grad)
    assert_close(y, expected, x.dtype)
    assert_close(x_fused.grad, expected_dx, x.dtype)


@pytest.mark.parametrize("op", ["blur", "max_blur"])
def test_gradcheck_float64(op: str) -> None:
    """The backward kernel is the exact adjoint of the forward kernel (fp64 accumulation),
    through the eager path and the custom op's registered autograd."""
    x = make_input((1, 2, 5, 4), torch.float64, "nchw", seed=12).requires_grad_(True)
    taps = skewed(4, 12)
    if op == "blur":
        eager = lambda t: blur_pool2d_triton(t, taps, 2, "reflect", 0, True)  # noqa: E731
        op_args = (list(taps), 2, "reflect", 0, True, True)
        registered = lambda t: torch.ops.shiftlab.blur_pool2d(t, *op_args)[0]  # noqa: E731
    else:
        eager = lambda t: max_blur_pool2d_triton(t, taps, 1, "circular", 2)  # noqa: E731
        op_args = (list(taps), 1, "circular", 2, True)
        registered = lambda t: torch.ops.shiftlab.max_blur_pool2d(t, *op_args)[0]  # noqa: E731
    for fn in (eager, registered):
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("op", ["blur", "blur_relu", "max_blur"])
def test_a_gradient_of_the_gradient_is_the_references(op: str, layout: str) -> None:
    """A gradient penalty differentiates the input gradient with respect to the output
    gradient: the fused ops then take a differentiable form of their backward (the ReLU's
    unpacked bits, MaxBlurPool's codes), equal to the reference's, through the eager path and
    the custom op's registered autograd; gradgradcheck checks it against finite differences."""
    x = make_input((1, 3, 7, 6), torch.float64, layout, seed=31)
    taps = skewed(4, 31)
    if op == "max_blur":  # circular: windows wrap, codes read across the seam
        eager = lambda t: max_blur_pool2d_triton(t, taps, 2, "circular", 3)  # noqa: E731
        op_args = (list(taps), 2, "circular", 3, True)
        registered = lambda t: torch.ops.shiftlab.max_blur_pool2d(t, *op_args)[0]  # noqa: E731
        ref = lambda t: max_blur_pool2d_reference(t, taps_tensor(taps), 2, "circular", 3)  # noqa: E731
    else:
        relu = op == "blur_relu"
        eager = lambda t: blur_pool2d_triton(t, taps, 2, "zeros", 1, relu)  # noqa: E731
        op_args = (list(taps), 2, "zeros", 1, relu, relu)
        registered = lambda t: torch.ops.shiftlab.blur_pool2d(t, *op_args)[0]  # noqa: E731
        ref = lambda t: blur_pool2d_reference(t, taps_tensor(taps), 2, "zeros", 1, relu)  # noqa: E731

    def penalty_gradient(fn):
        leaf = x.detach().clone().requires_grad_(True)
        y = fn(leaf)
        grad = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(5))
        grad = grad.to(y.device).requires_grad_(True)
        (dx,) = torch.autograd.grad(y, leaf, grad, create_graph=True)
        return dx.detach(), torch.autograd.grad(dx.square().sum(), grad)[0]

    expected_dx, expected = penalty_gradient(ref)
    for fn in (eager, registered):
        dx, second = penalty_gradient(fn)
        assert_layout_kept(dx, x)  # as the input, whatever the output gradient's layout
        torch.testing.assert_close(dx, expected_dx, rtol=0, atol=1e-12)
        torch.testing.assert_close(second, expected, rtol=0, atol=1e-12)
    assert torch.autograd.gradgradcheck(eager, (x.detach().requires_grad_(True),),
                                        fast_mode=True)  # fmt: skip
    # A vectorized hessian batches the backward's gradient (vmap): the same, in plain ops.
    small = x[:, :2, :5, :4].detach()
    fused, plain = (
        torch.autograd.functional.hessian(lambda t, f=f: f(t).square().sum(), small, vectorize=True)
        for f in (eager, ref)
    )
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)


def test_forcing_the_kernels_under_a_torch_func_transform_is_a_value_error() -> None:
    """The kernels' autograd.Functions and launches take plain tensors only: `backend="auto"`
    takes the reference under torch.func transforms; "triton" says why it cannot."""
    x = make_input((1, 2, 6, 5), torch.float32, "nchw", seed=33)
    with pytest.raises(ValueError, match=r"backend='triton' under a torch.func transform"):
        torch.func.grad(lambda t: blur_pool2d(t, 3, backend="triton").sum())(x)
    with pytest.raises(ValueError, match="forward-mode AD"), fwAD.dual_level():
        max_blur_pool2d(fwAD.make_dual(x, torch.ones_like(x)), 3, backend="triton")


def test_the_kernels_take_a_plain_tensor_under_forward_mode_ad_and_torch_func() -> None:
    """A plain input in a dual level, beside a dual one, or a constant under torch.func.jvp has
    no tangent, as for PyTorch's own ops: the kernels compute on it (they had refused it)."""
    x = make_input((1, 2, 6, 5), torch.float32, "channels_last", seed=34)
    tol = TOLERANCE[torch.float32]
    for run in (blur_pool2d, max_blur_pool2d):
        expected = run(x, 3, backend="torch")
        scale = make_input(tuple(expected.shape), torch.float32, "nchw", seed=35)
        ones = torch.ones_like(scale)
        with fwAD.dual_level():
            assert fwAD.unpack_dual(run(x, 3, backend="triton")).tangent is None
            tangent = fwAD.unpack_dual(run(x, 3, backend="triton") * fwAD.make_dual(scale, ones))
        torch.testing.assert_close(tangent.tangent, expected, rtol=tol, atol=tol)
        out, tangent = torch.func.jvp(lambda s, r=run: r(x, 3, backend="triton") * s, (scale,),
                                      (ones,))  # fmt: skip
        torch.testing.assert_close(out, expected * scale, rtol=tol, atol=tol)
        torch.testing.assert_close(tangent, expected, rtol=tol, atol=tol)


def test_max_codes_are_written_only_when_a_gradient_is_needed() -> None:
    """Inference skips the argmax codes; a backward through a call without them says so."""
    x = make_input((1, 2, 6, 5), torch.float32, "nchw", seed=15)
    taps = list(binomial(3))
    y, codes = torch.ops.shiftlab.max_blur_pool2d(x, taps, 2, "reflect", 2, False)
    assert codes.numel() == 0
    with torch.no_grad():
        assert torch.equal(max_blur_pool2d_triton(x.requires_grad_(True), tuple(taps), 2,
                                                  "reflect", 2), y)  # fmt: skip
    y, codes = torch.ops.shiftlab.max_blur_pool2d(x, taps, 2, "reflect", 2, False)
    with pytest.raises(RuntimeError, match="save_codes=True"):
        y.sum().backward()
    y, codes = torch.ops.shiftlab.max_blur_pool2d(x, taps, 2, "reflect", 2, True)
    assert codes.dtype == torch.uint8 and codes.shape == (1, 2, 5, 4)
    assert int(codes.max()) < 4


def test_blur_pool_keeps_a_bit_mask_or_nothing_of_its_input() -> None:
    """What autograd keeps for the backward: nothing for plain blur-pool (it is linear), one
    bit per element after the fused ReLU; inference writes no mask, and a backward through a
    call without it says so."""
    x = make_input((2, 3, 7, 6), torch.float32, "channels_last", seed=17).requires_grad_(True)
    taps = binomial(3)
    saved: list[torch.Tensor] = []
    for relu in (False, True):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            y = blur_pool2d_triton(x, taps, 2, "reflect", 0, relu)
        if relu:
            (mask,) = saved
            assert mask.dtype == torch.uint8 and torch.equal(mask, packed_relu_mask(x))
        else:
            assert saved == []
        (dx,) = torch.autograd.grad(y, x, torch.ones_like(y))
        assert_layout_kept(dx, x)
    y, mask = torch.ops.shiftlab.blur_pool2d(x, list(taps), 2, "reflect", 0, True, False)
    assert mask.numel() == 0
    with pytest.raises(RuntimeError, match="save_mask=True"):
        y.sum().backward()
    with pytest.raises(ValueError, match="relu=True"):
        torch.ops.shiftlab.blur_pool2d(x, list(taps), 2, "reflect", 0, False, True)


def test_windows_too_large_for_the_codes_are_refused_when_training() -> None:
    """One-byte codes hold windows up to 15 × 15; training with larger ones is a clear error."""
    x = make_input((1, 1, 17, 17), torch.float32, "nchw", seed=16)
    taps = binomial(2)
    max_blur_pool2d_forward(x, taps, 2, "zeros", 16)  # inference needs no codes
    codes = torch.empty((1, 1, 2, 2), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"max_kernel=16.*<= 15"):
        max_blur_pool2d_forward(x, taps, 2, "zeros", 16, codes=codes)


def test_auto_leaves_filters_too_long_to_compile_quickly_to_the_reference(monkeypatch) -> None:
    """``auto`` on CUDA gives the fused kernels up to MAX_FUSED_TAPS taps and MaxBlurPool
    windows up to MAX_CODED_KERNEL; longer ones run on the reference, while ``triton`` takes
    them all."""
    monkeypatch.setattr(functional, "_use_triton", lambda backend, x, taps: True)  # as on CUDA
    launched = []
    fused_ops = functional._triton_ops
    monkeypatch.setattr(functional, "_triton_ops", lambda: launched.append(1) or fused_ops())
    x = make_input((1, 1, 3, 4), torch.float32, "nchw", seed=17)
    wide = make_input((1, 1, 16, 17), torch.float32, "nchw", seed=18)  # for 16 × 16 windows

    def fused(op, x, *args, **options) -> bool:
        launched.clear()
        op(x, *args, **options)
        return bool(launched)

    longest = MAX_FUSED_TAPS
    assert fused(blur_pool2d, x, longest) and fused(max_blur_pool2d, x, longest)
    assert not fused(blur_pool2d, x, longest + 1) and not fused(max_blur_pool2d, x, longest + 1)
    assert not fused(max_blur_pool2d, wide, 2, max_kernel=MAX_CODED_KERNEL + 1)
    assert fused(blur_pool2d, x, longest + 1, backend="triton")


def test_opcheck_registrations() -> None:
    """Schema, fake (meta) functions and autograd registration as torch.library checks them."""
    x = make_input((1, 2, 5, 4), torch.float32, "channels_last", seed=13).requires_grad_(True)
    taps = list(binomial(3))
    for relu in (False, True):
        torch.library.opcheck(torch.ops.shiftlab.blur_pool2d,
                              (x, taps, 2, "reflect", 0, relu, relu))  # fmt: skip
    torch.library.opcheck(torch.ops.shiftlab.max_blur_pool2d, (x, taps, 2, "zeros", 2, True))


class _AntiAliasedBlock(torch.nn.Module):
    """Conv -> fused ReLU+blur-pool -> fused max+blur-pool, through the public modules."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.blur = BlurPool2d(4, 3, stride=1, relu=True, backend="triton")
        self.max_blur = MaxBlurPool2d(4, 3, stride=2, backend="triton")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max_blur(self.blur(self.conv(x)))


@pytest.mark.parametrize("is_exporting_folded", [False, True])
def test_torch_compile_fullgraph_matches_eager(monkeypatch, is_exporting_folded: bool) -> None:
    """No graph break around the ops (fullgraph=True), the custom ops in Dynamo's graph, no
    warning from Dynamo about what it traced (a cached helper of the backend choice once gave
    one at every user's compile), same values and gradients. Also where Dynamo answers
    ``torch.compiler.is_exporting()`` with True under ``torch.compile`` (torch 2.11's does):
    the modules had then taken the reference ops, and the patch of the shape config they enter
    only when exporting broke the graph.

    Without CUDA the compiled graph runs on the aot_eager backend: it traces through the fake
    functions and the autograd registration exactly as Inductor does, without compiling C++
    for the CPU (minutes on a small CI machine); the GPU suite uses Inductor.
    """
    torch.manual_seed(14)
    model = _AntiAliasedBlock().to(DEVICE)
    x = make_input((2, 3, 8, 7), torch.float32, "channels_last", seed=14)
    backend = CompileCounterWithBackend("inductor" if DEVICE == "cuda" else "aot_eager")
    dynamo_warnings: list[str] = []  # (Dynamo warns once per process: record them all here)
    monkeypatch.setattr(torch._dynamo.utils, "warn_once", dynamo_warnings.append)
    if is_exporting_folded:  # (a function Dynamo inlines, where it folds the original's call)
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: torch.compiler.is_compiling())
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    eager_out = model(x)
    eager_out.sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled_out = compiled(x)
    compiled_out.sum().backward()
    assert dynamo_warnings == []
    targets = {str(node.target) for graph in backend.graphs for node in graph.graph.nodes}
    assert {"shiftlab.blur_pool2d", "shiftlab.max_blur_pool2d"} <= targets
    assert_close(compiled_out, eager_out, torch.float32)
    for param, expected in zip(model.parameters(), eager_grads, strict=True):
        assert_close(param.grad, expected, torch.float32)


def test_traced_calls_take_the_custom_ops_and_eager_calls_do_not() -> None:
    """Tracers record the custom ops (a graph node, a fake implementation); eager calls skip
    the dispatcher's wrappers through an autograd.Function, with the same values."""
    x = make_input((1, 4, 8, 7), torch.float32, "nchw", seed=20)

    def both(t: torch.Tensor) -> torch.Tensor:
        return max_blur_pool2d_triton(blur_pool2d_triton(t, binomial(3), 1, "reflect", 0, True),
                                      binomial(2), 2, "zeros", 2)  # fmt: skip

    nodes = str(torch.jit.trace(both, x).graph)
    assert "shiftlab::blur_pool2d" in nodes and "shiftlab::max_blur_pool2d" in nodes
    traced = make_fx(both)(x)
    targets = {str(node.target) for node in traced.graph.nodes}
    assert {"shiftlab.blur_pool2d.default", "shiftlab.max_blur_pool2d.default"} <= targets
    eager = both(x.requires_grad_(True))
    assert "Eager" in type(eager.grad_fn).__name__
    torch.testing.assert_close(traced(x), eager, rtol=0, atol=0)


class _OpsRun(TorchDispatchMode):
    """Records the name of every op dispatched while it is active, but for those the kernel
    launches run (the interpreter's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        self.names: list[str] = []
        self.launching = False
        launch = common.Launch.__call__

        def unrecorded(this, *tensors):
            self.launching = True
            launch(this, *tensors)
            self.launching = False

        monkeypatch.setattr(common.Launch, "__call__", unrecorded)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.launching:
            self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("op", ["blur_relu", "max_blur"])
def test_backward_allocates_its_gradient_and_fills_nothing(
    monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    """The mask and code outputs have no gradient: the backward must not get a zero-filled
    tensor of their size (a memset as large as half the input in MaxBlurPool's case). Besides
    its kernel it allocates the input gradient, and nothing else."""
    x = make_input((2, 8, 9, 10), torch.float32, "channels_last", seed=18).requires_grad_(True)
    if op == "max_blur":
        y = max_blur_pool2d_triton(x, binomial(3), 2, "reflect", 2)
    else:
        y = blur_pool2d_triton(x, binomial(3), 2, "reflect", 0, True)
    grad = torch.randn_like(y)
    torch.autograd.grad(y, x, grad, retain_graph=True)  # plans the launch (builds its tables)
    with _OpsRun(monkeypatch) as run:
        torch.autograd.grad(y, x, grad)
    assert run.names == ["empty"]


def test_launches_are_planned_once_per_layout_options_and_tuning_state(
    monkeypatch: pytest.MonkeyPatch, fresh_plans
) -> None:
    """Planning a launch costs more host time than the launch: a plan is replayed for the
    same shapes, strides, dtype and options, and made anew when any of them or the tuning
    state changes, each plan giving the reference's result."""
    plans: list[tuple[int, ...]] = []
    launches = blur_pool._forward_launch
    monkeypatch.setattr(launches, "plan", lambda *a: plans.append(a[0].stride()) or
                        launches.__wrapped__(*a))  # fmt: skip
    x = make_input((2, 8, 9, 10), torch.float32, "nchw", seed=19)
    calls = [
        (x, binomial(3)),
        (x, binomial(3)),  # replayed
        (x.contiguous(memory_format=torch.channels_last), binomial(3)),  # other strides
        (x, binomial(5)),  # other options
    ]
    for inputs, taps in calls:
        out = blur_pool2d_forward(inputs, taps, 2, "reflect", 0, False)
        expected = blur_pool2d_reference(inputs, taps_tensor(taps), 2, "reflect", 0, False)
        assert_close(out, expected, torch.float32)
    assert len(plans) == 3 and plans[1] != plans[0]
    tuning.clear_cache()  # a table written: the configs may have changed
    blur_pool2d_forward(x, binomial(3), 2, "reflect", 0, False)
    assert len(plans) == 4


@pytest.mark.parametrize("stride", [7, 2**20, 2**31])
def test_a_stride_past_the_map_launches_as_the_maps_side(stride: int) -> None:
    """Any stride of at least the blurred map's side reads one position per axis: the fused
    path launches with that side instead, with the reference's values and gradients (it
    unrolls a loop over the stride, and 2**31 overflowed its int32 arithmetic)."""
    x = make_input((1, 3, 4, 5), torch.float32, "nchw", seed=stride).requires_grad_()
    for op, options in ((blur_pool2d, {"pad_off": 1, "relu": True}), (max_blur_pool2d, {})):
        y = op(x, 3, stride, "reflect", backend="triton", **options)
        expected = op(x, 3, stride, "reflect", backend="torch", **options)
        assert y.shape == expected.shape == (1, 3, 1, 1)
        assert_close(y, expected, torch.float32)
        grad = torch.randn_like(y)
        (dx,) = torch.autograd.grad(y, x, grad)
        (expected_dx,) = torch.autograd.grad(expected, x, grad)
        assert_close(dx, expected_dx, torch.float32)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_non_finite_inputs_give_the_references_outputs(layout: str) -> None:
    """An inf, a -inf region (a masked map) and a NaN reach the same outputs as in the
    reference on CPU: the ones whose window holds them. (The reference on a GPU does not check
    for them, and spreads NaN over their planes.)"""
    x = make_input((1, 3, 8, 7), torch.float32, layout, seed=11)
    with torch.no_grad():
        x[0, 0, 3, 2] = math.inf
        x[0, 1, :, 4:] = -math.inf
        x[0, 2, 5, 5] = math.nan
    for op, options in ((blur_pool2d, {"pad_off": 1, "relu": True}), (max_blur_pool2d, {})):
        y = op(x, 3, 2, "reflect", backend="triton", **options)
        expected = op(x.cpu(), 3, 2, "reflect", backend="torch", **options)
        assert y.isfinite().any() and not y.isfinite().all()
        torch.testing.assert_close(y.cpu(), expected, equal_nan=True, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("filter_size, stride", [(1, 2), (1, 3)])
def test_non_finite_beside_the_taps_stays_out_when_training(filter_size: int, stride: int) -> None:
    """With a gradient needed, MaxBlurPool's forward reads each output's whole stride × stride
    block for the codes, beyond the taps when the stride outruns them: an infinity in a
    max-map column no tap reads must not reach the output as 0 · inf = NaN (spec §2)."""
    x = make_input((1, 1, 5, 7), torch.float32, "nchw", seed=5)
    with torch.no_grad():
        x[0, 0, 2, 2] = math.inf  # max-map columns 1 and 2, column 1 or 2 read by no tap
    leaf = x.clone().requires_grad_(True)
    y = max_blur_pool2d(leaf, filter_size, stride, "reflect", backend="triton")
    expected = max_blur_pool2d(x, filter_size, stride, "reflect", backend="torch")
    torch.testing.assert_close(y.detach(), expected, equal_nan=True, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_non_finite_read_by_taps_of_either_sign_is_nan_along_w(layout: str) -> None:
    """A custom filter with taps of both signs: where the padding makes two taps read the
    same infinity, spec §2 sums their products, inf - inf = NaN, along W as along H; the
    fused forward folded the taps into one weight along W first (2 - 1 = 1) and gave inf."""
    x = make_input((1, 2, 2, 1), torch.float32, layout, seed=7)
    with torch.no_grad():
        x[0, :, 0, 0] = math.inf
    for t in (x, x.transpose(2, 3)):  # the infinity read twice along W, then along H
        y = blur_pool2d(t, None, 2, "replicate", filter="custom", taps=[2.0, -1.0],
                        backend="triton")  # fmt: skip
        expected = blur_pool2d(t.cpu(), None, 2, "replicate", filter="custom", taps=[2.0, -1.0],
                               backend="torch")  # fmt: skip  (spec §2: the eager CPU reference)
        assert expected.isnan().all()
        torch.testing.assert_close(y.cpu(), expected, equal_nan=True, atol=1e-5, rtol=1e-5)


def test_relu_output_takes_the_inputs_layout_in_both_backends() -> None:
    """An input in neither format (every other column of a channels_last tensor): the output
    is NCHW, with the fused ReLU or without, in both backends (the reference had taken the
    layout of F.relu's dense channels_last result)."""
    x = make_input((1, 4, 5, 12), torch.float32, "channels_last", seed=3)[..., ::2]
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    for relu in (False, True):
        y = blur_pool2d(x, 3, 2, "reflect", relu=relu, backend="triton")
        expected = blur_pool2d(x, 3, 2, "reflect", relu=relu, backend="torch")
        assert y.is_contiguous() and expected.is_contiguous()
        assert_close(y, expected, torch.float32)


@pytest.mark.parametrize("max_kernel", [2, 3])
def test_gradient_of_a_one_pixel_max_map_keeps_the_inputs_layout(max_kernel: int) -> None:
    """A max map of 1 × 1 (a max_kernel-sized input) gives codes contiguous in both formats:
    the fused backward had read NCHW from them and returned a channels_last input's gradient
    as NCHW. The input's layout travels with the backward instead."""
    x = make_input((2, 3, max_kernel, max_kernel), torch.float32, "channels_last", seed=21)
    leaf = x.clone(memory_format=torch.channels_last).requires_grad_(True)
    grads = []
    for backend in ("triton", "torch"):
        y = max_blur_pool2d(leaf, 1, 1, "reflect", max_kernel=max_kernel, backend=backend)
        (dx,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
        assert keeps_channels_last(dx), backend
        grads.append(dx)
    assert_close(grads[0], grads[1], torch.float32)
