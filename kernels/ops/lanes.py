"""Loads and stores of [A, 1, B] tiles laid out so that a warp's lanes run along a chosen axis,
whatever Triton's version.

Triton's coalescing pass lays each load and store out along the most contiguous axis of its
offsets. Where no axis is contiguous (NCHW columns read at a stride, columns gathered through a
table, channels clamped into range), it breaks the tie towards the first axis before Triton 3.7
and towards the last since. Laid out along the wrong axis, a warp's access touches up to 32
sectors instead of a few, and the value goes through shared memory, with two barriers, to
meet the layout of the arithmetic and of the stores. So each access below is issued either on
the tile or on its transpose, whichever makes ``AXIS`` win the tie. Where an axis is
contiguous, it decides the layout either way, and the transposes cost nothing.
"""

from __future__ import annotations

import triton
import triton.language as tl

# The axes of an [A, 1, B] tile the lanes can be asked to run along: planes or channels, or W.
ALONG_C: tl.constexpr = tl.constexpr(0)
ALONG_W: tl.constexpr = tl.constexpr(2)

_TIES_TO_FIRST_AXIS = tuple(int(part) for part in triton.__version__.split(".")[:2]) < (3, 7)


@triton.constexpr_function
def _transposed(axis: int) -> bool:
    """Whether an access with its lanes along ``axis`` is issued on the tile's transpose: where
    this Triton breaks ties towards the other axis."""
    return (axis == 0) != _TIES_TO_FIRST_AXIS


@triton.jit
def _issued(v, like, AXIS: tl.constexpr):
    """``v`` broadcast to the shape of ``like``, transposed as :func:`_transposed` says."""
    v = tl.broadcast_to(v, like.shape)
    if _transposed(AXIS):
        v = tl.permute(v, (2, 1, 0))
    return v


@triton.jit
def load_along(at, mask, other, AXIS: tl.constexpr, MASKED: tl.constexpr):
    """``tl.load(at)`` (masked, ``other`` elsewhere, with ``MASKED``) with a warp's lanes along
    ``AXIS`` (``ALONG_C`` or ``ALONG_W``) of ``at``."""
    if MASKED:
        value = tl.load(_issued(at, at, AXIS), mask=_issued(mask, at, AXIS), other=other)
    else:
        value = tl.load(_issued(at, at, AXIS))
    if _transposed(AXIS):
        value = tl.permute(value, (2, 1, 0))
    return value


@triton.jit
def store_along(at, value, mask, AXIS: tl.constexpr, MASKED: tl.constexpr):
    """``tl.store(at, value)`` (masked with ``MASKED``) with a warp's lanes along ``AXIS``."""
    if MASKED:
        tl.store(_issued(at, at, AXIS), _issued(value, at, AXIS), mask=_issued(mask, at, AXIS))
    else:
        tl.store(_issued(at, at, AXIS), _issued(value, at, AXIS))
