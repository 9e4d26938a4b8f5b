"""Low-pass filter taps (spec §1): one 1-D list per family, normalised to sum 1 in float64.

The 2-D filter is always the outer product of these taps with themselves, so a filter is fully
described by its 1-D taps. Normalising in float64 before any cast avoids the fp16 overflow of
unnormalised sums (a 9-tap binomial sums to 256 per axis, 65 536 in 2-D).
"""

import math
import numbers
from collections.abc import Sequence

import torch

from kernels.options import FILTER_FAMILIES, check_int

#: The most taps a named filter has: far wider than any map a network downsamples, and a bound
#: on the host's work (a mistyped 20000 would build its taps for seconds, a million for hours).
MAX_FILTER_SIZE = 4096


def make_taps(
    size: int | None,
    family: str = "binomial",
    *,
    taps: Sequence[float] | torch.Tensor | None = None,
    sigma: float | None = None,
    argument: str = "family",
) -> torch.Tensor:
    """Return the 1-D taps of a low-pass filter as a float64 tensor that sums to 1.

    ``size`` is the number of taps (>= 1; 1 means plain subsampling). With ``family="custom"``
    the taps come from ``taps`` and ``size`` must be ``None`` or ``len(taps)``; ``taps`` is
    accepted only with the custom family and ``sigma`` only with the gaussian one, so a
    misspelt call fails instead of silently building a different filter. Errors name the family
    as ``argument`` (the ops and modules call it ``filter``).
    """
    values = filter_taps(size, family, taps=taps, sigma=sigma, argument=argument)
    return torch.tensor(values, dtype=torch.float64, device="cpu")  # whatever the default


def filter_taps(
    size: int | None,
    family: str = "binomial",
    *,
    taps: Sequence[float] | torch.Tensor | None = None,
    sigma: float | None = None,
    argument: str = "family",
) -> tuple[float, ...]:
    """The taps of :func:`make_taps` as Python floats (float64), computed without tensors: a
    call being traced (``torch.export``) then holds constants, not tensors it cannot read."""
    if family not in FILTER_FAMILIES:
        raise ValueError(f"{argument}={family!r} is not one of {FILTER_FAMILIES}")
    if taps is not None and family != "custom":
        raise ValueError(f"taps are only used with {argument}='custom', got {family!r}")
    if sigma is not None and family != "gaussian":
        raise ValueError(f"sigma is only used with {argument}='gaussian', got {family!r}")
    if family == "custom":
        return _custom_taps(size, taps, argument)
    if size is None:
        raise ValueError(
            f"filter_size=None is invalid with {argument}={family!r}: give the number of taps "
            f"(filter_size=None is for {argument}='custom', whose taps say it)"
        )
    size = check_int("filter_size", size, 1, MAX_FILTER_SIZE)
    if family == "binomial":  # exact integers (2**(size-1) overflows a float beyond ~1000 taps)
        return _normalised(_binomial_row(size - 1))
    if family == "box":
        return _normalised([1] * size)
    if family == "triangle":
        return _normalised([min(i + 1, size - i) for i in range(size)])
    if not _is_number(sigma) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(
            f"sigma={sigma!r} is invalid: the gaussian family needs a finite number > 0"
        )
    sigma = float(sigma)  # a numpy scalar would compute the taps in its own precision
    # Relative to the central tap(s), which stay 1 however small sigma is: a narrow gaussian
    # tends to the central tap(s) instead of underflowing to 0/0.
    centre = (size - 1) / 2
    nearest = min(abs(i - centre) for i in range(size))
    return _normalised(
        [math.exp(-((i - centre) ** 2 - nearest**2) / 2 / sigma / sigma) for i in range(size)]
    )


def _binomial_row(n: int) -> list[int]:
    """C(n, 0), ..., C(n, n), each from the one before (a product and an exact division)."""
    row = [1]
    for j in range(1, n + 1):
        row.append(row[-1] * (n - j + 1) // j)
    return row


def _normalised(raw: list[int] | list[float]) -> tuple[float, ...]:
    """``raw`` over its sum, each correctly rounded (integers are summed exactly)."""
    total = sum(raw) if all(isinstance(r, int) for r in raw) else math.fsum(raw)
    return tuple(r / total for r in raw)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _custom_taps(
    size: int | None, taps: Sequence[float] | torch.Tensor | None, argument: str
) -> tuple[float, ...]:
    if taps is None:
        raise ValueError(f"taps=None is invalid: {argument}='custom' needs a list of taps")
    values = _tap_numbers(taps)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"taps={values} is invalid: every tap must be finite")
    try:
        total, size_of_terms = math.fsum(values), math.fsum(abs(v) for v in values)
    except OverflowError:
        raise ValueError(
            f"taps={values} is invalid: their sum overflows; scale them down"
        ) from None
    # Relative test, so that cancellation noise such as [0.1, 0.2, -0.3] also counts as zero.
    if abs(total) <= 1e-12 * size_of_terms:
        raise ValueError(f"taps={values} is invalid: the taps must not sum to 0")
    if size is not None and check_int("filter_size", size, 1) != len(values):
        raise ValueError(
            f"filter_size={size} does not match len(taps)={len(values)}: "
            "with custom taps pass filter_size=None or the number of taps"
        )
    return _normalised(values)


def _as_float(value: numbers.Real) -> float:
    """`float(value)`, an int past float64's range as an infinity (refused as not finite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _tap_numbers(taps: Sequence[float] | torch.Tensor) -> list[float]:
    """``taps`` as a non-empty list of floats, or a ValueError that shows them. A list or tuple
    of Python numbers is read without tensors (so a traced call holds constants); anything
    else (a tensor, an array, a list of 0-d tensors) as ``torch.as_tensor`` reads it."""
    values: list[float] | None
    if isinstance(taps, (list, tuple)) and all(_is_number(v) for v in taps):
        values = [_as_float(v) for v in taps]
    else:
        array = _real_tensor(taps)
        values = array.tolist() if array is not None and array.dim() == 1 else None
    if not values:
        raise ValueError(f"taps={taps!r} is invalid: expected a non-empty 1-D list of numbers")
    return values


def _real_tensor(taps: object) -> torch.Tensor | None:
    """``taps`` as a float64 tensor, None where torch cannot read them as one; a ValueError
    for what it would read wrongly: booleans (as 0 and 1), complex numbers (real parts), taps
    that require grad (the filter is a constant, spec §1: no gradient reaches them) and taps
    on the meta device (no values)."""
    parts = list(taps) if isinstance(taps, (list, tuple)) else [taps]
    if any(isinstance(part, torch.Tensor) and part.requires_grad for part in parts):
        raise ValueError(
            "taps that require grad are invalid: the filter is a constant and gets no "
            "gradient; pass taps.detach()"
        )
    try:
        array = torch.as_tensor(taps)
    except (TypeError, ValueError, RuntimeError):
        return None
    kinds = {array.dtype} | {p.dtype for p in parts if isinstance(p, torch.Tensor)}
    if any(isinstance(p, bool) for p in parts) or torch.bool in kinds or any(
        kind.is_complex for kind in kinds
    ):
        raise ValueError(f"taps={taps!r} is invalid: expected real numbers, not booleans or "
                         "complex numbers")  # fmt: skip
    if array.is_meta:
        raise ValueError("taps on the meta device are invalid: they hold no values")
    return array.to(torch.float64)
