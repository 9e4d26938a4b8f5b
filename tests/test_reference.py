"""The reference ops and padding maps against a direct definition written out here.

The direct definition pads by folding each out-of-range index step by step (not the closed
forms of kernels.padding), correlates with the 2-D outer-product filter by a depthwise conv2d
in float64 and slices every s-th row and column: spec §2 and §3 word for word.
"""

import functools
import math
import re

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import blur_pool2d, max_blur_pool2d
from kernels.options import PADDING_MODES
from kernels.padding import blur_output_size, dense_max_size, pad_index, pad_sizes
from kernels.reference import blur_pool2d_reference, max_blur_pool2d_reference

FP32 = {"atol": 1e-5, "rtol": 1e-5}
SHAPES = [(1, 1), (2, 2), (5, 7), (6, 3)]


def padded_source(i: int, n: int, mode: str) -> int | None:
    """Input index read at padded position ``i`` (None: a zero), by folding one edge at a time."""
    if mode == "zeros":
        return i if 0 <= i < n else None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    if n == 1:
        return 0
    while not 0 <= i < n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def pad_direct(x: torch.Tensor, before: int, after: int, mode: str) -> torch.Tensor:
    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        pieces = []
        for i in range(-before, n + after):
            source = padded_source(i, n, mode)
            edge = t.narrow(dim, 0 if source is None else source, 1)
            pieces.append(torch.zeros_like(edge) if source is None else edge)
        return torch.cat(pieces, dim)

    return along(along(x, 2), 3)


def direct_blur_pool(
    x: torch.Tensor,
    taps: torch.Tensor,
    stride: int,
    mode: str,
    pad_off: int = 0,
    relu: bool = False,
) -> torch.Tensor:
    x = x.double().clamp(min=0) if relu else x.double()
    size = taps.numel()
    before, after = (size - 1) // 2 + pad_off, size - 1 - (size - 1) // 2 + pad_off
    weight = torch.outer(taps, taps).double().expand(x.shape[1], 1, size, size)
    out = F.conv2d(pad_direct(x, before, after, mode), weight, groups=x.shape[1])
    return out[:, :, ::stride, ::stride]


def direct_max_blur_pool(
    x: torch.Tensor, taps: torch.Tensor, stride: int, mode: str, max_kernel: int
) -> torch.Tensor:
    return direct_blur_pool(F.max_pool2d(x.double(), max_kernel, 1), taps, stride, mode)


