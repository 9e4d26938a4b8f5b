"""The Pareto front of a table: the rows no other row beats on every objective.

Computed on the configurations' means over seeds, with the same rule as Optuna's
`study.best_trials`: a row is dominated when another is at least as good on every objective and
strictly better on one. Equal rows do not dominate each other, so ties all stay on the front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DIRECTIONS = ("maximize", "minimize")


def non_dominated(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of `values` (n_rows × n_objectives).

    Rows with a non-finite value are never on the front (and dominate nothing).
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(directions):
        raise ValueError(
            f"values of shape {values.shape} must be 2-D with one column per direction "
            f"({len(directions)} directions given)"
        )
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction={direction!r}; accepted: {DIRECTIONS}")
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    loss = values * sign  # lower is better in every column
    finite = np.isfinite(loss).all(axis=1)
    candidates = loss[finite]
    front = np.zeros(len(loss), dtype=bool)
    finite_rows = np.flatnonzero(finite)
    for i, row in zip(finite_rows, candidates, strict=True):
        no_worse = (candidates <= row).all(axis=1)
        better = (candidates < row).any(axis=1)
        front[i] = not (no_worse & better).any()
    return front


def pareto_mask(
    table: pd.DataFrame, columns: Sequence[str], directions: Sequence[str]
) -> pd.Series:
    """Which rows of `table` are on the Pareto front of `columns` (a boolean Series)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table (has {list(table.columns)})")
    mask = non_dominated(table[list(columns)].to_numpy(dtype=float), directions)
    return pd.Series(mask, index=table.index, name="pareto")
