"""BlurPool2d / MaxBlurPool2d and the public functional API: arguments, buffers, export."""

import io
import subprocess
import sys
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import kernels
from kernels import BlurPool2d, MaxBlurPool2d, blur_pool2d, functional, make_taps, max_blur_pool2d

FP32 = {"atol": 1e-5, "rtol": 1e-5}
#: Where backend="triton" runs: CUDA tensors, or CPU ones under the interpreter (no GPU).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def device_for(backend: str) -> str:
    return DEVICE if backend == "triton" else "cpu"


def make_modules() -> list[torch.nn.Module]:
    return [
        BlurPool2d(3, 5, 2, "zeros", pad_off=1, relu=True),
        BlurPool2d(3, None, 3, "circular", filter="custom", taps=[1.0, 3.0, 2.0]),
        MaxBlurPool2d(3, 4, 2, "reflect"),
        MaxBlurPool2d(3, 3, 1, "replicate", max_kernel=3, filter="gaussian", sigma=0.7),
    ]


def test_public_names_are_exported_and_triton_is_not_imported() -> None:
    assert set(kernels.__all__) >= {
        "make_taps", "blur_pool2d", "max_blur_pool2d", "BlurPool2d", "MaxBlurPool2d",
        "PADDING_MODES", "FILTER_FAMILIES",
    }  # fmt: skip
    check = "import sys, kernels; sys.exit('triton' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], check=False).returncode == 0


@pytest.mark.parametrize("channels_last", [False, True])
def test_modules_match_the_functional_ops(channels_last: bool) -> None:
    x = torch.randn(2, 3, 9, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    blur, custom, max_blur, max3 = make_modules()
    pairs = [
        (blur, blur_pool2d(x, 5, 2, "zeros", pad_off=1, relu=True)),
        (custom, blur_pool2d(x, None, 3, "circular", filter="custom", taps=[1.0, 3.0, 2.0])),
        (max_blur, max_blur_pool2d(x, 4, 2, "reflect")),
        (max3, max_blur_pool2d(x, 3, 1, "replicate", max_kernel=3, filter="gaussian", sigma=0.7)),
    ]
    for module, expected in pairs:
        out = module(x)
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(out, expected, **FP32)


PUBLIC_CALLS = {
    "blur_pool": lambda x, padding, backend: blur_pool2d(
        x, 5, 2, padding, pad_off=1, relu=True, backend=backend
    ),
    "max_blur_pool": lambda x, padding, backend: max_blur_pool2d(
        x, None, 3, padding, max_kernel=3, filter="custom", taps=[1.0, 3.0, 2.0], backend=backend
    ),
}


@pytest.mark.parametrize("padding", kernels.PADDING_MODES)
@pytest.mark.parametrize("op", PUBLIC_CALLS)
def test_the_public_ops_run_their_arguments_on_the_triton_backend(op: str, padding: str) -> None:
    """The public ops hand every argument (padding, pad_off, relu, stride, max_kernel, taps)
    to the fused kernels: values and gradients equal the reference's."""
    call = PUBLIC_CALLS[op]
    x = torch.randn(2, 3, 9, 7, device=DEVICE).contiguous(memory_format=torch.channels_last)
    ours, reference = (x.clone().requires_grad_() for _ in range(2))
    out = call(ours, padding, "triton")
    grad = torch.randn_like(out)
    out.backward(grad)
    expected = call(reference, padding, "torch")
    expected.backward(grad)
    torch.testing.assert_close(out, expected, **FP32)
    torch.testing.assert_close(ours.grad, reference.grad, **FP32)


def test_taps_live_in_a_buffer_that_the_forward_uses() -> None:
    module = BlurPool2d(2, 3)
    assert list(module.state_dict()) == ["taps"]
    torch.testing.assert_close(module.state_dict()["taps"], make_taps(3))
    custom = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    module.load_state_dict({"taps": custom})
    x = torch.randn(1, 2, 6, 5)
    expected = blur_pool2d(x, None, filter="custom", taps=custom)
    torch.testing.assert_close(module(x), expected, **FP32)
    assert "taps" in dict(module.named_buffers())
    assert not list(module.parameters())
    assert "taps=[0.5, 0.25, 0.25]" in repr(module)  # no longer the binomial it was built as
    for taps, total in (([1.0, 2.0, 1.0], r"4\.0"), ([float("nan")] * 3, "nan")):
        with pytest.raises(RuntimeError, match=f"taps sum to {total}: the taps of a low-pass"):
            module.load_state_dict({"taps": torch.tensor(taps, dtype=torch.float64)})
        assert torch.equal(module.taps, custom)
    torch.testing.assert_close(module(x), expected, **FP32)  # the taps it kept run
    box = BlurPool2d(2, 3, filter="box")  # a checkpoint that kept its taps in float32 loads
    box.load_state_dict({"taps": box.taps.float()})
    assert "filter='box'" in repr(box)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_a_loaded_filter_is_the_one_every_backend_runs(backend: str) -> None:
    """The fused kernels take the taps as floats: loading a state must update those too."""
    module = BlurPool2d(2, None, filter="custom", taps=[1.0, 0.0, 0.0], backend=backend)
    module.load_state_dict(BlurPool2d(2, 3).state_dict())
    x = torch.randn(1, 2, 6, 5, device=device_for(backend))
    torch.testing.assert_close(module(x), blur_pool2d(x, 3, backend="torch"), **FP32)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_taps_loaded_by_assignment_stay_float64_and_refused_ones_leave_the_callers_tensor(
    backend: str,
) -> None:
    """`load_state_dict(assign=True)` hands the module the checkpoint's tensor: float32 taps
    are taken as float64 (not compared across dtypes, which had failed half-way through the
    load), and taps that are refused are neither kept nor written over in the caller's dict."""
    module = BlurPool2d(2, 3, backend=backend)
    module.load_state_dict({"taps": torch.tensor([0.5, 0.5, 0.0])}, assign=True)
    assert module.taps.dtype == torch.float64 and module.tap_values == (0.5, 0.5, 0.0)
    x = torch.randn(1, 2, 6, 5, device=device_for(backend))
    expected = blur_pool2d(x, None, filter="custom", taps=[0.5, 0.5, 0.0], backend="torch")
    torch.testing.assert_close(module(x), expected, **FP32)
    assert "taps=[0.5, 0.5, 0]" in repr(module)
    exact = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    module.load_state_dict({"taps": exact}, assign=True)
    assert module.taps is exact  # float64: shared, as assign means
    refused = {"taps": torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)}
    with pytest.raises(RuntimeError, match=r"taps sum to 3\.0"):
        module.load_state_dict(refused, assign=True)
    assert refused["taps"].tolist() == [1.0, 1.0, 1.0] and module.taps is not refused["taps"]
    assert module.tap_values == (0.25, 0.5, 0.25) and module.taps.tolist() == [0.25, 0.5, 0.25]


