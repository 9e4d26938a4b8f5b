"""A finished study as pandas tables: one row per trial and seed, and one per configuration.

The study is read back from its storage (never from `results.csv`), so a report can be made of
any study the engine ran, finished or still running, and of a copy of its journal file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import optuna
import pandas as pd
from pydantic import ValidationError

from ablate.report_stats import metric_interval
from ablate.spec import Constraint, Objective, StudySpec, describe_validation_error
from ablate.storage import (
    StorageLocation,
    existing_storage,
    locate_storage,
    recorded_location,
    stored_study,
)
from ablate.variant_config import BLUR_FIELDS, run_identity, taps_per_axis, unused_fields
from kernels.files import atomic_write, read_json

CONFIG_KEY = "config_key"
#: The run identity of the network a run trained: its configuration's, or the baseline's
#: (placement none) where the run recorded `baseline_network` (a one-tap filter at max-pools).
NETWORK_KEY = "network_key"


Entry = TypeVar("Entry", Objective, Constraint)


@dataclass(frozen=True)
class StudyMeta:
    """What `meta.json` says about a study: its name, where it is stored, what it optimises."""

    study_name: str
    storage: str | None
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = field(default_factory=tuple)
    max_retries: int = StudySpec.model_fields["max_retries"].default
    """How often a failed point runs again (the spec's default where `meta.json` predates it)."""


def read_meta(out_dir: Path) -> StudyMeta:
    """Parse `out_dir/meta.json`; a missing file or field is a ValueError that names it."""
    path = Path(out_dir) / "meta.json"
    if not Path(out_dir).is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r} does not exist or is not a folder")
    if not path.is_file():
        raise ValueError(
            f"out_dir={str(out_dir)!r} has no meta.json: is it a study's output folder?"
        )
    raw = read_json(path)
    for key in ("study_name", "objectives"):
        if key not in raw:
            raise ValueError(f"{path}: missing field {key!r}")
    return StudyMeta(
        str(raw["study_name"]),
        raw.get("storage"),
        _entries(path, raw, "objectives", Objective),
        _entries(path, raw, "constraints", Constraint),
        int(raw.get("max_retries", StudyMeta.max_retries)),
    )


def _entries(path: Path, raw: dict[str, Any], key: str, model: type[Entry]) -> tuple[Entry, ...]:
    """`raw[key]`'s entries as the spec's `model`; a ValueError names the first invalid one."""
    entries = []
    for index, entry in enumerate(raw.get(key) or ()):
        try:
            entries.append(model.model_validate(entry))
        except ValidationError as error:
            where = f"{path}: {key}[{index}]."
            raise ValueError(where + describe_validation_error(error)) from None
    return tuple(entries)


def study_location(out_dir: Path, meta: StudyMeta, url: str | None = None) -> StorageLocation:
    """Where the study is stored: `url` (a database URL with its password, or a journal moved
    elsewhere), else what `meta.json` records (`recorded_location`: a copied or moved folder
    still opens)."""
    if url is not None:
        return locate_storage(url, out_dir)
    return recorded_location(meta.storage, out_dir)


def load_study(out_dir: Path, meta: StudyMeta, location: StorageLocation) -> optuna.Study:
    """The study `meta.json` in `out_dir` names, from `location`; ValueError where the storage
    does not exist or does not hold it."""
    storage = existing_storage(location)
    if storage is None:
        raise ValueError(f"storage={location.recorded!r} not found")
    study = stored_study(storage, meta.study_name)
    if study is None:
        raise ValueError(
            f"storage={location.recorded!r} holds no study {meta.study_name!r} (the one "
            f"{str(Path(out_dir) / 'meta.json')!r} names): is it the study's storage?"
        )
    return study


