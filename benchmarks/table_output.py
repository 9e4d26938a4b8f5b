"""How the no-GPU tools (static_cost, resource_usage, host_overhead) hand back their table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kernels.files import atomic_write


def write_csv(df: pd.DataFrame, csv: Path | None) -> None:
    """Write ``df`` to ``csv`` whole or not at all, when a path is given."""
    if csv is not None:
        atomic_write(csv, lambda temporary: df.to_csv(temporary, index=False))


def write_and_print(df: pd.DataFrame, csv: Path | None, digits: int) -> pd.DataFrame:
    """Write ``df`` to ``csv`` when given, print it with floats to ``digits`` decimals, and
    return it (for the tests)."""
    write_csv(df, csv)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.{digits}f}"))
    return df
