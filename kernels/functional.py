"""The public blur-pool ops: every argument is checked here, once, then a backend runs.

The backends take already-checked arguments: ``kernels.reference`` (plain PyTorch, any device)
and the fused Triton kernels in ``kernels.ops``, imported only when first used so that
importing ``kernels`` never imports Triton.
"""

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from types import ModuleType

import torch

from kernels.filters import filter_taps
from kernels.hardware import interpreter_requested
from kernels.options import (
    BACKENDS,
    MAX_CODED_KERNEL,
    MAX_FUSED_TAPS,
    PADDING_MODES,
    check_int,
)
from kernels.reference import blur_pool2d_reference, max_blur_pool2d_reference
from kernels.tracing import general_sizes_while_exporting, held_by_transforms, outside_transforms

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Whether Triton is installed, found once (without importing it) as the module loads: a
# constant ``torch.compile`` reads, where a cached helper on the ops' path made Dynamo warn.
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def blur_pool2d(
    x: torch.Tensor,
    filter_size: int | None = 4,
    stride: int = 2,
    padding: str = "reflect",
    *,
    filter: str = "binomial",
    taps: Sequence[float] | torch.Tensor | None = None,
    sigma: float | None = None,
    pad_off: int = 0,
    relu: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Low-pass filter then subsample (spec §2), after a ReLU when ``relu``.

    ``x`` is (N, C, H, W) in float16/bfloat16/float32/float64, NCHW or channels_last; the
    result has the same dtype and memory format and is ``(H + 2*pad_off - 1) // stride + 1``
    high (``ceil(H / stride)`` when ``pad_off`` is 0). With ``filter="custom"`` pass ``taps``
    and ``filter_size=None`` (or ``len(taps)``).
    """
    taps_tensor, values = _filter(filter_size, filter, taps, sigma)
    check_blur_args(stride=stride, padding=padding, pad_off=pad_off, relu=relu, backend=backend)
    with general_sizes_while_exporting():
        return run_blur_pool2d(x, taps_tensor, lambda: values, stride, padding, pad_off, relu,
                               backend)  # fmt: skip


def max_blur_pool2d(
    x: torch.Tensor,
    filter_size: int | None = 4,
    stride: int = 2,
    padding: str = "reflect",
    *,
    max_kernel: int = 2,
    filter: str = "binomial",
    taps: Sequence[float] | torch.Tensor | None = None,
    sigma: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Dense ``max_kernel`` max-pool at stride 1 without padding, then blur-pool (spec §3).

    The output is ``ceil((H - max_kernel + 1) / stride)`` high; ties in a max window send the
    gradient to the first maximum in row-major order, as ``torch.max_pool2d`` does.
    """
    taps_tensor, values = _filter(filter_size, filter, taps, sigma)
    check_blur_args(stride=stride, padding=padding, max_kernel=max_kernel, backend=backend)
    with general_sizes_while_exporting():
        return run_max_blur_pool2d(x, taps_tensor, lambda: values, stride, padding, max_kernel,
                                   backend)  # fmt: skip


def check_blur_args(
    *,
    stride: int,
    padding: str,
    backend: str,
    pad_off: int = 0,
    relu: bool = False,
    max_kernel: int = 1,
) -> None:
    """Raise ValueError naming the first argument that is not accepted."""
    check_int("stride", stride, minimum=1)
    check_int("pad_off", pad_off, minimum=0)
    check_int("max_kernel", max_kernel, minimum=1)
    _check_choice("padding", padding, PADDING_MODES)
    _check_choice("backend", backend, BACKENDS)
    if not isinstance(relu, bool):
        raise ValueError(f"relu={relu!r} is invalid: expected True or False")


def check_input(x: object, min_size: int = 1) -> None:
    """Raise ValueError unless ``x`` is a 4-D floating tensor with H, W >= ``min_size``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x of shape {tuple(x.shape)} is invalid: expected 4-D (N, C, H, W)")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"x of dtype {x.dtype} is invalid: expected one of {FLOAT_DTYPES}")
    if min(x.shape[2], x.shape[3]) < min_size:
        raise ValueError(
            f"x of shape {tuple(x.shape)} is invalid: H and W must be >= {min_size}"
            + (" (max_kernel)" if min_size > 1 else "")
        )


def _filter(
    filter_size: int | None,
    family: str,
    taps: Sequence[float] | torch.Tensor | None,
    sigma: float | None,
) -> tuple[torch.Tensor, tuple[float, ...]]:
    """The filter's taps (:func:`kernels.filters.filter_taps`) as a CPU tensor and as floats.
    A named filter is built once per size, family and sigma: every functional call asks, and
    building it costs about as much host time as a launch."""
    named = taps is None and type(filter_size) is int and isinstance(family, str)
    if named and (sigma is None or type(sigma) in (int, float)):
        return _named_filter(filter_size, family, sigma)
    return _built_filter(filter_size, family, taps, sigma)


def _built_filter(
    filter_size: int | None,
    family: str,
    taps: Sequence[float] | torch.Tensor | None,
    sigma: float | None,
) -> tuple[torch.Tensor, tuple[float, ...]]:
    values = filter_taps(filter_size, family, taps=taps, sigma=sigma, argument="filter")
    with outside_transforms():  # a constant: not a tensor of a transform the call runs under
        return torch.tensor(values, dtype=torch.float64, device="cpu"), values


#: Named filters built so far, by (size, family, sigma); at most NAMED_FILTERS_KEPT of them.
_named_filters: dict[tuple[int, str, float | None], tuple[torch.Tensor, tuple[float, ...]]] = {}
NAMED_FILTERS_KEPT = 256


def _named_filter(
    filter_size: int, family: str, sigma: float | None
) -> tuple[torch.Tensor, tuple[float, ...]]:
    """:func:`_built_filter` of a named filter, kept once built as a plain tensor: one built
    while ``torch.export`` or another fake-tensor mode traces a call is that trace's only (it
    has no values), ``torch.compile`` builds its own in the graph, and one ``torch.jit.trace``
    builds records a constant the trace's check would find missing from the next run."""
    key = (filter_size, family, sigma)
    built = _named_filters.get(key)
    if built is None:
        built = _built_filter(filter_size, family, None, sigma)
        plain = type(built[0]) is torch.Tensor
        plain = plain and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
        if plain and len(_named_filters) < NAMED_FILTERS_KEPT:
            _named_filters[key] = built
    return built