def runs_table(study: optuna.Study) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished trial and seed (`trial`, config fields, `seed`, every metric), and
    the names of the config columns. `filter_size` is the size of the filter the network has
    (`taps_per_axis`: custom taps' count), so groups and figures by size read custom taps too.

    A metric whose name is also a config field (`device`) becomes `<name>_metric`. List and dict
    metrics stay Python objects here; `write_table` stores them as JSON text.
    """
    rows = []
    config_cols: dict[str, None] = {}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        config = trial.user_attrs.get("config")
        seeds = trial.user_attrs.get("seeds")
        if config is None or seeds is None:
            continue
        config_cols.update(dict.fromkeys(config))
        identity = run_identity(config)
        baseline = run_identity({**config, "placement": "none"})
        for seed_result in seeds:
            row: dict[str, Any] = {"trial": trial.number, **_design_point(config)}
            row[CONFIG_KEY] = identity
            row[NETWORK_KEY] = baseline if seed_result.get("baseline_network") else identity
            for key, value in seed_result.items():
                row[f"{key}_metric" if key in config else key] = value
            rows.append(row)
    return pd.DataFrame(rows), list(config_cols)


def _design_point(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config as the report's tables show it: `filter_size` the size of the filter
    the network has (`taps_per_axis`: custom taps' count)."""
    if "filter_size" not in config:
        return dict(config)
    return {**config, "filter_size": taps_per_axis(config)}


def first_run_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with one run per configuration and seed, the first trial's. A sampler can draw a
    point again (random, TPE): its runs repeat seeds already run, so they are no new samples of
    the spread over seeds, and counting them would narrow the intervals for no reason."""
    if runs.empty:
        return runs
    return runs[~runs.duplicated([CONFIG_KEY, "seed"], keep="first")]


def counted_once(runs: pd.DataFrame, group: pd.Series) -> pd.Series:
    """`group` (a bool per run) without the runs that repeat another of it: the same network
    (`NETWORK_KEY`) and seed under another configuration, such as placement none and a one-tap
    filter at max-pools. Where groups pool configurations, such runs are one sample, not two."""
    if NETWORK_KEY not in runs:
        return group
    repeats = runs[group].duplicated([NETWORK_KEY, "seed"], keep="first")
    return group & ~repeats.reindex(runs.index, fill_value=False)


def at_chance(runs: pd.DataFrame) -> pd.Series:
    """True for the runs that recorded `learned=False` (`ablate.chance`); runs of studies made
    before that metric existed count as learned."""
    if "learned" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["learned"].eq(False)


#: Metrics a network that learned nothing scores well on for no merit: it names the same class
#: wherever the image sits, so it is consistent and its accuracy does not change with the shift.
FLATTERED_BY_CHANCE = ("consistency_", "accuracy_vs_shift_", "true_prob_vs_shift_")


def mask_runs_at_chance(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with the metrics in FLATTERED_BY_CHANCE blanked (NaN or None) for runs at chance;
    accuracy and adversarial accuracy stay, as low as such a run really is."""
    masked = runs.copy()
    stuck = at_chance(runs)
    for column in (c for c in runs.columns if c.startswith(FLATTERED_BY_CHANCE)):
        masked.loc[stuck, column] = None if runs[column].dtype == object else np.nan
    return masked


FAILURE_COLUMNS = ["state", "fail_reason", "run_again_as"]
FAILED_STATES = (optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)


def failed_trials(study: optuna.Study) -> pd.DataFrame:
    """Trials that did not finish: `trial`, the design point they tried (its config fields; the
    sampled parameters alone for a point that makes no valid config), their state, `fail_reason`
    where the engine set one, and the trial that ran their point again, with its state (an
    interrupted trial's rerun, or a retry), if any."""
    trials = study.get_trials(deepcopy=False)
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    rows = []
    for t in trials:
        if t.state not in FAILED_STATES:
            continue
        retry = retries.get(t.number)
        rows.append(
            {
                "trial": t.number,
                **_design_point(t.user_attrs.get("config") or t.params),
                "state": t.state.name,
                "fail_reason": t.user_attrs.get(
                    "fail_reason", t.system_attrs.get("fail_reason", "")
                ),
                "run_again_as": ""
                if retry is None
                else f"trial {retry.number} ({retry.state.name})",
            }
        )
    tried = dict.fromkeys(k for row in rows for k in row if k not in ("trial", *FAILURE_COLUMNS))
    return pd.DataFrame(rows, columns=["trial", *tried, *FAILURE_COLUMNS])


def varied_fields(study: optuna.Study) -> list[str]:
    """The config fields that take more than one value among the study's finished and failed
    trials: what it varied (a value all of whose runs failed was still tried). A trial whose
    point makes no config counts by its sampled parameters. Read from the trials, not a
    table, where a field set to None would be a blank like a missing one."""
    states = (optuna.trial.TrialState.COMPLETE, *FAILED_STATES)
    points = [
        _design_point(t.user_attrs.get("config") or t.params)
        for t in study.get_trials(deepcopy=False, states=states)
    ]
    fields = dict.fromkeys(field for point in points for field in point)
    return [
        field
        for field in fields
        if len({json.dumps(p[field], default=str) for p in points if field in p}) > 1
    ]


def scalar_metric_columns(runs: pd.DataFrame, exclude: list[str]) -> list[str]:
    """Numeric, non-boolean columns other than `exclude`: the metrics a mean makes sense of."""
    return [
        c
        for c in runs.columns
        if c not in exclude
        and pd.api.types.is_numeric_dtype(runs[c])
        and not pd.api.types.is_bool_dtype(runs[c])
    ]


def aggregate_over_seeds(runs: pd.DataFrame, config_cols: list[str]) -> pd.DataFrame:
    """One row per configuration: its config, `n_seeds`, `trials`, `seeds_at_chance` (runs that
    did not learn), per scalar metric `<m>_mean`, `<m>_ci95_low`, `<m>_ci95_high` (Student-t
    over seeds, cut to the metric's range, `METRIC_BOUNDS`; NaN for one seed, or seeds that
    tie, unless the metric is one of `DETERMINISTIC_METRICS`) and `<m>_n` (the seeds that
    measured it: a run that did not learn has no consistency), and text metrics (the device
    name) as their distinct values.

    Configurations are told apart by their whole config, so a point the sampler ran twice (in
    two trials) is one row (`first_run_per_seed` leaves out the repeated seeds first).
    """
    if runs.empty:
        return pd.DataFrame(
            columns=[CONFIG_KEY, *config_cols, "n_seeds", "trials", "seeds_at_chance"]
        )
    metrics = scalar_metric_columns(runs, [*config_cols, "trial", "seed"])
    text_metrics = [
        c
        for c in runs.columns
        if c not in (*config_cols, *metrics, CONFIG_KEY, NETWORK_KEY, "trial", "seed")
        and runs[c].map(lambda v: isinstance(v, str)).all()
    ]
    rows = []
    for key, group in runs.groupby(CONFIG_KEY, sort=False):
        row: dict[str, Any] = {CONFIG_KEY: key}
        row.update({c: group[c].iloc[0] for c in config_cols})
        row["n_seeds"] = len(group)
        row["trials"] = ",".join(str(t) for t in sorted(group["trial"].unique()))
        row["seeds_at_chance"] = int(at_chance(group).sum())
        for metric in text_metrics:  # e.g. the device name: its distinct values
            row[metric] = ", ".join(sorted(group[metric].unique()))
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            low, high = metric_interval(values, metric)
            finite = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(finite.mean()) if finite.size else np.nan
            row[f"{metric}_ci95_low"] = low
            row[f"{metric}_ci95_high"] = high
            row[f"{metric}_n"] = int(finite.size)
        rows.append(row)
    return pd.DataFrame(rows)


def _as_file_cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def _file_column(column: pd.Series) -> pd.Series:
    """An object column as CSV and Parquet can hold it: containers as JSON, mixed types as text."""
    # not `column.map`, which would make whole numbers beside blanks floats (3.0)
    cells = pd.Series([_as_file_cell(v) for v in column], index=column.index, dtype=object)
    kinds = {type(v) for v in cells if not pd.isna(v)}
    if len(kinds) > 1 or kinds == {str}:
        return cells.map(lambda v: None if pd.isna(v) else str(v)).astype("string")
    return cells


def unused_cells(row: pd.Series) -> tuple[str, ...]:
    """The fields of a row of `runs_table` or `aggregate_over_seeds` whose value its run does
    not use (`unused_fields`), which the report leaves blank. Two stay: `sites` 0, the reason a
    network has no blur, and the filter size of a network with blur, which `runs_table` sets to
    the taps it has."""
    unused = unused_fields(row)
    blurs = not set(BLUR_FIELDS) <= set(unused)
    return tuple(
        name
        for name in unused
        if not (name == "sites" and row.get("sites") == 0) and not (name == "filter_size" and blurs)
    )


def _as_read(table: pd.DataFrame) -> pd.DataFrame:
    """`table` as its files show it: `unused_cells` blank, and the long `network_key` (runs)
    and `config_key` last (identities, for joins, not for reading)."""
    blanks = [unused_cells(row) for _, row in table.iterrows()]
    columns = [c for c in table.columns if any(c in cells for cells in blanks)]
    shown = table.astype(dict.fromkeys(columns, object))
    for index, cells in zip(table.index, blanks, strict=True):
        for column in cells:
            if column in shown:
                shown.at[index, column] = None
    last = {NETWORK_KEY: 1, CONFIG_KEY: 2}
    return shown[sorted(shown.columns, key=lambda column: last.get(column, 0))]


def write_table(table: pd.DataFrame, stem: Path) -> list[Path]:
    """Write `stem.csv` and `stem.parquet` as `_as_read` shows `table`; list, tuple and dict
    cells become JSON text."""
    flat = _as_read(table)
    for column in flat.columns:
        if flat[column].dtype == object:
            flat[column] = _file_column(flat[column])
    csv, parquet = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    atomic_write(csv, lambda temporary: flat.to_csv(temporary, index=False))
    atomic_write(parquet, lambda temporary: flat.to_parquet(temporary, index=False))
    return [csv, parquet]
