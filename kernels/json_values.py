"""Values as JSON types: a study's metrics in its storage and printed, benchmark results."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def json_values(value: Any, *, finite: bool = False) -> Any:
    """`value` with numpy/torch scalars as Python numbers, containers as dicts and lists, and
    anything else as text; `finite` also writes NaN and infinities as None, since strict JSON
    (what `jq` reads) has no such numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_values(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_values(v, finite=finite) for v in value]
    if value is not None and not isinstance(value, (bool, int, float, str)):
        value = value.item() if hasattr(value, "item") else str(value)
    if finite and isinstance(value, float) and not math.isfinite(value):
        return None
    return value