def _custom_reference(module_type: type, x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    return module_type(x.shape[1], None, filter="custom", taps=taps, backend="torch")(x)


@pytest.mark.parametrize("module_type", [BlurPool2d, MaxBlurPool2d])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_taps_assigned_reach_every_backend(module_type: type, backend: str) -> None:
    """The fused kernels take the taps as floats read from the buffer: new taps assigned to it
    must be read again, not leave the Triton path on the old filter while the reference has
    the new one."""
    module = module_type(2, 3, backend=backend)
    x = torch.randn(1, 2, 7, 6, device=device_for(backend))
    module(x)
    module.taps = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(module(x), _custom_reference(module_type, x, [0.5, 0.5, 0.0]),
                               **FP32)  # fmt: skip


@pytest.mark.parametrize("module_type", [BlurPool2d, MaxBlurPool2d])
def test_taps_assigned_reach_compiled_code_and_data_parallel_replicas(module_type: type) -> None:
    """Both take the floats read last, not the buffer: assigned taps are read at once, so a
    compiled module runs them (it had kept its old filter, silently) and so do the replicas
    `nn.DataParallel` makes of a module that never runs itself."""
    module = module_type(2, 3, backend="triton")
    x = torch.randn(1, 2, 7, 6, device=DEVICE)
    torch._dynamo.reset()
    backend = "inductor" if DEVICE == "cuda" else "aot_eager"  # (no C++ compile on a CPU)
    compiled = torch.compile(module, backend=backend)
    compiled(x)
    new = [0.5, 0.5, 0.0]
    module.taps = torch.tensor(new, dtype=torch.float64, device=module.taps.device)
    expected = _custom_reference(module_type, x, new)
    torch.testing.assert_close(compiled(x), expected, **FP32)
    replica = module._replicate_for_data_parallel()
    replica._buffers["taps"] = module.taps.clone()  # as replicate() hands each its copy
    torch.testing.assert_close(replica(x), expected, **FP32)


@pytest.mark.parametrize("module_type", [BlurPool2d, MaxBlurPool2d])
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize(
    ("taps", "message"),
    [
        (torch.ones(3, 3, dtype=torch.float64) / 9, r"taps of shape \(3, 3\).*1-D floating"),
        (torch.tensor(1.0, dtype=torch.float64), r"taps of shape \(\).*non-empty 1-D"),
        (torch.ones(0, dtype=torch.float64), r"taps of shape \(0,\)"),
        (torch.tensor([0, 1, 0]), r"dtype torch\.int64 are invalid"),
        (torch.tensor([0.5, float("nan"), 0.5]), r"taps sum to nan: .*finite and normalised"),
        (torch.tensor([1.0, 2.0, 1.0]), r"taps sum to 4\.0"),
    ],
)
def test_taps_given_after_construction_are_checked_as_loaded_ones_are(
    module_type: type, backend: str, taps: torch.Tensor, message: str
) -> None:
    """Taps assigned to the buffer or swapped in by functional_call fail by name on either
    backend (they had failed inside one backend, or run unnormalised, differently on each)."""
    module = module_type(2, 3, backend=backend)
    x = torch.randn(1, 2, 7, 6, device=device_for(backend))
    with pytest.raises(ValueError, match=message):
        torch.func.functional_call(module, {"taps": taps}, (x,))
    torch.testing.assert_close(module(x), module_type(2, 3, backend="torch")(x), **FP32)
    module.taps = taps
    with pytest.raises(ValueError, match=message):
        module(x)


def test_a_buffer_written_in_place_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP writes every buffer in place at each step (its broadcast from rank 0): reading the
    taps again then would wait for the device at every call."""
    module = BlurPool2d(2, 3)
    with torch.no_grad():
        module.taps.copy_(module.taps.clone())  # as DDP's broadcast does
    monkeypatch.setattr("kernels.modules.tap_values", pytest.fail)
    assert module._fused_tap_values() == (0.25, 0.5, 0.25)


@pytest.mark.parametrize("module_type", [BlurPool2d, MaxBlurPool2d])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_taps_substituted_by_functional_call_reach_every_backend(
    module_type: type, backend: str
) -> None:
    """`torch.func.functional_call` swaps the buffer for one call: that call runs the swapped
    taps, and the next plain call the module's own again."""
    module = module_type(2, 3, backend=backend)
    x = torch.randn(1, 2, 7, 6, device=device_for(backend))
    swapped = torch.tensor([0.0, 0.25, 0.75], dtype=torch.float64)
    y = torch.func.functional_call(module, {"taps": swapped}, (x,))
    torch.testing.assert_close(y, _custom_reference(module_type, x, [0.0, 0.25, 0.75]), **FP32)
    torch.testing.assert_close(module(x), module_type(2, 3, backend="torch")(x), **FP32)


def test_a_module_saved_whole_before_the_read_was_kept_reads_its_taps() -> None:
    """`torch.save(model)` of an earlier version pickles a module without the kept read: it
    must read its taps when first asked, not fail moving or running."""
    module = BlurPool2d(2, None, filter="custom", taps=[1.0, 2.0, 1.0], backend="triton")
    del module.__dict__["_read_taps"]
    x = torch.randn(1, 2, 7, 6, device=DEVICE)
    torch.testing.assert_close(module.to(DEVICE)(x), _custom_reference(BlurPool2d, x, [1, 2, 1]),
                               **FP32)  # fmt: skip
    assert module.tap_values == (0.25, 0.5, 0.25)


def test_a_data_parallel_replica_takes_the_floats_of_the_module_it_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`nn.DataParallel` makes replicas at every call, each with copies of the buffers: reading
    the copies would wait for each device at every call."""
    module = BlurPool2d(2, 3)
    replica = module._replicate_for_data_parallel()
    replica._buffers["taps"] = module.taps.clone()  # as replicate() hands each its copy
    monkeypatch.setattr("kernels.modules.tap_values", pytest.fail)
    assert replica._fused_tap_values() == (0.25, 0.5, 0.25)


def test_moving_a_module_does_not_read_its_taps_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a CUDA buffer waits for the device (and is refused while a CUDA graph is
    captured): moving the module moves the taps' values without reading them again."""
    module = BlurPool2d(2, 3).to("meta")
    monkeypatch.setattr("kernels.modules.tap_values", pytest.fail)
    assert module.taps.device.type == "meta"
    assert module._fused_tap_values() == (0.25, 0.5, 0.25)


def test_a_module_moved_to_the_meta_device_gets_its_taps_back_from_to_empty() -> None:
    """The meta copy has no values (`to_empty` had failed copying out of it): the floats read
    before the move are the taps."""
    net = nn.Sequential(MaxBlurPool2d(2, 3)).to("meta")
    net.to_empty(device="cpu")
    assert net[0].taps.tolist() == [0.25, 0.5, 0.25] and net[0].taps.dtype == torch.float64


@pytest.mark.parametrize("module_type", [BlurPool2d, MaxBlurPool2d])
def test_a_module_built_on_the_meta_device_keeps_its_taps_through_to_empty(
    module_type: type,
) -> None:
    """Large models are built on the meta device and materialised with `to_empty()`: the taps
    are no parameter a checkpoint fills, so they are made on the CPU and keep their values."""
    with torch.device("meta"):
        net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), module_type(2, 3))
    net.to_empty(device="cpu")
    assert net[1].taps.tolist() == [0.25, 0.5, 0.25] and net[1].taps.dtype == torch.float64
    x = torch.randn(1, 2, 6, 5)
    with torch.device("meta"):  # the reference builds its tables on the CPU, as the input is
        y = net[1](x)
    torch.testing.assert_close(y, module_type(2, 3)(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_dtype_cast_of_the_module_keeps_the_taps_exact(dtype: torch.dtype) -> None:
    """Spec §1: taps are normalised in float64 and cast once, by the op, to the input's dtype;
    a module cast (`.half()`) rounding them first would leave taps that do not sum to 1."""
    module = BlurPool2d(2, 5, filter="gaussian", sigma=0.7).to(dtype)
    assert module.taps.dtype == torch.float64
    torch.testing.assert_close(module.taps, make_taps(5, "gaussian", sigma=0.7), rtol=0, atol=0)
    x = torch.randn(1, 2, 6, 5).to(dtype)
    expected = blur_pool2d(x, 5, filter="gaussian", sigma=0.7)
    torch.testing.assert_close(module(x), expected, rtol=0, atol=0)


def test_repr_names_every_setting() -> None:
    text = [repr(m) for m in make_modules()]
    assert text[0] == (
        "BlurPool2d(3, filter_size=5, filter='binomial', stride=2, padding='zeros', "
        "pad_off=1, relu=True, backend='auto')"
    )
    assert "taps=[0.1667, 0.5, 0.3333]" in text[1]
    assert text[2] == (
        "MaxBlurPool2d(3, filter_size=4, filter='binomial', stride=2, padding='reflect', "
        "max_kernel=2, backend='auto')"
    )
    assert "filter='gaussian', sigma=0.7" in text[3]


@pytest.mark.parametrize("module_type", [BlurPool2d, MaxBlurPool2d])
def test_wrong_channel_count_is_a_value_error(module_type: type) -> None:
    module = module_type(4)
    with pytest.raises(ValueError, match=r"\[2, 3, 8, 8\].*\(N, 4, H, W\)"):
        module(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        module(torch.randn(4, 8, 8))
    with pytest.raises(ValueError, match=r"input must be a torch.Tensor .*got list"):
        module([1.0])


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        (lambda: BlurPool2d(0), ["channels=0", ">= 1"]),
        (lambda: BlurPool2d(3, 0), ["filter_size=0", "from 1 to 4096"]),
        (lambda: BlurPool2d(np.int64(3)), ["channels=", "(int64; use int(...))"]),
        (lambda: MaxBlurPool2d(3, stride=np.int32(2)), ["stride=", "(int32; use int(...))"]),
        (lambda: BlurPool2d(3, stride=0), ["stride=0", ">= 1"]),
        (lambda: BlurPool2d(3, padding="same"), ["padding='same'", "reflect", "circular"]),
        (lambda: BlurPool2d(3, filter="sinc"), ["filter='sinc'", "binomial"]),
        (lambda: BlurPool2d(3, sigma=1.0), ["sigma is only used with filter='gaussian'"]),
        (lambda: BlurPool2d(3, pad_off=-1), ["pad_off=-1", ">= 0"]),
        (lambda: BlurPool2d(3, relu=1), ["relu=1", "True or False"]),
        (lambda: BlurPool2d(3, backend="cuda"), ["backend='cuda'", "triton"]),
        (lambda: MaxBlurPool2d(3, max_kernel=0), ["max_kernel=0", ">= 1"]),
        (lambda: BlurPool2d(3, 3, filter="gaussian", sigma="1"), ["sigma='1'", "number > 0"]),
        (lambda: BlurPool2d(3, 3, filter="gaussian", sigma=True), ["sigma=True", "number > 0"]),
        (
            lambda: MaxBlurPool2d(3, None, filter="custom", taps=[1.0, -1.0]),
            ["taps=[1.0, -1.0]", "sum to 0"],
        ),
    ],
)
def test_bad_module_arguments_are_value_errors(build: object, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as error:
        build()
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda x: blur_pool2d(x[0]), ["(3, 8, 8)", "4-D"]),
        (lambda x: blur_pool2d(x.long()), ["torch.int64", "float32"]),
        (lambda x: blur_pool2d(x.numpy()), ["torch.Tensor", "ndarray"]),
        (lambda x: blur_pool2d(x, 0), ["filter_size=0"]),
        (lambda x: blur_pool2d(x, True), ["filter_size=True"]),  # not the cached size 1
        (lambda x: blur_pool2d(x, 3, filter="gaussian", sigma=-1.0), ["sigma=-1.0"]),
        (lambda x: blur_pool2d(x, stride=0), ["stride=0", ">= 1"]),
        (lambda x: blur_pool2d(x, padding="mirror"), ["padding='mirror'", "zeros"]),
        (lambda x: blur_pool2d(x, filter="gauss"), ["'gauss'", "gaussian"]),
        (lambda x: blur_pool2d(x, None, filter="custom", taps=[1, float("nan")]), ["finite"]),
        (lambda x: blur_pool2d(x, None, filter="custom", taps=[2, -2]), ["sum to 0"]),
        (lambda x: blur_pool2d(x, backend="cpu"), ["backend='cpu'", "'auto'"]),
        (lambda x: blur_pool2d(x[:, :, :0]), ["(1, 3, 0, 8)", ">= 1"]),
        (lambda x: max_blur_pool2d(x, max_kernel=9), ["(1, 3, 8, 8)", ">= 9", "max_kernel"]),
        (lambda x: max_blur_pool2d(x, stride=1.5), ["stride=1.5", "integer"]),
        (lambda x: blur_pool2d(x, None, filter="custom"), ["taps=None", "filter='custom'"]),
        (lambda x: blur_pool2d(x, 5, pad_off=-1), ["pad_off=-1", ">= 0"]),
        (lambda x: blur_pool2d(x, relu="no"), ["relu='no'", "True or False"]),
        (lambda x: max_blur_pool2d(x, max_kernel=0), ["max_kernel=0", ">= 1"]),
        (lambda x: blur_pool2d(x[..., :0]), ["(1, 3, 8, 0)", ">= 1"]),
        (lambda x: max_blur_pool2d(x[..., :1]), ["(1, 3, 8, 1)", ">= 2", "max_kernel"]),
        (lambda x: blur_pool2d(x.to(torch.float8_e4m3fn)), ["float8_e4m3fn", "float32"]),
        (  # True is not the sigma=1 filter built by the first call
            lambda x: [blur_pool2d(x, 3, filter="gaussian", sigma=s) for s in (1, True)],
            ["sigma=True", "number > 0"],
        ),
        (lambda x: max_blur_pool2d(x[0]), ["4-D"]),
        # True is not the size-1 filter built by the first call
        (lambda x: [blur_pool2d(x, size) for size in (1, True)], ["filter_size=True"]),
        (lambda x: blur_pool2d(x, backend=""), ["backend=''", "'auto'"]),
        (lambda x: max_blur_pool2d(x, padding=""), ["padding=''", "reflect"]),
    ],
)
def test_bad_functional_arguments_are_value_errors(call: object, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as error:
        call(torch.randn(1, 3, 8, 8))
    for fragment in fragments:
        assert fragment in str(error.value)


def test_only_max_blur_pool_names_max_kernel_as_what_sets_the_smallest_map() -> None:
    with pytest.raises(ValueError, match=r"must be >= 1") as error:
        blur_pool2d(torch.randn(1, 3, 8, 0))
    assert "max_kernel" not in str(error.value)


def test_defaults_are_the_documented_ones() -> None:
    """Bin-4, stride 2, reflect padding (and a 2x2 max): MaxBlurPool2d(C) is the drop-in for
    nn.MaxPool2d(2, 2), BlurPool2d(C) for nn.AvgPool2d(2, 2)."""
    assert repr(BlurPool2d(3)) == (
        "BlurPool2d(3, filter_size=4, filter='binomial', stride=2, padding='reflect', "
        "pad_off=0, relu=False, backend='auto')"
    )
    assert repr(MaxBlurPool2d(3)) == (
        "MaxBlurPool2d(3, filter_size=4, filter='binomial', stride=2, padding='reflect', "
        "max_kernel=2, backend='auto')"
    )
    x = torch.randn(1, 3, 9, 8)
    explicit = {"filter": "binomial", "backend": "torch"}
    assert torch.equal(blur_pool2d(x), blur_pool2d(x, 4, 2, "reflect", pad_off=0, **explicit))
    assert torch.equal(max_blur_pool2d(x), max_blur_pool2d(x, 4, 2, "reflect", max_kernel=2,
                                                           **explicit))  # fmt: skip


def test_functional_ops_build_a_named_filter_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every functional call needs the filter's taps; a named one is made once (it costs
    about as much host time as a launch), custom taps every call, with the same results."""
    made: list[object] = []
    build = functional.filter_taps
    monkeypatch.setattr(functional, "filter_taps", lambda *a, **k: made.append(a) or build(*a, **k))
    monkeypatch.setattr(functional, "_named_filters", {})
    x = torch.randn(1, 2, 9, 8)
    first = blur_pool2d(x, 5, filter="gaussian", sigma=1.5)
    torch.testing.assert_close(blur_pool2d(x, 5, filter="gaussian", sigma=1.5), first)
    taps = make_taps(5, "gaussian", sigma=1.5)
    custom = max_blur_pool2d(x, None, filter="custom", taps=taps)
    torch.testing.assert_close(max_blur_pool2d(x, 5, filter="gaussian", sigma=1.5), custom)
    assert len(made) == 2  # the named filter once, the custom taps once


def test_named_filters_past_the_number_kept_are_built_for_their_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Named filters are built once each, up to ``NAMED_FILTERS_KEPT`` of them; the ones past
    that are built for their call, with the same results."""
    monkeypatch.setattr(functional, "_named_filters", {})
    monkeypatch.setattr(functional, "NAMED_FILTERS_KEPT", 2)
    x = torch.randn(1, 2, 9, 8)
    for size in (2, 3, 4, 4):
        expected = blur_pool2d(x, None, filter="custom", taps=make_taps(size))
        torch.testing.assert_close(blur_pool2d(x, size), expected)
    assert [key[0] for key in functional._named_filters] == [2, 3]


