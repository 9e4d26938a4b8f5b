"""The names every op, module and study spec accepts, defined once."""

from typing import Literal, get_args

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
FilterFamily = Literal["binomial", "box", "triangle", "gaussian", "custom"]
Backend = Literal["auto", "torch", "triton"]

PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)
FILTER_FAMILIES: tuple[str, ...] = get_args(FilterFamily)
BACKENDS: tuple[str, ...] = get_args(Backend)

# The fused MaxBlurPool saves one-byte argmax codes for its backward: windows up to 15 × 15.
MAX_CODED_KERNEL = 15
