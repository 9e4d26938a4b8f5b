"""Which value of each setting a study varied does best on each of its objectives.

For a setting (padding, placement, filter size, ...) the runs that use it are grouped by its
value; each value's mean gets a 95 % t-interval, the other settings varied pooled (the
setting's main effect), and the best value's lead over the next is a Welch difference: clear
when its interval excludes zero. Runs whose network leaves the setting unused (the padding of
a network without blur) are left out: they do not say how the setting does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ablate.report_questions import SPLIT_BY, Answer, difference_unit, format_value
from ablate.report_stats import metric_interval, welch_difference
from ablate.spec import DETERMINISTIC_METRICS, METRIC_BOUNDS, Objective
from ablate.variant_config import unused_fields

#: How a metric's values read, after the number.
UNITS = {"forward_mflops": " MFLOPs", "peak_memory_mb": " MB"}


def choice_answers(
    runs: pd.DataFrame, objectives: Sequence[Objective], varied: Sequence[str]
) -> list[Answer]:
    """S1, S2, ...: per setting in `varied` (not the SPLIT_BY ones, which are other
    experiments) and per objective, which value does best; none for a setting whose runs use
    fewer than two of its values."""
    answers = []
    for setting in varied:
        if setting in SPLIT_BY or setting not in runs:
            continue
        uses = [setting not in unused_fields(row) for row in runs.to_dict("records")]
        using = runs[np.asarray(uses, dtype=bool)]
        if using[setting].nunique() < 2:
            continue
        for objective in objectives:
            key = f"S{len(answers) + 1}"
            answers.append(_best_value(using, setting, objective, key))
    return answers


def unit_of(metric: str) -> str:
    """' %' for a percentage, ' images/s' for a throughput, and so on; '' for a pure number."""
    if METRIC_BOUNDS.get(metric) == (0.0, 100.0):
        return " %"
    return " images/s" if metric.endswith("_images_per_s") else UNITS.get(metric, "")


def _best_value(runs: pd.DataFrame, setting: str, objective: Objective, key: str) -> Answer:
    metric, maximize = objective.metric, objective.direction == "maximize"
    question = f"Which {setting} gives the {'highest' if maximize else 'lowest'} `{metric}`?"
    values = pd.to_numeric(runs[metric], errors="coerce") if metric in runs else None
    groups = {} if values is None else {
        value: values[runs[setting] == value].dropna() for value in runs[setting].unique()
    }  # fmt: skip
    groups = {value: group for value, group in groups.items() if len(group)}
    if len(groups) < 2:
        because = f"fewer than two values of {setting} have runs with `{metric}`"
        return Answer(key, question, f"Cannot be answered from this study: {because}.")
    ranked = sorted(groups, key=lambda value: groups[value].mean(), reverse=maximize)
    unit = unit_of(metric)
    means = ", ".join(
        f"{value} {format_value(groups[value].mean(), unit=unit)}"
        f"{_interval(metric_interval(groups[value], metric))} (n = {len(groups[value])})"
        for value in ranked
    )
    best, second = ranked[:2]
    lead = welch_difference(groups[best], groups[second], metric in DETERMINISTIC_METRICS)
    difference = format_value(lead.estimate, True, difference_unit(unit))
    ahead = (
        f"{best} is ahead of {second} (difference {difference}"
        f"{_interval((lead.low, lead.high), signed=True)})"
    )
    if lead.excludes_zero:
        verdict = f"{best}: {ahead}, a clear lead (its 95 % interval excludes zero)"
    elif np.isfinite(lead.low) and lead.low != lead.high:
        verdict = f"No clear best: {ahead}, an interval that includes zero (more seeds would tell)"
    else:
        verdict = (
            f"No clear best: {ahead}, with no interval (a value has fewer than two runs, or its "
            "runs tie)"
        )
    sentence = f"{verdict}. Mean of each value's runs, the other settings varied pooled: {means}."
    return Answer(key, question, sentence, lead)


def _interval(bounds: tuple[float, float], signed: bool = False) -> str:
    low, high = bounds
    if not np.isfinite(low) or low == high:
        return ""
    return f" [{format_value(low, signed)}, {format_value(high, signed)}]"
