"""GPU-only checks of the fused ops: bf16, network-sized maps and tensors past 2**31 elements.

The interpreter suite (test_triton_ops.py) runs unchanged on CUDA as well; these add what the
interpreter cannot afford. Tensors past 2**31 elements are compared on crops at their far end
(where 32-bit offsets would wrap), against the reference run on the crop alone: away from the
crop's top and left borders the crop's own padding does not reach the compared outputs.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_triton_ops import (
    assert_close,
    binomial,
    check_blur_pool,
    check_max_blur_pool,
    make_input,
    skewed,
    taps_tensor,
)

from kernels import BlurPool2d, MaxBlurPool2d
from kernels.ops.blur_pool import blur_pool2d_backward, blur_pool2d_forward, blur_pool2d_triton
from kernels.ops.max_blur_pool import (
    max_blur_pool2d_backward,
    max_blur_pool2d_forward,
    max_codes_buffer,
)
from kernels.options import PADDING_MODES
from kernels.reference import blur_pool2d_reference, max_blur_pool2d_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("padding", PADDING_MODES)
def test_bfloat16(padding: str, layout: str) -> None:
    x = make_input((2, 16, 15, 14), torch.bfloat16, layout, seed=21)
    check_blur_pool(x, skewed(5, 21), 2, padding, 1, True)
    check_max_blur_pool(x, binomial(4), 2, padding, 2)
    check_max_blur_pool(make_input((2, 16, 9, 8), torch.bfloat16, layout, 22, ties=True),
                        binomial(3), 1, padding, 3)  # fmt: skip


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("op", ["blur", "max_blur"])
def test_network_sized_map(op: str, layout: str) -> None:
    """A ResNet stem's map: 64 x 256 x 112 x 112 in fp16 (many tiles, many channel blocks)."""
    x = make_input((64, 256, 112, 112), torch.float16, layout, seed=23)
    if op == "blur":
        check_blur_pool(x, binomial(4), 2, "reflect", 0, True)
    else:
        check_max_blur_pool(x, binomial(3), 2, "zeros", 2)


CROP = 64  # input rows/columns of the far-end crop; even, so stride-2 phases line up


def _far_end(t: torch.Tensor, size: int) -> torch.Tensor:
    return t[:, :, -size:, -size:]


