"""How the no-GPU tools (static_cost, resource_usage, host_overhead) hand back their table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_and_print(df: pd.DataFrame, csv: Path | None, digits: int) -> pd.DataFrame:
    """Write ``df`` to ``csv`` when given, print it with floats to ``digits`` decimals, and
    return it (for the tests)."""
    if csv is not None:
        df.to_csv(csv, index=False)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.{digits}f}"))
    return df
