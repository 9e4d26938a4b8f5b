"""Which runs are which: the settings that make separate experiments of a study's runs, the
blur groups the answers and figures compare, and what a difference pairs runs by."""

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
    splits = varied_splits(table)
    shared = _shared_settings(table, groups, splits)
    return _as_text(table[[*splits, *shared]]).assign(seed=table["seed"])


def _shared_settings(
    table: pd.DataFrame, groups: Sequence[pd.Series], splits: Sequence[str] = ()
) -> list[str]:
    """The settings other than SPLIT_BY and the seed, each of more than one value, whose
    combinations with the `splits` (the SPLIT_BY settings the table varies) every one of
    `groups` ran alike (none for fewer than two groups): a sampled study whose groups ran
    other combinations would leave runs without a pair. The seed is left out, as it is the
    sample: a run missing from one seed must not keep a setting from pairing. A missing value
    (None, NaN) counts as a value, as the blocks then hold it."""
    settings = [name for name in VariantConfig.model_fields
                if name in table and name not in (*SPLIT_BY, "seed")]  # fmt: skip
    shared: list[str] = []
    for name in settings if len(groups) > 1 else []:
        columns = [*splits, *shared, name]
        combinations = [
            frozenset(_as_text(table.loc[group, columns]).itertuples(False)) for group in groups
        ]
        values = {combination[-1] for combination in combinations[0]}
        if len(values) > 1 and all(other == combinations[0] for other in combinations[1:]):
            shared.append(name)
    return shared


def _as_text(table: pd.DataFrame) -> pd.DataFrame:
    """`table`'s cells as text to compare and group by: lists hash as text, and every missing
    value (None, NaN) is one blank, as a table can hold either for a field left unset."""
    return table.map(lambda v: "" if pd.api.types.is_scalar(v) and pd.isna(v) else str(v))


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
