"""The report's tables on small hand-made run tables: what a configuration's row holds, and how
a cell reads on file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.report_table import aggregate_over_seeds


def _runs(**columns: list) -> pd.DataFrame:
    """Configuration `a` (filter size 3: trials 2 and 0, seeds 0-2) and `b` (filter size 5:
    trial 1, seeds 0-1), with their run identities and the `columns` given."""
    return pd.DataFrame(
        {
            "trial": [2, 2, 0, 1, 1],
            "filter_size": [3, 3, 3, 5, 5],
            "config_key": ["a", "a", "a", "b", "b"],
            "network_key": ["net-a", "net-a", "net-a", "net-b", "net-b"],
            "seed": [0, 1, 2, 0, 1],
            **columns,
        }
    )


def test_a_configuration_lists_its_text_metrics_but_not_its_run_identities() -> None:
    """The device a configuration's runs used is a column (its distinct values); the network
    each run trained is an identity for joins, not a measure to list."""
    configs = aggregate_over_seeds(_runs(device_metric=["cpu"] * 5), ["filter_size"])
    assert list(configs["device_metric"]) == ["cpu", "cpu"]
    assert "network_key" not in configs


def test_a_text_metric_some_runs_did_not_record_is_no_column() -> None:
    """Runs of an older engine recorded no device: a column of text and blanks is no list of
    names (sorting it would mix text and NaN), so the configurations leave it out."""
    device = ["cpu", np.nan, "cpu", "cpu", "cpu"]
    configs = aggregate_over_seeds(_runs(device_metric=device), ["filter_size"])
    assert "device_metric" not in configs
    assert list(configs["n_seeds"]) == [3, 2]
