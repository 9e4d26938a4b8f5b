"""Which runs are which: the settings that make separate experiments of a study's runs, and the
blur groups the answers and figures compare."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ablate.variant_config import VariantConfig, converts

NO_BLUR, BLUR = "no blur", "blur"

#: Settings whose values are separate experiments (another network, other data or image size):
#: where a study varies one, each answer also gives the difference within each of its values,
#: which the pooled runs would mix.
SPLIT_BY = ("dataset", "data_dir", "image_size", "model")


def varied_splits(table: pd.DataFrame) -> list[str]:
    """The SPLIT_BY settings that `table` holds more than one value of."""
    return [s for s in SPLIT_BY if s in table and table[s].nunique() > 1]


def pairing_blocks(
    table: pd.DataFrame, groups: Sequence[pd.Series] = ()
) -> pd.DataFrame | None:
    """Per row, what a difference pairs runs by (`report_stats.paired_difference`): the seed,
    within the network and data (the SPLIT_BY settings `table` varies) and within each setting
    that every one of `groups` (a bool per row: the groups a difference compares) ran with the
    same values, more than one (`augment` on and off on both sides): a seed's runs without
    augmentation then pair with its runs without it, whatever runs are missing. None for a
    table without seeds."""
    if "seed" not in table:
        return None
    shared = _shared_settings(table, groups)
    return table[[*varied_splits(table), *shared]].astype(str).assign(seed=table["seed"])


def _shared_settings(table: pd.DataFrame, groups: Sequence[pd.Series]) -> list[str]:
    """The settings other than SPLIT_BY, each of more than one value, whose combinations every
    one of `groups` ran alike (none for fewer than two groups): a sampled study whose groups
    ran other combinations would leave runs without a pair."""
    settings = [name for name in VariantConfig.model_fields
                if name in table and name not in SPLIT_BY]  # fmt: skip
    shared: list[str] = []
    for name in settings if len(groups) > 1 else []:
        combinations = [
            frozenset(table.loc[group, [*shared, name]].dropna().astype(str).itertuples(False))
            for group in groups
        ]
        values = {combination[-1] for combination in combinations[0]}
        if len(values) > 1 and all(other == combinations[0] for other in combinations[1:]):
            shared.append(name)
    return shared


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