def random_taps(size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Asymmetric taps, so that a flipped filter (convolution for correlation) shows."""
    taps = torch.rand(size, dtype=torch.float64, generator=generator) + 0.1
    return taps / taps.sum()


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_pad_index_agrees_with_f_pad_wherever_f_pad_is_defined(mode: str) -> None:
    compared = 0
    for n in range(1, 7):
        for before in range(n + 3):
            for after in range(n + 3):
                index = pad_index(n, before, after, mode)
                expected = [padded_source(i, n, mode) for i in range(-before, n + after)]
                assert index.tolist() == [-1 if e is None else e for e in expected]
                limit = {"reflect": n - 1, "circular": n}.get(mode, n + 3)
                if max(before, after) > limit:
                    continue
                line = torch.arange(n, dtype=torch.float64).view(1, 1, n)
                torch_mode = "constant" if mode == "zeros" else mode
                kwargs = {"value": -1.0} if mode == "zeros" else {}
                padded = F.pad(line, (before, after), mode=torch_mode, **kwargs)
                assert padded.view(-1).long().tolist() == index.tolist()
                compared += 1
    assert compared >= 60


def test_pad_and_output_sizes_follow_the_spec() -> None:
    """Spec §2: the floor half of ``k - 1`` before, the rest after, each grown by ``pad_off``;
    ``floor((size + 2·pad_off - 1) / stride) + 1`` outputs. Spec §3: the dense max map."""
    assert [pad_sizes(k, 0) for k in (1, 2, 3, 4, 5)] == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]
    assert pad_sizes(4, 2) == (3, 4)
    assert [blur_output_size(7, stride, 0) for stride in (1, 2, 3, 7, 8)] == [7, 4, 3, 1, 1]
    assert blur_output_size(7, 2, 1) == 5
    assert [dense_max_size(8, max_kernel) for max_kernel in (1, 2, 3, 8)] == [8, 7, 6, 1]


@pytest.mark.parametrize(
    ("n", "before", "after", "mode", "message"),
    [(0, 1, 1, "zeros", "n >= 1"), (3, -1, 0, "reflect", "pads >= 0"),
     (3, 0, -1, "circular", "pads >= 0"), (3, 1, 1, "mirror", "padding='mirror' is not one of")],
)  # fmt: skip
def test_pad_index_refuses_an_empty_axis_negative_pads_and_unknown_modes(
    n: int, before: int, after: int, mode: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pad_index(n, before, after, mode)


@pytest.mark.parametrize("size", range(1, 10))
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_blur_pool_matches_direct_definition(size: int, mode: str) -> None:
    taps = random_taps(size)
    for stride in (1, 2, 3):
        for h, w in SHAPES:
            x = torch.randn(2, 3, h, w)
            out = blur_pool2d(x, None, stride, mode, filter="custom", taps=taps, backend="torch")
            expected = direct_blur_pool(x, taps, stride, mode)
            assert out.shape == (2, 3, (h - 1) // stride + 1, (w - 1) // stride + 1)
            torch.testing.assert_close(out, expected.float(), **FP32)


@pytest.mark.parametrize("max_kernel", [2, 3])
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_max_blur_pool_matches_direct_definition(max_kernel: int, mode: str) -> None:
    for size in (1, 3, 4, 7):
        taps = random_taps(size)
        for stride in (1, 2, 3):
            for h, w in [(max_kernel, max_kernel), (5, 7), (8, 4)]:
                x = torch.randn(2, 3, h, w)
                out = max_blur_pool2d(
                    x,
                    None,
                    stride,
                    mode,
                    max_kernel=max_kernel,
                    filter="custom",
                    taps=taps,
                    backend="torch",
                )
                expected = direct_max_blur_pool(x, taps, stride, mode, max_kernel)
                torch.testing.assert_close(out, expected.float(), **FP32)


@pytest.mark.parametrize("pad_off", [1, 2])
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_pad_off_and_relu_match_direct_definition(pad_off: int, mode: str) -> None:
    for size, stride, (h, w) in [(4, 2, (5, 6)), (3, 1, (2, 2)), (5, 3, (7, 4))]:
        taps = random_taps(size)
        x = torch.randn(2, 3, h, w)
        out = blur_pool2d_reference(x, taps, stride, mode, pad_off, True)
        expected = direct_blur_pool(x, taps, stride, mode, pad_off=pad_off, relu=True)
        assert out.shape[-2:] == (
            (h + 2 * pad_off - 1) // stride + 1,
            (w + 2 * pad_off - 1) // stride + 1,
        )
        torch.testing.assert_close(out, expected.float(), **FP32)


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 10),  # (channels_last: a map of 8 or more is blurred in its own layout)
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    size=st.integers(1, 9),
    stride=st.integers(1, 4),
    pad_off=st.integers(0, 2),
    mode=st.sampled_from(PADDING_MODES),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_blur_pool_matches_direct_definition_on_random_cases(
    n: int,
    c: int,
    h: int,
    w: int,
    size: int,
    stride: int,
    pad_off: int,
    mode: str,
    channels_last: bool,
    seed: int,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    taps = random_taps(size, generator)
    out = blur_pool2d_reference(x, taps, stride, mode, pad_off, False)
    torch.testing.assert_close(
        out, direct_blur_pool(x, taps, stride, mode, pad_off).float(), **FP32
    )


def test_size_one_filter_is_exact_subsampling() -> None:
    """Spec §2: `x[:, :, ::s, ::s]`, exactly, whatever the values it skips (an inf too)."""
    x = torch.randn(2, 3, 7, 5)
    x[0, 0, 1, 1] = math.inf
    for stride in (1, 2, 3):
        for mode in PADDING_MODES:
            assert torch.equal(
                blur_pool2d(x, 1, stride, mode, backend="torch"), x[:, :, ::stride, ::stride]
            )


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
def test_autocast_leaves_the_reference_in_float32(autocast_dtype: torch.dtype) -> None:
    """Autocast would run the products in its lower precision, while the output says float32."""
    x = torch.randn(2, 4, 11, 8)
    for run in (blur_pool2d, max_blur_pool2d):
        expected = run(x, 4, 2, "reflect", backend="torch")
        with torch.autocast("cpu", dtype=autocast_dtype):
            out = run(x, 4, 2, "reflect", backend="torch")
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, expected, **FP32)
    meta = torch.empty(2, 4, 11, 8, device="meta")  # shapes only, with or without autocast
    assert blur_pool2d(meta, 4, 2, "reflect", backend="torch").shape == (2, 4, 6, 4)


@pytest.mark.parametrize("op", ["blur", "max_blur"])
def test_channels_last_in_gives_channels_last_out_with_the_same_values(op: str) -> None:
    x = torch.randn(2, 5, 9, 6)
    run = blur_pool2d if op == "blur" else max_blur_pool2d
    dense = run(x, 4, 2, "reflect", backend="torch")
    out = run(x.contiguous(memory_format=torch.channels_last), 4, 2, "reflect", backend="torch")
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert dense.is_contiguous()
    torch.testing.assert_close(out, dense, **FP32)
    # A channel slice of a channels_last tensor is neither format: NCHW out, as from the fused
    # kernels and from blur_pool2d (the dense max of it is channels_last, and had set it).
    view = x.contiguous(memory_format=torch.channels_last)[:, 1:4]
    out = run(view, 4, 2, "reflect", backend="torch")
    assert out.is_contiguous()
    torch.testing.assert_close(out, dense[:, 1:4], **FP32)


@pytest.mark.parametrize("op", ["blur", "max_blur"])
def test_non_contiguous_inputs(op: str) -> None:
    base = torch.randn(2, 3, 14, 11)
    views = [base[:, :, 1::2, ::2], base.transpose(2, 3), base[:, ::2]]
    taps = random_taps(5)
    for x in views:
        assert not x.is_contiguous()
        if op == "blur":
            out = blur_pool2d_reference(x, taps, 2, "reflect", 1, False)
            expected = direct_blur_pool(x.contiguous(), taps, 2, "reflect", pad_off=1)
        else:
            out = max_blur_pool2d_reference(x, taps, 2, "circular", 2)
            expected = direct_max_blur_pool(x.contiguous(), taps, 2, "circular", 2)
        torch.testing.assert_close(out, expected.float(), **FP32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_half_precision_is_float32_rounded_once_and_keeps_dtype(
    dtype: torch.dtype, channels_last: bool
) -> None:
    """Spec: half-precision inputs accumulate in float32, so the result is the float32 op's,
    rounded once (products in half precision would be up to 1.5x further off)."""
    x = torch.randn(2, 4, 11, 8).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for run, kwargs in [(blur_pool2d, {"relu": True, "pad_off": 1}), (max_blur_pool2d, {})]:
        out = run(x, 9, 2, "zeros", backend="torch", **kwargs)
        assert out.dtype == dtype
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        expected = run(x.float(), 9, 2, "zeros", backend="torch", **kwargs).to(dtype)
        torch.testing.assert_close(out, expected, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gradients_are_float32_rounded_once(dtype: torch.dtype) -> None:
    """The max's backward sums up to max_kernel² window gradients per input: in half
    precision each sum had rounded (about 1e-3 off in fp16)."""
    x = torch.randn(2, 3, 12, 11).mul(1.5).round().to(dtype)  # ties: inputs that win many
    for run, kwargs in [(blur_pool2d, {"relu": True}), (max_blur_pool2d, {"max_kernel": 3})]:
        half, wide = x.clone().requires_grad_(True), x.float().requires_grad_(True)
        out = run(half, 5, 2, "reflect", backend="torch", **kwargs)
        grad = torch.randn(out.shape).to(dtype)
        out.backward(grad)
        run(wide, 5, 2, "reflect", backend="torch", **kwargs).backward(grad.float())
        assert half.grad.dtype == dtype
        torch.testing.assert_close(half.grad, wide.grad.to(dtype), atol=0, rtol=0)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_gradcheck_blur_pool(mode: str) -> None:
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    for size, stride, pad_off, relu in [(4, 2, 0, False), (5, 3, 1, True), (7, 1, 0, False)]:
        taps = random_taps(size)
        assert torch.autograd.gradcheck(
            lambda t, taps=taps, s=stride, p=pad_off, r=relu: blur_pool2d_reference(
                t, taps, s, mode, p, r
            ),
            (x,),
        )


@pytest.mark.parametrize("max_kernel", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck_max_blur_pool(max_kernel: int, channels_last: bool) -> None:
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    taps = random_taps(4)
    for mode in PADDING_MODES:
        assert torch.autograd.gradcheck(
            lambda t, m=mode: max_blur_pool2d_reference(t, taps, 2, m, max_kernel),
            (x.requires_grad_(),),
        )


@pytest.mark.parametrize("channels_last", [False, True])
def test_second_derivatives_of_both_ops(channels_last: bool) -> None:
    """A gradient penalty differentiates the gradient: blur-pool is linear (ReLU aside), and
    the dense max's own backward hands over to max_pool2d's, which has a gradient, when a
    graph of the gradient is built (its fast backward writes into buffers)."""
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    taps = random_taps(3)
    assert torch.autograd.gradgradcheck(
        lambda t: blur_pool2d_reference(t, taps, 2, "reflect", 1, True), (x,)
    )
    assert torch.autograd.gradgradcheck(
        lambda t: max_blur_pool2d_reference(t, taps, 2, "circular", 3), (x,)
    )
    loss = lambda t: max_blur_pool2d_reference(t, taps, 2, "circular", 3).square().sum()  # noqa: E731
    torch.testing.assert_close(  # a vectorized hessian batches the backward's gradient
        torch.autograd.functional.hessian(loss, x.detach(), vectorize=True),
        torch.autograd.functional.hessian(loss, x.detach()),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("op", ["blur", "max_blur"])
def test_torch_func_transforms_and_forward_mode_ad_run_through_the_reference(op: str) -> None:
    """grad, vmap, jacfwd and forward-mode AD work as through PyTorch's own ops: the dense max
    is then max_pool2d itself, and vmap's batches are not asked for their layout."""
    if op == "blur":
        fn = lambda t: blur_pool2d(t, 3, 2, "zeros", relu=True, backend="torch")  # noqa: E731
    else:
        fn = lambda t: max_blur_pool2d(t, 3, 2, "reflect", backend="torch")  # noqa: E731
    x = torch.randn(3, 2, 6, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    loss = lambda t: fn(t).square().sum()  # noqa: E731
    leaf = x.clone().requires_grad_(True)
    loss(leaf).backward()
    torch.testing.assert_close(torch.func.grad(loss)(x), leaf.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.func.jacfwd(loss)(x), leaf.grad, rtol=0, atol=1e-12)
    batched = torch.vmap(lambda t: fn(t[None])[0])(x)
    torch.testing.assert_close(batched, fn(x), rtol=0, atol=1e-12)
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(fn(fwAD.make_dual(x, tangent))).tangent
    _, expected = torch.autograd.functional.jvp(fn, x, tangent)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("max_kernel", [2, 3, 4])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("nan", [False, True])
def test_ties_send_the_gradient_to_the_first_maximum_like_max_pool2d(
    max_kernel: int, channels_last: bool, nan: bool
) -> None:
    """Tied maxima: the first in row-major order wins; with NaNs, the last NaN (torch's scan)."""
    gen = torch.Generator().manual_seed(max_kernel)
    x = torch.randint(0, 3, (2, 3, 9, 7), dtype=torch.float64, generator=gen)
    if nan:
        x[torch.rand(x.shape, generator=gen) < 0.15] = math.nan
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    taps = random_taps(3)
    ours = x.clone().requires_grad_()
    direct = x.clone().requires_grad_()
    out = max_blur_pool2d_reference(ours, taps, 2, "reflect", max_kernel)
    expected = direct_max_blur_pool(direct, taps, 2, "reflect", max_kernel)
    if not nan:  # the reference's blur spreads a NaN along its row and column (module doc)
        torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(ours.grad, direct.grad, atol=1e-12, rtol=1e-12)
    assert ours.grad.is_contiguous(memory_format=torch.channels_last) == channels_last


REFERENCE_CALLS = {
    "blur_pool": lambda t, taps: blur_pool2d_reference(t, taps, 2, "reflect", 0, True),
    "max_blur_pool": lambda t, taps: max_blur_pool2d_reference(t, taps, 2, "circular", 3),
}


@pytest.mark.parametrize("op", REFERENCE_CALLS)
def test_the_reference_compiles_as_one_graph_with_its_gradient(op: str) -> None:
    """``torch.compile(fullgraph=True)`` captures the reference ops, backward included (the
    CPU path of every converted network), with eager's values and gradients."""
    run, taps = REFERENCE_CALLS[op], random_taps(3)
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    compiled_x = x.detach().clone().requires_grad_()
    torch._dynamo.reset()
    out = torch.compile(run, fullgraph=True, backend="aot_eager")(compiled_x, taps)
    out.backward(grad := torch.randn_like(out))
    run(x, taps).backward(grad)
    torch.testing.assert_close(out, run(x, taps), **FP32)
    torch.testing.assert_close(compiled_x.grad, x.grad, **FP32)


@pytest.mark.parametrize("op", ["blur_pool", "max_blur_pool"])
def test_kornia_computes_the_zeros_padding_mode(op: str) -> None:
    """kornia (from 0.9) pads zeros by (k-1)//2 before and k//2 after, as the spec's `zeros`
    mode, so the bench compares like with like at every filter size (older releases padded
    (k-1)//2 on both sides, which agrees for odd k only)."""
    kornia = pytest.importorskip("kornia", minversion="0.9")
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    if op == "blur_pool":
        ours, theirs = blur_pool2d, kornia.filters.blur_pool2d
    else:
        ours = max_blur_pool2d
        theirs = functools.partial(kornia.filters.max_blur_pool2d, max_pool_size=2)
    for size in range(2, 8):
        expected = ours(x, size, 2, "zeros", backend="torch")
        torch.testing.assert_close(theirs(x, size, stride=2), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_a_non_finite_input_reaches_only_the_outputs_whose_window_holds_it(
    mode: str, channels_last: bool
) -> None:
    """Spec §2 is a local correlation: an inf, a -inf region (a masked feature map) or a NaN
    stays in the outputs that read it (the products had spread NaN over the whole plane)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 9, 8, generator=gen)
    x[0, 0, 4, 3] = math.inf
    x[0, 1, :, 5:] = -math.inf
    x[1, 2, 0, 0] = math.nan
    x[1, 0, 2, 2], x[1, 0, 3, 3] = math.inf, -math.inf  # one window meets both: NaN there only
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    taps = random_taps(4, gen)
    out = blur_pool2d_reference(x, taps, 2, mode, 1, False)
    expected = direct_blur_pool(x, taps, 2, mode, pad_off=1)
    assert out.isfinite().any() and not out.isfinite().all()
    torch.testing.assert_close(out, expected.float(), equal_nan=True, **FP32)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    out = max_blur_pool2d_reference(x, taps, 2, mode, 2)
    expected = direct_max_blur_pool(x, taps, 2, mode, 2)
    torch.testing.assert_close(out, expected.float(), equal_nan=True, **FP32)
    grad = torch.autograd.grad(blur_pool2d(x.requires_grad_(), 3).sum(), x)[0]
    assert grad.isfinite().all()  # the gradient does not depend on x


def test_the_gradient_of_a_non_finite_input_keeps_its_layout() -> None:
    """Computed window by window, the blur's input gradient was NCHW for a channels_last input
    (the products', the finite input's, and the fused kernels' are channels_last)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 7, 6, generator=gen)
    x[0, 1, 3, 2], x[1, 0, 0, 5] = math.inf, math.nan
    for run, kwargs in [(blur_pool2d, {"pad_off": 1}), (max_blur_pool2d, {})]:
        dense = x.clone().requires_grad_(True)
        out = run(dense, 4, 2, "reflect", backend="torch", **kwargs)
        grad = torch.randn(out.shape, generator=gen)
        expected = torch.autograd.grad(out, dense, grad)[0]
        last = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        out = run(last, 4, 2, "reflect", backend="torch", **kwargs)
        grad = grad.contiguous(memory_format=torch.channels_last)
        dx = torch.autograd.grad(out, last, grad)[0]
        assert dx.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(dx, expected, equal_nan=True, **FP32)