def tap_values(taps: torch.Tensor) -> tuple[float, ...]:
    """The taps as Python floats, the form the fused kernels take (fixed at trace time)."""
    return tuple(taps.tolist())


def run_blur_pool2d(
    x: torch.Tensor,
    taps: torch.Tensor,
    values: Callable[[], tuple[float, ...]],
    stride: int,
    padding: str,
    pad_off: int,
    relu: bool,
    backend: str,
) -> torch.Tensor:
    """``blur_pool2d`` with ready taps (as a tensor, and as floats from ``values()``, asked
    only by the fused kernels) and checked options."""
    check_input(x)
    if _use_triton(backend, x, taps) and (backend == "triton" or _fused_fits(taps)):
        stride = _fused_stride(stride, x, 2 * pad_off)
        with outside_transforms():
            return _triton_ops()[0].blur_pool2d_triton(x, values(), stride, padding, pad_off,
                                                       relu)  # fmt: skip
    return blur_pool2d_reference(x, taps, stride, padding, pad_off, relu)


def run_max_blur_pool2d(
    x: torch.Tensor,
    taps: torch.Tensor,
    values: Callable[[], tuple[float, ...]],
    stride: int,
    padding: str,
    max_kernel: int,
    backend: str,
) -> torch.Tensor:
    """``max_blur_pool2d`` with ready taps (as :func:`run_blur_pool2d` takes them) and checked
    options."""
    check_input(x, min_size=max_kernel)
    if _use_triton(backend, x, taps) and (backend == "triton" or _fused_fits(taps, max_kernel)):
        stride = _fused_stride(stride, x, 1 - max_kernel)
        with outside_transforms():
            return _triton_ops()[1].max_blur_pool2d_triton(x, values(), stride, padding,
                                                           max_kernel)  # fmt: skip
    return max_blur_pool2d_reference(x, taps, stride, padding, max_kernel)


def _fused_fits(taps: torch.Tensor, max_kernel: int = 1) -> bool:
    """Whether ``auto`` gives a filter to the fused kernels: at most ``MAX_FUSED_TAPS`` taps
    (their compile time grows fast with the taps), and max windows the fused backward's
    one-byte codes hold (``MAX_CODED_KERNEL``). Larger ones run on the reference;
    ``backend="triton"`` takes any."""
    return taps.numel() <= MAX_FUSED_TAPS and max_kernel <= MAX_CODED_KERNEL


