"""The names every op, module and study spec accepts, defined once."""

from typing import Literal, get_args

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
FilterFamily = Literal["binomial", "box", "triangle", "gaussian", "custom"]
Backend = Literal["auto", "torch", "triton"]

PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)
FILTER_FAMILIES: tuple[str, ...] = get_args(FilterFamily)
BACKENDS: tuple[str, ...] = get_args(Backend)


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """`value` where it is a Python int in `minimum`..`maximum` (not a bool); else a ValueError
    naming `name`, the value and, where it is some other type (a NumPy integer), the type."""
    too_big = maximum is not None and isinstance(value, int) and value > maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or too_big:
        kind = "" if isinstance(value, int) else f" ({type(value).__name__}; use int(...))"
        accepted = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name}={value!r}{kind} is invalid: expected an integer {accepted}")
    return value


# The fused MaxBlurPool saves one-byte argmax codes for its backward: windows up to 15 × 15.
MAX_CODED_KERNEL = 15
# The most taps ``backend="auto"`` gives the fused kernels. They unroll their loops over the taps
# as they compile, and compile time and registers grow fast with the taps (blur-pool compiled
# for an H100 by Triton 3.6 on a 2-core CPU, `python -m benchmarks.resource_usage`: forward and
# backward 3 s and 4 s for 7 taps, 6 s and 27 s for 16, 51 s and 325 s for 32, spilling
# registers); longer filters run on the reference, whose matrix products cost the same for
# any filter size.
MAX_FUSED_TAPS = 16
