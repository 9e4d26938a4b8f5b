"""The report's tables on small hand-made run tables: what a configuration's row holds, and how
a cell reads on file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.report_table import _file_column, aggregate_over_seeds, unused_cells


def _runs(**columns: list) -> pd.DataFrame:
    """Configuration `b` (filter size 3: trials 2 and 0, seeds 0-2), then `a` (filter size 5:
    trial 1, seeds 0-1), with their run identities and the `columns` given."""
    return pd.DataFrame(
        {
            "trial": [2, 0, 0, 1, 1],
            "filter_size": [3, 3, 3, 5, 5],
            "config_key": ["b", "b", "b", "a", "a"],
            "network_key": ["net-b", "net-b", "net-b", "net-a", "net-a"],
            "seed": [2, 0, 1, 0, 1],
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


def test_a_configuration_counts_its_seeds_its_trials_in_order_and_its_runs_at_chance() -> None:
    """`b` ran seeds 0-2 in trials 0 and 2 (each named once, in order), two of them at chance;
    the configurations keep the order of their first run, not of their keys."""
    runs = _runs(accuracy=[10.0, 11.0, 80.0, 70.0, 72.0], learned=[False, False, True, True, True])
    configs = aggregate_over_seeds(runs, ["filter_size"])
    assert list(configs["config_key"]) == ["b", "a"]
    assert list(configs["n_seeds"]) == [3, 2]
    assert list(configs["trials"]) == ["0,2", "1"]
    assert list(configs["seeds_at_chance"]) == [2, 0]


def test_a_text_metric_lists_each_distinct_value_once_in_order() -> None:
    configs = aggregate_over_seeds(_runs(device_metric=["gpu", "cpu", "gpu", "cpu", "cpu"]),
                                   ["filter_size"])  # fmt: skip
    assert list(configs["device_metric"]) == ["cpu, gpu", "cpu"]


def test_a_mean_is_over_the_finite_runs_and_n_counts_them() -> None:
    """A throughput timed at zero (inf) and one not measured (NaN) are no samples: `b`'s mean
    is that of 10 and 20 over 2 runs; `a`, with no finite run, has no mean, over 0 runs."""
    speed = [10.0, np.inf, 20.0, np.nan, np.nan]
    configs = aggregate_over_seeds(_runs(train_images_per_s=speed), ["filter_size"])
    assert configs["train_images_per_s_mean"].iloc[0] == 15.0
    assert np.isnan(configs["train_images_per_s_mean"].iloc[1])
    assert list(configs["train_images_per_s_n"]) == [2, 0]


def test_a_column_on_file_keeps_whole_numbers_and_writes_mixed_values_as_text() -> None:
    """Whole numbers beside blanks stay whole numbers; a column of several types becomes text
    with its blanks kept blank; lists and dicts become JSON."""
    numbers = _file_column(pd.Series([3, None], dtype=object))
    assert numbers.dtype == object and list(numbers) == [3, None]
    mixed = _file_column(pd.Series(["a", 1, None], dtype=object))
    assert mixed.dtype == "string" and list(mixed.fillna("blank")) == ["a", "1", "blank"]
    containers = _file_column(pd.Series([{"a": 1}, [1, 2]], dtype=object))
    assert list(containers) == ['{"a": 1}', "[1, 2]"]


def test_the_blank_cells_are_the_unused_fields_but_sites_0_and_a_blurred_filter_size() -> None:
    """Without blur every blur field is blank, but `sites` 0, which is why; with custom taps
    the filter size stays, as the report sets it to their count."""
    none = {"placement": "none", "filter": "binomial", "filter_size": 3, "padding": "zeros"}
    assert {"filter_size", "padding", "sites"} <= set(unused_cells(pd.Series(none)))
    sites_0 = {**none, "sites": 0}
    assert "sites" not in unused_cells(pd.Series(sites_0))
    assert "filter_size" in unused_cells(pd.Series(sites_0))
    custom = {"placement": "paper", "filter": "custom", "taps": [1, 2, 1], "filter_size": 3}
    assert "filter_size" not in unused_cells(pd.Series(custom))
