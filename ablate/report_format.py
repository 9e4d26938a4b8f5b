"""Numbers as the report's sentences write them."""

from __future__ import annotations

import numpy as np


def format_value(value: float, signed: bool = False, unit: str = "", decimals: int = 2) -> str:
    """`decimals` decimals and the unit; 'n/a' alone when there is no number."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:{'+' if signed else ''}.{decimals}f}{unit}"


def difference_unit(unit: str) -> str:
    """Differences of percentages are percentage points."""
    return " points" if unit == " %" else unit


def interval_text(low: float, high: float, signed: bool = False) -> str:
    """' [low, high]', or nothing where there is no interval: no bounds, or an exact value."""
    if not np.isfinite(low) or low == high:
        return ""
    return f" [{format_value(low, signed)}, {format_value(high, signed)}]"
