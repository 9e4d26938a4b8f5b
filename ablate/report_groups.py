"""Which runs are which: the settings that make separate experiments of a study's runs, and the
blur groups the answers and figures compare."""

from __future__ import annotations

import pandas as pd

from ablate.variant_config import converts

NO_BLUR, BLUR = "no blur", "blur"

#: Settings whose values are separate experiments (another network, other data or image size):
#: where a study varies one, each answer also gives the difference within each of its values,
#: which the pooled runs would mix.
SPLIT_BY = ("dataset", "data_dir", "image_size", "model")


def varied_splits(table: pd.DataFrame) -> list[str]:
    """The SPLIT_BY settings that `table` holds more than one value of."""
    return [s for s in SPLIT_BY if s in table and table[s].nunique() > 1]


def pairing_blocks(table: pd.DataFrame) -> pd.DataFrame | None:
    """Per row, what a difference pairs runs by (`report_stats.paired_difference`): the seed,
    within the network and data (the SPLIT_BY settings `table` varies); None for a table
    without seeds."""
    if "seed" not in table:
        return None
    return table[[*varied_splits(table), "seed"]]


def _column(table: pd.DataFrame, name: str, default: object) -> pd.Series:
    """`table[name]`, or `default` on every row of a table without that column."""
    return table[name] if name in table else pd.Series(default, index=table.index)


def converted(table: pd.DataFrame) -> pd.Series:
    """Per row, whether the network's downsampling was replaced (:func:`converts`): its filter
    and subsampling apply to these rows only."""
    read = table[[column for column in ("placement", "sites") if column in table]]
    return pd.Series([converts(row) for row in read.to_dict("records")], index=table.index,
                     dtype=bool)  # fmt: skip


def blur_groups(table: pd.DataFrame) -> pd.Series:
    """Per row, `"no blur"` (not :func:`converted`, or filter size 1: plain subsampling),
    `"blur"`, or `"APS without blur"` / `"LPS without blur"` (filter size 1 with polyphase
    sampling: neither the baseline nor blurred, so the questions leave it out)."""
    one_tap = _column(table, "filter_size", 0) == 1
    subsample = _column(table, "subsample", "fixed").astype(str)
    adaptive = subsample != "fixed"
    groups = pd.Series(BLUR, index=table.index, name="blur")
    groups[one_tap & adaptive] = subsample.str.upper() + " without blur"
    groups[~converted(table) | (one_tap & ~adaptive)] = NO_BLUR
    return groups
