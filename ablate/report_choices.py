"""Which value of each setting a study varied does best on each of its objectives.

For a setting (padding, placement, filter size, ...) the runs that use it are grouped by its
value, the other settings varied pooled (the setting's main effect: a fair comparison where every
value ran with the same other settings, as a full grid does). Values are ranked by their mean
over seeds (each seed's runs averaged first, the seed being the sample: `report_stats`), with a
95 % t-interval over the seeds' means; the best value's lead over each other is the difference
paired by seed (within the other settings both values ran alike, as the answers pair), and clear
when its interval excludes zero on the best value's side, over every other value. Runs whose
network leaves the setting unused (the padding of a network without blur) are left out: they do
not say how the setting does. A setting of more than MAX_VALUES values (a sampled learning rate)
is a curve, not a choice, and is left to the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ablate.report_format import difference_unit, format_value, interval_text
from ablate.report_groups import SPLIT_BY, pairing_blocks
from ablate.report_questions import Answer
from ablate.report_stats import Difference, metric_interval, paired_difference, seed_means
from ablate.report_table import at_chance, counted_once
from ablate.spec import DETERMINISTIC_METRICS, METRIC_BOUNDS, Objective
from ablate.variant_config import unused_fields

#: How a metric's values read, after the number.
UNITS = {"forward_mflops": " MFLOPs", "peak_memory_mb": " MB"}
MAX_VALUES = 8


def choice_answers(
    runs: pd.DataFrame, objectives: Sequence[Objective], varied: Sequence[str]
) -> list[Answer]:
    """S1, S2, ...: per setting in `varied` (not the SPLIT_BY ones, which are other
    experiments) and per objective, which value does best; none for a setting whose runs use
    fewer than two of its values, or more than MAX_VALUES."""
    answers = []
    unused = [set(unused_fields(row)) for row in runs.to_dict("records")]
    for setting in varied:
        if setting in SPLIT_BY or setting not in runs:
            continue
        using = runs[np.asarray([setting not in fields for fields in unused], dtype=bool)]
        labels = using[setting].map(value_label)
        if not 2 <= labels.nunique() <= MAX_VALUES:
            continue
        for objective in objectives:
            key = f"S{len(answers) + 1}"
            answers.append(_best_value(using, labels, setting, objective, key))
    return answers


def value_label(value: object) -> str:
    """A setting's value as the sentence names it: a whole number without '.0' (a column that
    holds None too is read as floats), None as the default it stands for."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "None (its default)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def unit_of(metric: str) -> str:
    """' %' for a percentage, ' images/s' for a throughput, and so on; '' for a pure number."""
    if METRIC_BOUNDS.get(metric) == (0.0, 100.0):
        return " %"
    return " images/s" if metric.endswith("_images_per_s") else UNITS.get(metric, "")


def _best_value(
    runs: pd.DataFrame, labels: pd.Series, setting: str, objective: Objective, key: str
) -> Answer:
    metric, maximize = objective.metric, objective.direction == "maximize"
    question = f"Which {setting} gives the {'highest' if maximize else 'lowest'} `{metric}`?"
    if metric not in runs:
        return Answer(key, question, f"Cannot be answered: the runs carry no `{metric}`.")
    # an infinite value (a throughput of a run timed at zero) has no mean to rank or pair
    values = pd.to_numeric(runs[metric], errors="coerce").replace([np.inf, -np.inf], np.nan)
    stuck = at_chance(runs)
    of_label = {label: counted_once(runs, labels == label) for label in labels.unique()}
    groups = {label: values[counted].dropna() for label, counted in of_label.items()}
    # a measure left out for runs that did not learn (consistency) can leave a value none
    unmeasured = [label for label, group in groups.items() if group.empty]
    groups = {label: group for label, group in groups.items() if len(group)}
    if len(groups) < 2:
        because = f"fewer than two values of {setting} have runs with `{metric}`"
        return Answer(key, question, f"Cannot be answered from this study: {because}.")
    deterministic = metric in DETERMINISTIC_METRICS
    blocks = None if deterministic else pairing_blocks(runs)
    per_seed = {
        label: seed_means(group, blocks) if blocks is not None else pd.Series(dtype=float)
        for label, group in groups.items()
    }
    # one way for every value: a value's runs of a single seed are not samples where the
    # others' seeds are
    by_seed = any(len(seeds) >= 2 for seeds in per_seed.values())
    summary = {
        label: _value_mean(per_seed[label] if by_seed else group, metric)
        for label, group in groups.items()
    }
    ranked = sorted(groups, key=lambda label: summary[label][0], reverse=maximize)
    unit = unit_of(metric)
    means = ", ".join(
        f"{label} {format_value(summary[label][0], unit=unit)}"
        f"{'' if deterministic else interval_text(*summary[label][1:])}"
        f" (n = {len(groups[label])}"
        f"{_not_learned(stuck[groups[label].index].sum(), stuck[of_label[label]].sum())})"
        for label in ranked
    )

    def difference(label: str, other: str) -> Difference:
        """`label`'s runs minus `other`'s, paired by seed and within each other setting both
        values ran alike (`pairing_blocks`), as the answers pair."""
        sides = [pd.Series(runs.index.isin(groups[v].index), index=runs.index)
                 for v in (label, other)]  # fmt: skip
        return paired_difference(groups[label], groups[other], pairing_blocks(runs, sides),
                                 deterministic)  # fmt: skip

    best, second = ranked[:2]
    lead = difference(best, second)
    # A lead is clear only over every other value: a value ranked lower but with a wider
    # spread can still be the best (the interval against the next says nothing about it).
    rival = None
    if lead.clearly_ahead(maximize) and not deterministic:
        rival = next(((label, against) for label in ranked[2:]
                      if not (against := difference(best, label)).clearly_ahead(maximize)),
                     None)  # fmt: skip
    verdict = _verdict(best, second, lead, unit, deterministic, maximize, rival)
    mean = (
        "Mean of each value over its seeds (each seed's runs averaged first)"
        if by_seed
        else "Mean of each value's runs"
    )
    sentence = f"{verdict}. {mean}, the other settings varied pooled: {means}."
    if unmeasured:
        sentence += (
            f" No `{metric}` to count (left out for runs that did not learn, or not finite): "
            f"{', '.join(unmeasured)}."
        )
    counts = {len(group) for group in groups.values()}
    if len(counts) > 1:
        sentence += (
            " The values have different numbers of runs, so the other settings may not be "
            "spread alike over them: the comparison can mix in their effects."
        )
    return Answer(key, question, sentence, lead)