def test_triton_backend_without_its_module_is_not_implemented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kernels.ops

    for name in ("blur_pool", "max_blur_pool"):
        monkeypatch.setitem(sys.modules, f"kernels.ops.{name}", None)
        monkeypatch.delattr(kernels.ops, name, raising=False)
    x = torch.randn(1, 2, 6, 6, device=DEVICE)
    with pytest.raises(NotImplementedError, match=r"kernels\.ops"):
        blur_pool2d(x, backend="triton")
    with pytest.raises(NotImplementedError, match=r"kernels\.ops"):
        MaxBlurPool2d(2, backend="triton")(x)
    x = x.cpu()
    torch.testing.assert_close(blur_pool2d(x, backend="auto"), blur_pool2d(x, backend="torch"))
    # On CUDA, auto passes over fused kernels that cannot load (a Triton they were not written
    # for), with one warning, rather than fail at every call.
    functional._fused_ops_loaded.cache_clear()
    try:
        with pytest.warns(UserWarning, match=r"cannot be loaded.*backend='auto' runs the ref"):
            assert not functional._fused_ops_load()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # known now: no second warning
            assert not functional._fused_ops_load()
    finally:
        functional._fused_ops_loaded.cache_clear()


def test_triton_backend_on_a_cpu_tensor_says_what_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside Triton's interpreter the kernels need CUDA tensors; Triton's own error ('0 active
    drivers') names neither the backend nor the device."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.randn(1, 2, 6, 6)
    expected = r"backend='triton' runs on CUDA tensors, got x on cpu.*TRITON_INTERPRET=1"
    with pytest.raises(ValueError, match=expected):
        blur_pool2d(x, backend="triton")
    with pytest.raises(ValueError, match=expected):
        MaxBlurPool2d(2, backend="triton")(x)


def test_triton_backend_on_a_gpu_host_refuses_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU host Triton's driver, once used, is the CUDA one: a CPU tensor would reach a
    launch as a host pointer, so it is refused by name as where there is no GPU."""
    from triton.runtime import driver

    class CudaLike:
        def get_current_target(self) -> str:
            return "cuda"

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(driver, "_default", CudaLike())
    monkeypatch.setattr(driver, "_active", driver._default)
    with pytest.raises(ValueError, match=r"backend='triton' runs on CUDA tensors, got x on cpu"):
        blur_pool2d(torch.randn(1, 2, 6, 6), backend="triton")


@pytest.mark.parametrize("op", [blur_pool2d, max_blur_pool2d])
def test_triton_backend_refuses_meta_tensors(op: Callable[..., torch.Tensor]) -> None:
    """Meta tensors have no data for the interpreter to copy: named, where the reference
    computes their shape."""
    x = torch.randn(1, 2, 6, 6, device="meta")
    assert op(x, backend="torch").shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"backend='triton' runs on CUDA tensors, got x on meta"):
        op(x, backend="triton")


def test_torchscript_matches_eager_and_survives_save_and_load() -> None:
    x = torch.randn(2, 3, 9, 6)
    for module in make_modules():
        scripted = torch.jit.script(module)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        torch.testing.assert_close(loaded(x), module(x), **FP32)
        with pytest.raises(torch.jit.Error, match="channel count"):
            loaded(torch.randn(1, 5, 6, 6))


@pytest.mark.parametrize("channels", [3, 8])
def test_scripted_modules_match_eager_on_channels_last_maps_of_few_and_many_channels(
    channels: int,
) -> None:
    """From 8 channels the reference blurs a channels_last map in its own layout, below as NCHW
    planes: both branches compile under TorchScript."""
    x = torch.randn(2, channels, 9, 6).contiguous(memory_format=torch.channels_last)
    for module in (BlurPool2d(channels, 5, relu=True), MaxBlurPool2d(channels, 3, padding="zeros")):
        torch.testing.assert_close(torch.jit.script(module)(x), module(x), **FP32)


def test_torch_export_matches_eager_with_plain_aten_ops() -> None:
    x = torch.randn(2, 3, 9, 6)
    for module in make_modules():
        exported = torch.export.export(module, (x,))
        torch.testing.assert_close(exported.module()(x), module(x), **FP32)
        targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
        assert not any("Function" in t or "apply" in t for t in targets), targets


@pytest.mark.parametrize("padding", kernels.PADDING_MODES)
def test_torch_export_takes_a_bounded_image_size(padding: str) -> None:
    """A named ``Dim`` with bounds, as deployment code gives it: MaxBlurPool's products had
    left a guard (n - 1 < (n - 1) * (n // 2)) that the exporter could not prove over the
    range, and refused the export."""
    size = {2: torch.export.Dim("h", min=8, max=512), 3: torch.export.Dim("w", min=8, max=512)}
    for module in (BlurPool2d(4, 3, padding=padding), MaxBlurPool2d(4, 4, padding=padding)):
        for layout in (torch.contiguous_format, torch.channels_last):
            example = torch.randn(2, 4, 32, 32).contiguous(memory_format=layout)
            exported = torch.export.export(module, (example,), dynamic_shapes=(size,)).module()
            for shape in [(2, 4, 19, 27), (2, 4, 8, 8), (2, 4, 64, 9)]:
                x = torch.randn(shape).contiguous(memory_format=layout)
                out = exported(x)
                torch.testing.assert_close(out, module(x), **FP32)
                assert out.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("padding", kernels.PADDING_MODES)
def test_torch_export_takes_image_sizes_down_to_the_smallest_map(padding: str) -> None:
    """Down to 1 (BlurPool2d) and max_kernel (MaxBlurPool2d), as spec §2 and §3 define them:
    every op output of a size that could be 1 (ceil(H / 2), H - max_kernel + 1) had left a
    guard (that size != 1) the exporter could not prove over the range, and it was refused."""
    for module, smallest in [(BlurPool2d(2, 4, padding=padding), 1),
                             (MaxBlurPool2d(2, 3, padding=padding, max_kernel=3), 3)]:  # fmt: skip
        size = {d: torch.export.Dim(name, min=smallest, max=16) for d, name in [(2, "h"), (3, "w")]}
        for layout in (torch.contiguous_format, torch.channels_last):
            example = torch.randn(1, 2, 8, 8).contiguous(memory_format=layout)
            exported = torch.export.export(module, (example,), dynamic_shapes=(size,)).module()
            for extra in [(0, 0), (0, 4), (2, 1)]:
                shape = (1, 2, smallest + extra[0], smallest + extra[1])
                x = torch.randn(shape).contiguous(memory_format=layout)
                out = exported(x)
                torch.testing.assert_close(out, module(x), **FP32)
                assert out.is_contiguous(memory_format=layout)


class FunctionalCalls(torch.nn.Module):
    """The public ops called in a forward, with a named filter and with custom taps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = blur_pool2d(x, 3, 1, "circular", relu=True, backend="triton")
        return max_blur_pool2d(y, None, filter="custom", taps=[1.0, 2.0, 1.0], backend="triton")


def test_torch_export_of_the_functional_ops_records_their_custom_ops() -> None:
    """The taps are built as Python floats, so an exported call holds them as constants (a
    tensor's values cannot be read while tracing)."""
    x = torch.randn(2, 3, 9, 6, device=DEVICE)
    exported = torch.export.export(FunctionalCalls(), (x,))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert [t for t in targets if t.startswith("shiftlab.")] == [
        "shiftlab.blur_pool2d.default", "shiftlab.max_blur_pool2d.default",
    ]  # fmt: skip
    torch.testing.assert_close(exported.module()(x), FunctionalCalls()(x), **FP32)


def test_torch_export_of_the_functional_ops_takes_the_smallest_map() -> None:
    """The custom ops' outputs (the fake implementations' shapes) too: blur-pool at stride 1,
    then MaxBlurPool with max_kernel=2, exported from 2 rows and columns up."""
    size = {2: torch.export.Dim("h", min=2, max=16), 3: torch.export.Dim("w", min=2, max=16)}
    x = torch.randn(1, 3, 8, 8, device=DEVICE)
    exported = torch.export.export(FunctionalCalls(), (x,), dynamic_shapes=(size,)).module()
    for shape in [(1, 3, 2, 2), (1, 3, 2, 5), (1, 3, 3, 4)]:
        x = torch.randn(shape, device=DEVICE)
        torch.testing.assert_close(exported(x), FunctionalCalls()(x), **FP32)


def test_an_export_leaves_no_traced_filter_for_later_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A named filter first built while ``torch.export`` traced a call was a fake tensor, and
    was kept: every later eager call with that filter on the reference path read garbage."""
    monkeypatch.setattr(functional, "_named_filters", {})
    x = torch.randn(1, 2, 9, 8)

    class Calls(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return blur_pool2d(x, 5, 2, "zeros", backend="torch")

    exported = torch.export.export(Calls(), (x,))
    expected = BlurPool2d(2, 5, 2, "zeros", backend="torch")(x)
    torch.testing.assert_close(blur_pool2d(x, 5, 2, "zeros", backend="torch"), expected, **FP32)
    torch.testing.assert_close(exported.module()(x), expected, **FP32)


def test_a_functional_call_traces_on_its_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A named filter first built inside ``torch.jit.trace`` was kept, so the trace's check,
    which runs the call again, found a graph without it and refused the trace."""
    monkeypatch.setattr(functional, "_named_filters", {})
    x = torch.randn(1, 2, 9, 8)
    traced = torch.jit.trace(lambda x: blur_pool2d(x, 5, backend="torch"), x)
    torch.testing.assert_close(traced(x), BlurPool2d(2, 5, backend="torch")(x), **FP32)


def test_onnx_export_runs() -> None:
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    model = torch.nn.Sequential(*make_modules()[2:], *make_modules()[:2])
    x = torch.randn(1, 3, 11, 9)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    assert {"MaxPool", "MatMul"} <= {node.op_type for node in proto.graph.node}
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX graph needs onnxruntime")
    session = ort.InferenceSession(buffer.getvalue())
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(x), **FP32)


@pytest.mark.parametrize("padding", kernels.PADDING_MODES)
def test_onnx_export_with_a_dynamic_map_size_runs_at_other_sizes(padding: str) -> None:
    """The dynamo exporter with a dynamic height and width: the padding index maps are built
    from the symbolic sizes (reflect and circular padding had failed to convert), and a
    1-pixel map needs no branch of its own (the graph keeps no size guards)."""
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX graph needs onnxruntime")
    model = torch.nn.Sequential(
        BlurPool2d(3, 3, padding=padding), MaxBlurPool2d(3, 4, padding=padding)
    )
    dynamic = torch.export.Dim.DYNAMIC
    program = torch.onnx.export(
        model, (torch.randn(2, 3, 16, 16),), dynamo=True, dynamic_shapes=({2: dynamic, 3: dynamic},)
    )
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    for shape in [(2, 3, 13, 22), (2, 3, 9, 7), (2, 3, 5, 4)]:  # the last: 1-pixel maps
        x = torch.randn(shape)
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        torch.testing.assert_close(torch.from_numpy(out), model(x), **FP32)