@pytest.mark.parametrize("op", ["blur", "max_blur"])
@pytest.mark.parametrize(
    "shape, layout",
    [((3, 1, 26800, 26800), "nchw"), ((1, 64, 5800, 5800), "channels_last")],
    ids=["nchw", "channels_last"],
)
def test_more_than_2_31_elements(shape: tuple[int, ...], layout: str, op: str) -> None:
    x = torch.randn(shape, device="cuda", dtype=torch.float16)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    assert x.numel() >= 2**31
    taps, stride, padding = binomial(4), 2, "reflect"
    if op == "blur":
        y = blur_pool2d_forward(x, taps, stride, padding, 0, False)

        def reference(t):
            return blur_pool2d_reference(t, taps_tensor(taps), stride, padding, 0, False)
    else:
        codes = max_codes_buffer(x, 2)
        y = max_blur_pool2d_forward(x, taps, stride, padding, 2, codes=codes)

        def reference(t):
            return max_blur_pool2d_reference(t, taps_tensor(taps), stride, padding, 2)

    grad = torch.randn_like(y)
    if op == "blur":
        dx = blur_pool2d_backward(grad, tuple(x.shape[2:]), taps, stride, padding, 0,
                                  channels_last=layout == "channels_last")  # fmt: skip
    else:
        dx = max_blur_pool2d_backward(grad, codes, taps, stride, padding, 2)
    crop = _far_end(x[-1:], CROP)
    expected = reference(crop)
    out_crop = _far_end(y[-1:], expected.shape[-1])
    assert_close(out_crop[:, :, 2:, 2:], expected[:, :, 2:, 2:], torch.float16)

    crop_ref = crop.detach().clone().requires_grad_(True)
    (expected_dx,) = torch.autograd.grad(
        reference(crop_ref), crop_ref, _far_end(grad[-1:], expected.shape[-1])
    )
    assert_close(_far_end(dx[-1:], CROP)[:, :, 8:, 8:], expected_dx[:, :, 8:, 8:], torch.float16)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_max_blur_pool_backward_allocates_only_its_output(layout: str) -> None:
    """The fused backward hands the max map's gradient on registers: beyond the input gradient
    it returns, a backward allocates nothing of the map's size (only the small per-axis gather
    tables, cached after a first call)."""
    x = make_input((8, 64, 96, 96), torch.bfloat16, layout, seed=31)
    taps, stride, padding = binomial(4), 2, "reflect"
    codes = max_codes_buffer(x, 2)
    y = max_blur_pool2d_forward(x, taps, stride, padding, 2, codes=codes)
    grad = torch.randn_like(y)
    max_blur_pool2d_backward(grad, codes, taps, stride, padding, 2)  # tables and compile
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    dx = max_blur_pool2d_backward(grad, codes, taps, stride, padding, 2)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - before <= dx.nbytes + 2**20


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("relu", [False, True])
def test_blur_pool_keeps_only_its_output_and_mask(layout: str, relu: bool) -> None:
    """What a training forward leaves allocated once its input is dropped (as a conv's
    output would be): its output, and after the fused ReLU the bit mask (an eighth of a byte
    per input element), not the input."""
    x = make_input((8, 64, 96, 96), torch.bfloat16, layout, seed=32).requires_grad_(True)
    taps = binomial(4)
    blur_pool2d_triton(x * 1.0, taps, 2, "reflect", 0, relu)  # compile
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    activation = x * 1.0  # an intermediate that only the op can keep alive
    y = blur_pool2d_triton(activation, taps, 2, "reflect", 0, relu)
    del activation
    torch.cuda.synchronize()
    mask_bytes = x.numel() // 8 if relu else 0
    assert torch.cuda.memory_allocated() - before <= y.nbytes + mask_bytes + 2**20


def test_a_module_built_under_a_cuda_default_device_keeps_its_taps_there() -> None:
    """DDP broadcasts buffers over NCCL, which takes CUDA tensors only: the taps go where the
    module's parameters go."""
    with torch.device("cuda"):
        net = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3), BlurPool2d(2, 3))
    assert net[1].taps.device == net[0].weight.device and net[1].taps.device.type == "cuda"
    assert net[1].tap_values == (0.25, 0.5, 0.25)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_a_training_step_replays_in_a_cuda_graph(layout: str) -> None:
    """Small maps are launch-bound, and capturing the step in a CUDA graph is the usual cure:
    the fused ops' forward and backward capture (no host sync, no new device table once warmed
    up) and each replay gives what the eager step gives on the new input."""
    torch.manual_seed(33)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), BlurPool2d(8, 4, relu=True),
        torch.nn.Conv2d(8, 8, 3, padding=1), MaxBlurPool2d(8, 3, padding="zeros"),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5),
    ).cuda()  # fmt: skip
    eager = copy.deepcopy(net)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    static_x = torch.randn(4, 3, 16, 16, device="cuda").to(memory_format=memory_format)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: compiles, plans and makes the device tables
        for _ in range(3):
            net.zero_grad(set_to_none=True)
            net(static_x).square().sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    net.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_y = net(static_x)
        static_y.square().sum().backward()
    for seed in (34, 35):
        x = make_input((4, 3, 16, 16), torch.float32, layout, seed=seed)
        static_x.copy_(x)
        graph.replay()
        eager.zero_grad(set_to_none=True)
        y = eager(x)
        y.square().sum().backward()
        torch.cuda.synchronize()
        assert_close(static_y, y, torch.float32)
        for captured, expected in zip(net.parameters(), eager.parameters(), strict=True):
            assert_close(captured.grad, expected.grad, torch.float32)
