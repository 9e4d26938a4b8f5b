"""Converted pools on the grid of the pool they replace (ablate.pool_grid), against torch."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate.antialias import antialias
from ablate.models import build_model
from ablate.pool_grid import PoolGrid, grid_differs, pool_rows
from kernels import make_taps
from kernels.reference import blur_pool2d_reference

# (kernel, stride, padding) of the pools networks use, and some they might
POOLS = [(2, 2, 0), (3, 2, 0), (3, 2, 1), (2, 3, 0), (3, 3, 1), (4, 2, 1), (5, 3, 2)]


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOLS)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_rows_is_torchs_count(kernel: int, stride: int, padding: int, ceil_mode: bool) -> None:
    for size in range(max(1, kernel - 2 * padding), 20):
        x = torch.zeros(1, 1, size, 1)
        expected = F.max_pool2d(x, (kernel, 1), (stride, 1), (padding, 0), ceil_mode=ceil_mode)
        assert pool_rows(size, kernel, stride, padding, ceil_mode) == expected.shape[2], size


def test_grid_differs_where_some_map_size_loses_or_gains_a_row() -> None:
    assert not grid_differs(-1, 2, 2, 0, False)  # MaxBlurPool for MaxPool(2, 2): every size
    assert not grid_differs(0, 3, 2, 1, False)  # MaxPool(3, 2, 1) → MaxPool(3, 1, 1) → blur
    assert not grid_differs(0, 2, 2, 0, True)  # AvgPool(2, 2, ceil_mode=True) → BlurPool
    assert grid_differs(0, 2, 2, 0, False)  # AvgPool(2, 2) drops an odd map's last row
    assert grid_differs(-2, 3, 2, 0, True)  # MaxPool(3, 2, ceil_mode=True) overhangs


@pytest.mark.parametrize(("kernel", "stride", "padding"), POOLS)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_one_tap_max_blur_pool_is_the_pool_itself(
    kernel: int, stride: int, padding: int, ceil_mode: bool
) -> None:
    """With a one-tap filter (plain subsampling) the converted max-pool is the max-pool, on
    every map size: same windows, overhanging ones included."""
    if padding > kernel // 2:
        pytest.skip("torch refuses padding over half the kernel")
    torch.manual_seed(kernel + 10 * stride + 100 * padding)
    pool = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), pool)
    for h, w in itertools.product(range(max(kernel, 5), max(kernel, 5) + stride + 1), [7, 12]):
        x = torch.randn(2, 3, h, w)
        converted, _ = antialias(model, filter_size=1, example_input=x)
        torch.testing.assert_close(converted(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_box_blur_pool_is_the_average_pool(ceil_mode: bool) -> None:
    """BlurPool with the 2-tap box filter and zero padding averages the pool's windows; on the
    pool's grid it is AvgPool(2, 2) on odd maps too."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(2, ceil_mode=ceil_mode))
    for h, w in [(8, 8), (9, 11), (7, 6)]:
        x = torch.randn(2, 3, h, w)
        converted, (change,) = antialias(
            model, filter="box", filter_size=2, padding="zeros", example_input=x
        )
        if ceil_mode:  # the overhanging window averages its one row, not it and a zero
            assert not isinstance(converted.get_submodule("1"), PoolGrid)
            assert converted(x).shape == model(x).shape
            continue
        assert isinstance(converted.get_submodule("1"), PoolGrid)
        assert change.description.endswith("on the floor-mode pool's output grid")
        torch.testing.assert_close(converted(x), model(x))


def test_ceil_mode_max_pool_keeps_its_grid_through_the_blur() -> None:
    """SqueezeNet's and GoogLeNet's MaxPool(3, 2, ceil_mode=True) with a real blur: the shape
    of the pool at every size, and the overhanging window filters the map's last rows: the
    dense 3×3 max of the map padded with -inf as far as that window reaches, written out."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True))
    for size in (13, 14):
        x = torch.randn(2, 3, size, size + 3)
        converted, (change,) = antialias(model, filter_size=3, example_input=x)
        assert change.description.endswith("on the ceil-mode pool's output grid")
        rows = [-(-(n - 3) // 2) + 1 for n in x.shape[-2:]]  # ceil((n - 3) / 2) + 1 windows
        over = [(r - 1) * 2 + 3 - n for r, n in zip(rows, x.shape[-2:], strict=True)]
        padded = F.pad(model[0](x), [0, over[1], 0, over[0]], value=-math.inf)
        blurred = blur_pool2d_reference(F.max_pool2d(padded, 3, 1), make_taps(3), 2, "reflect",
                                        0, False)  # fmt: skip
        expected = blurred[..., : rows[0], : rows[1]]
        assert expected.shape == model(x).shape and expected.isfinite().all()
        torch.testing.assert_close(converted(x), expected)


def test_models_whose_pools_fit_are_not_wrapped() -> None:
    for name in ("vgg", "resnet18"):
        converted, _ = antialias(build_model(name, width=4))
        assert not any(isinstance(m, PoolGrid) for m in converted.modules())


def test_pool_grid_scripts_and_exports() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(3, 2, ceil_mode=True))
    x = torch.randn(1, 3, 15, 14)
    converted, _ = antialias(model, filter_size=3, backend="torch", example_input=x)
    expected = converted(x)
    torch.testing.assert_close(torch.jit.script(converted)(x), expected)
    exported = torch.export.export(converted, (x,)).module()
    torch.testing.assert_close(exported(x), expected)


@pytest.mark.parametrize(
    "pool", [nn.MaxPool2d(3, 2, ceil_mode=True), nn.AvgPool2d(2)], ids=["ceil_max", "floor_avg"]
)
def test_fused_kernels_on_the_pool_grid_match_the_reference(pool: nn.Module) -> None:
    """The fused ops (under the interpreter on CPU) take the -inf padding and the trimmed
    rows as the reference does, forward and backward."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 2, 1), pool)
    x = torch.randn(1, 2, 9, 11)
    outputs = []
    for backend in ("torch", "triton"):
        converted, _ = antialias(model, filter_size=3, backend=backend, example_input=x)
        leaf = x.clone().requires_grad_(True)
        y = converted(leaf)
        (grad,) = torch.autograd.grad(y.square().sum(), leaf)
        outputs.append((y.detach(), grad))
    assert isinstance(converted.get_submodule("1"), PoolGrid)
    for expected, actual in zip(*outputs, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