def _value_mean(values: pd.Series, metric: str) -> tuple[float, float, float]:
    """A value's mean and 95 % interval over `values`: its seeds' means, or its runs where
    no value ran two seeds."""
    return (float(values.mean()), *metric_interval(values, metric))


def _verdict(best: str, second: str, lead: Difference, unit: str, deterministic: bool,
             maximize: bool, rival: tuple[str, Difference] | None = None) -> str:  # fmt: skip
    """Whether ``best`` leads: over ``second``, and where that lead is clear, over each other
    value too (``rival``: a value the best's lead over is not clear, or is clearly a deficit:
    ranked on all its seeds, the best can trail a value on the seeds they share)."""
    difference = format_value(lead.estimate, True, difference_unit(unit))
    if deterministic:  # the same in every run of a configuration: no seed's luck to bound
        if lead.estimate == 0:
            return f"No difference: {best} and {second} give the same"
        return (
            f"{best}, on average: ahead of {second} (difference {difference}, the same in "
            "every run of a configuration; the spread within a value is the other settings')"
        )
    interval = interval_text(lead.low, lead.high, signed=True)
    if lead.estimate != 0 and (lead.estimate > 0) != maximize:
        # ranked first on its seeds' means, behind on the seeds both values ran
        return (
            f"No clear best: {best} has the better mean, but {_compared_on(lead, second)} it "
            f"is behind (difference {difference}{interval})"
        )
    ahead = f"{best} is ahead of {second} (difference {difference}{interval})"
    if lead.excludes_zero and rival is not None:
        label, against = rival
        versus = (
            f"difference {format_value(against.estimate, True, difference_unit(unit))}"
            f"{interval_text(against.low, against.high, signed=True)}"
        )
        if against.estimate != 0 and (against.estimate > 0) != maximize:
            # ranked below on its seeds' means, ahead on the seeds both values ran
            return (
                f"No clear best: {ahead}, but {_compared_on(against, label)} it is behind "
                f"({versus})"
            )
        return f"No clear best: {ahead}, but its lead over {label} ({versus}) does not exclude zero"
    if lead.excludes_zero:
        return f"{best}: {ahead}, a clear lead (its 95 % interval excludes zero)"
    if np.isfinite(lead.low) and lead.low != lead.high:
        return f"No clear best: {ahead}, an interval that includes zero (more seeds would tell)"
    why = (
        "each seed gave the same difference"
        if lead.seeds
        else "a value has fewer than two runs, or its runs tie"
    )
    return f"No clear best: {ahead}, with no interval ({why})"


def _compared_on(diff: Difference, other: str) -> str:
    """What `diff` compared a value with `other` on: the seeds both ran, or, where fewer than
    two did (`diff.seeds` 0: Welch), their runs, whose means can rank them otherwise than
    their seeds' means do."""
    if diff.seeds:
        return f"on the seeds it shares with {other}"
    return f"over its runs and {other}'s (fewer than two seeds ran both)"


def _not_learned(counted: int, of_value: int) -> str:
    """', 1 did not learn' for runs counted; '; 2 that did not learn left out' for the others
    of the value (their measure is masked)."""
    left_out = int(of_value - counted)
    return (f", {int(counted)} did not learn" if counted else "") + (
        f"; {left_out} that did not learn left out" if left_out else ""
    )