def _fused_stride(stride: int, x: torch.Tensor, reach: int) -> int:
    """The stride the fused kernels launch with. The kernels unroll a loop over the stride as
    they compile (a stride of 2**20 would take hours), while any stride of at least the
    longer side of the map that is blurred (``x``'s plus ``reach``) reads just its first row
    and column, one output: such a stride is taken down to that side, with the same result.
    Symbolic sizes (a compile with dynamic shapes) leave it as it is."""
    h, w = x.shape[2], x.shape[3]
    if type(h) is int and type(w) is int:
        return min(stride, max(h, w) + reach)
    return stride


def _use_triton(backend: str, x: torch.Tensor, taps: torch.Tensor) -> bool:
    """``auto`` takes Triton for CUDA tensors of a dtype the kernels handle, if installed, but
    not for ``x`` or ``taps`` held by a ``torch.func`` transform or forward-mode AD
    (:func:`held_by_transforms`), which only the reference supports. Plain tensors there have
    no tangent: the kernels take them."""
    if backend == "auto":
        return (x.is_cuda and x.dtype in TRITON_DTYPES and TRITON_INSTALLED
                and _fused_ops_load() and not held_by_transforms(x, taps))  # fmt: skip
    if backend == "triton" and held_by_transforms(x, taps):
        raise ValueError(
            "backend='triton' under a torch.func transform (grad, vmap, jacrev, jacfwd) or "
            "forward-mode AD, on a tensor it holds (a dual or batched one, or one needing a "
            "gradient under a transform), which the fused kernels do not support: use "
            "backend='auto' (the reference there) or 'torch'"
        )
    if backend == "triton" and not x.is_cuda and not (x.is_cpu and _triton_runs_on_cpu()):
        raise ValueError(
            f"backend='triton' runs on CUDA tensors, got x on {x.device}: use backend='auto' "
            "(the reference off CUDA) or 'torch', or set TRITON_INTERPRET=1 before importing "
            "kernels to run the Triton kernels on CPU tensors in Triton's interpreter"
        )
    return backend == "triton"


def fused_kernels_run(device: torch.device | str) -> bool:
    """Whether ``backend="triton"`` runs on tensors on ``device``: CUDA ones where Triton is
    installed, CPU ones under Triton's interpreter (``TRITON_INTERPRET=1``) or a compile-only
    driver. For commands to check before they start work that would fail call after call."""
    device = torch.device(device)
    if not TRITON_INSTALLED:
        return False
    return device.type == "cuda" or (device.type == "cpu" and _triton_runs_on_cpu())


def _triton_runs_on_cpu() -> bool:
    """Whether Triton takes CPU tensors: under its interpreter, or with a driver other than
    the machine's own set active (``benchmarks.resource_usage`` sets one that compiles and
    launches nothing). On a GPU host the active driver, once used, is the CUDA one, which
    needs device pointers."""
    if not TRITON_INSTALLED:
        return True  # ``_triton_ops`` says so
    from triton.runtime import driver  # (a plain import: ``torch.compile`` traces through it)

    active = getattr(driver, "_active", None)
    set_aside = active is not None and active is not getattr(driver, "_default", None)
    return set_aside or interpreter_requested()


def _fused_ops_load() -> bool:
    """Whether ``kernels.ops`` loads, for ``auto``: where it does not (a Triton it was not
    written for), ``auto`` runs the reference, with one warning, not an error at every call.
    Asked in eager code; a compile takes the answer the eager calls had (or the import)."""
    return torch.compiler.is_compiling() or _fused_ops_loaded()


@cache
def _fused_ops_loaded() -> bool:
    try:
        _triton_ops()
    except NotImplementedError as error:
        warnings.warn(f"{error}; backend='auto' runs the reference ops", stacklevel=6)
        return False
    return True


def _triton_ops() -> tuple[ModuleType, ModuleType]:
    """The fused-kernel modules; a plain import, so ``torch.compile`` traces through it."""
    try:
        from kernels.ops import blur_pool, max_blur_pool
    except (ImportError, AttributeError) as error:  # (AttributeError: a Triton API it lacks)
        raise NotImplementedError(
            f"backend='triton' needs kernels.ops, which cannot be loaded ({error}); "
            "use backend='torch' or 'auto'"
        ) from error
    return blur_pool, max_blur_pool


def _check_choice(name: str, value: object, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not one of {accepted}")
