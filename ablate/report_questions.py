"""The paper's four research questions, and what blur costs, answered from a study's runs in one
sentence each.

Every answer compares the runs without blur (placement `none`, or filter size 1, which is plain
subsampling) with the blurred runs, pooling configurations: the effect is the difference of
means (blurred minus no blur) with a 95 % t-interval over the seeds' paired differences (Welch
over runs where fewer than two seeds ran on both sides), and n counts runs (configuration ×
seed). The verdict is "yes"/"no" only when the interval excludes zero. Runs pair within a seed's
network and data (SPLIT_BY) and within each setting both groups ran alike (`pairing_blocks`);
a study that varies the network or the data also gets the difference within each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate.report_format import difference_unit, format_value, interval_text
from ablate.report_groups import (
    BLUR,
    NO_BLUR,
    blur_groups,
    converted,
    pairing_blocks,
    varied_splits,
)
from ablate.report_stats import Difference, paired_difference, seed_means
from ablate.report_table import at_chance, counted_once
from ablate.spec import DETERMINISTIC_METRICS


@dataclass(frozen=True)
class Answer:
    """One research question, the sentence that answers it, and the numbers behind it."""

    key: str
    question: str
    sentence: str
    difference: Difference | None = None


FEW_RUNS = 2  # runs in a group at or below which an inconclusive answer suggests more seeds


def shift_drop(accuracies: object) -> float:
    """Accuracy at offset 0 minus the mean accuracy over diagonal offsets 1..D (points)."""
    if not isinstance(accuracies, (list, tuple)) or len(accuracies) < 2:
        return float("nan")
    values = np.asarray(accuracies, dtype=float)
    return float(values[0] - values[1:].mean())


@dataclass(frozen=True)
class Contrast:
    """Two groups of runs an answer compares, and the words its sentence names them by."""

    treated: pd.Series  # bool per run
    control: pd.Series
    treated_name: str  # "blur": "… with blur vs … without"
    control_name: str  # "" for plain "without"
    treated_runs: str  # "blurred": "n = 4 blurred vs 2 no-blur runs"
    control_runs: str
    control_described: str  # what a control run is, for "it has no … runs"


def blur_contrast(runs: pd.DataFrame) -> Contrast:
    """Blurred runs against runs without blur (the paper's questions and the costs), each
    network and seed counted once (`counted_once`)."""
    groups = blur_groups(runs)
    return Contrast(
        counted_once(runs, groups == BLUR),
        counted_once(runs, groups == NO_BLUR),
        "blur",
        "",
        "blurred",
        "no-blur",
        "no-blur (placement none or filter size 1)",
    )


# how a sentence names a subsampling, and its runs: "… with APS vs … with fixed subsampling"
_SUBSAMPLE_NAMES = {"fixed": "fixed subsampling", "aps": "APS", "lps": "LPS"}
_SUBSAMPLE_RUNS = {"fixed": "fixed-grid", "aps": "APS", "lps": "LPS"}


def subsample_contrast(treated: str, control: str) -> Callable[[pd.DataFrame], Contrast]:
    """Converted runs (:func:`converted`, blurred or not: APS and LPS need no blur) subsampling
    by `treated` against those subsampling by `control`."""

    def contrast(runs: pd.DataFrame) -> Contrast:
        placed = converted(runs)
        return Contrast(
            counted_once(runs, placed & (runs["subsample"] == treated)),
            counted_once(runs, placed & (runs["subsample"] == control)),
            _SUBSAMPLE_NAMES[treated],
            _SUBSAMPLE_NAMES[control],
            _SUBSAMPLE_RUNS[treated],
            _SUBSAMPLE_RUNS[control],
            f"{_SUBSAMPLE_RUNS[control]} (subsample {control}, downsampling replaced: placement "
            "not none, sites not 0)",
        )

    return contrast


def _effect_sentence(
    diff: Difference,
    name: str,
    unit: str,
    yes_if: str,
    contrast: Contrast,
    unpaired: int = 0,
    relative: bool = False,
    deterministic: bool = False,
    paired_by: Sequence[str] = ("seed",),
) -> str:
    """'… treated minus control: +1.20 [0.3, 2.1] …' with a verdict read from the interval:
    "Yes" when it excludes zero on the `yes_if` side ("higher" or "lower"). `unpaired` runs
    were left out for want of a pair (a run of the other group with the same `paired_by`
    values: the seed, and the network or data where the study varies it); `relative` adds the
    difference as a share of the control's mean (for costs, where the ratio is what carries)."""
    treated, control = diff.treated_mean, diff.control_mean
    diff_unit = difference_unit(unit)
    # a pure number near 1 (filter TV: 1.744 vs 1.766) needs a third decimal to show its change
    places = 3 if not unit and max(abs(treated), abs(control)) < 10 else 2

    def number(value: float, signed: bool = False, shown_unit: str = "") -> str:
        return format_value(value, signed, shown_unit, places)

    share = (
        f" or {format_value(100 * diff.estimate / control, True, ' %')}"
        if relative and control
        else ""
    )
    if diff.low == diff.high:  # a deterministic measure, from one run a group or more
        interval = "exact: every run of each group gave the same value"
    elif deterministic:  # configurations differ, runs of one do not: a range, not noise
        interval = (
            f"exact per configuration: a {contrast.treated_runs} configuration differs from a "
            f"{contrast.control_runs} one by {number(diff.low, True)} to "
            f"{number(diff.high, True)}{diff_unit}"
        )
    elif min(diff.n_treated, diff.n_control) < 2:
        interval = "no interval: a group has fewer than two runs"
    elif not np.isfinite(diff.low):
        tied = "each seed gave the same difference" if diff.seeds else "the runs of each group tied"
        interval = f"no interval: {tied}, which bounds nothing for a measure that varies by seed"
    else:
        interval = f"95 % CI [{number(diff.low, True)}, {number(diff.high, True)}]{diff_unit}"
    verdict = _verdict(diff, yes_if, deterministic)
    method = "" if deterministic or diff.low == diff.high else _method(diff)
    control_name = f" with {contrast.control_name}" if contrast.control_name else " without"
    left_out = (
        f"; {unpaired} {'run' if unpaired == 1 else 'runs'} left out, unpaired (no run of the "
        f"other group with the same {_listed(paired_by)})"
        if unpaired
        else ""
    )
    return (
        f"{verdict}: {name} is {number(treated, shown_unit=unit)} with {contrast.treated_name} vs "
        f"{number(control, shown_unit=unit)}{control_name} "
        f"(difference {number(diff.estimate, True, diff_unit)}"
        f"{share}, {interval}; {method}"
        f"n = {diff.n_treated} {contrast.treated_runs} vs {diff.n_control} "
        f"{contrast.control_runs} runs{left_out}).{'' if deterministic else _few_runs_hint(diff)}"
    )


def _listed(words: Sequence[str]) -> str:
    """'seed', 'seed and model', 'seed, model and dataset'."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _verdict(diff: Difference, yes_if: str, deterministic: bool = False) -> str:
    """The verdict: "Yes" when the interval excludes zero on the `yes_if` side ("higher" or
    "lower"), "No, the opposite" on the other, "No, no difference" when exactly zero."""
    if diff.excludes_zero:
        return "Yes" if (diff.estimate > 0) == (yes_if == "higher") else "No, the opposite"
    if diff.low == diff.high:  # exact, and zero: every run of both groups gave one value
        return "No, no difference"
    if deterministic:  # exact values whose range spans zero: it depends on the configuration
        return "Mixed: it depends on the configuration"
    return "Inconclusive"


def _method(diff: Difference) -> str:
    """How the interval was made, for a sentence: by seed, or (seeds that do not pair) by run."""
    if diff.seeds:
        return f"t over the {diff.seeds} seeds' paired differences, "
    return "Welch t over runs, "


def _few_runs_hint(diff: Difference) -> str:
    """Why an interval over two seeds (or a group of two runs) is wide, and what narrows it
    (nothing where the difference is exact): more seeds, or, where the groups' seeds do not
    pair, runs on seeds both groups ran."""
    smallest = diff.seeds or min(diff.n_treated, diff.n_control)
    exact = diff.low == diff.high
    if diff.excludes_zero or not np.isfinite(diff.low) or exact or smallest > FEW_RUNS:
        return ""
    if diff.seeds:
        return f" With {smallest} seeds the interval is wide: more seeds would narrow it."
    return (
        f" With {smallest} runs in a group the interval is wide: more runs, on seeds both groups"
        " ran (so that they pair), would narrow it."
    )


def _compare(
    values: pd.Series,
    name: str,
    unit: str,
    yes_if: str,
    relative: bool,
    contrast: Contrast,
    stuck: pd.Series,
    deterministic: bool,
    blocks: pd.DataFrame | None,
) -> tuple[str, Difference | None]:
    """The sentence comparing `values` between the contrast's groups, and the difference.
    `stuck` marks the runs that did not learn: a group with none that learned cannot answer;
    otherwise the sentence says how many such runs it left out (where `values` masks them) or
    counted (where it keeps them, as accuracy), and then what the runs that learned show."""
    groups = (
        (contrast.treated, contrast.treated_runs),
        (contrast.control, contrast.control_described),
    )
    for group, described in groups:
        if not values[group].notna().any():
            because = (
                f"its {described} runs did not learn (accuracy not above chance), and {name} "
                "is left out for such runs"
                if (group & stuck).any()
                else f"it has no {described} runs with {name} to compare against"
            )
            return f"Cannot be answered from this study: {because}.", None
        if not (group & ~stuck).any():
            because = f"none of its {described} runs learned (accuracy not above chance)"
            return f"Cannot be answered from this study: {because}.", None
    diff = paired_difference(
        values[contrast.treated], values[contrast.control], blocks, deterministic
    )
    finite = values.replace([np.inf, -np.inf], np.nan)  # as the difference takes them
    runs = finite[contrast.treated | contrast.control].count()
    unpaired = int(runs - diff.n_treated - diff.n_control)
    paired_by = list(blocks.columns)[::-1] if blocks is not None else ["seed"]
    sentence = _effect_sentence(diff, name, unit, yes_if, contrast, unpaired, relative,
                                deterministic, paired_by)  # fmt: skip
    learned = _runs_that_did_not_learn(values, contrast, stuck, blocks, unit,
                                       _verdict(diff, yes_if, deterministic), yes_if)  # fmt: skip
    return sentence + learned, diff


def _runs_that_did_not_learn(
    values: pd.Series,
    contrast: Contrast,
    stuck: pd.Series,
    blocks: pd.DataFrame | None,
    unit: str,
    verdict: str,
    yes_if: str,
) -> str:
    """' Left out: …' or ' This counts … ; among the runs that learned: …' (nothing where every
    run learned), with the verdict of the runs that learned where it is not `verdict`, all
    runs': then the runs that did not learn made it."""
    counts = [int((group & stuck).sum()) for group in (contrast.treated, contrast.control)]
    if not any(counts):
        return ""
    runs = (
        f"{counts[0]} {contrast.treated_runs} and {counts[1]} {contrast.control_runs} runs that "
        "did not learn (accuracy not above chance)"
    )
    if values[stuck].isna().all():
        return f" Left out: {runs}."
    learned = paired_difference(
        values[contrast.treated & ~stuck], values[contrast.control & ~stuck], blocks
    )
    interval = interval_text(learned.low, learned.high, signed=True)
    unit_shown = difference_unit(unit) if np.isfinite(learned.estimate) else ""
    among = _verdict(learned, yes_if)
    differs = (
        f": {among} among those, so the runs that did not learn decide the verdict above"
        if among != verdict and np.isfinite(learned.estimate)
        else ""
    )
    return (
        f" This counts {runs}; among the runs that learned the difference is "
        f"{format_value(learned.estimate, True)}{interval}{unit_shown}{differs}."
    )


def _by_filter_size(
    runs: pd.DataFrame, values: pd.Series, unit: str, blocks: pd.DataFrame | None
) -> str:
    """' Mean by filter size: 1: 80.1 %, 3: 84.0 %.' (:func:`converted` runs only: the others
    use no filter; nothing when they have one size), each over its seeds and the answer's
    `blocks` (:func:`seed_means`), as the answer's means are."""
    if "filter_size" not in runs:
        return ""
    placed = converted(runs)
    means = {
        size: seed_means(group, blocks).mean() if blocks is not None else group.mean()
        for size, group in values[placed].groupby(runs.loc[placed, "filter_size"])
    }
    if len(means) < 2:
        return ""
    parts = ", ".join(f"{k}: {format_value(v, unit=unit)}" for k, v in means.items())
    return f" Mean by filter size: {parts}."


def _metric_question(
    runs: pd.DataFrame,
    key: str,
    question: str,
    column: str,
    name: str,
    extract: Callable[[pd.Series], pd.Series] | None = None,
    unit: str = " %",
    yes_if: str = "higher",
    by_filter_size: bool = False,
    relative: bool = False,
    contrast: Callable[[pd.DataFrame], Contrast] = blur_contrast,
    learning_matters: bool = True,
    by_augment: bool = False,
) -> Answer:
    """The answer comparing `column` between the contrast's groups; `learning_matters`: whether
    a run that did not learn measures it for no merit (not so for a cost). A measure every run
    of a configuration repeats (`DETERMINISTIC_METRICS`: a FLOP count, not a seed's luck) is
    compared exactly where the runs allow it. `by_filter_size` adds the mean of each filter
    size, `by_augment` the difference with and without augmentation where the study varied it
    (the paper's adversary: does blur still help a network trained on shifted images?)."""
    if column not in runs:
        return Answer(key, question, f"Cannot be answered: the runs carry no `{column}`.")
    deterministic = column in DETERMINISTIC_METRICS
    values = extract(runs[column]) if extract else pd.to_numeric(runs[column], errors="coerce")
    stuck = at_chance(runs) if learning_matters else pd.Series(False, index=runs.index)
    groups = contrast(runs)
    blocks = pairing_blocks(runs, (groups.treated, groups.control))
    sentence, diff = _compare(
        values, name, unit, yes_if, relative, groups, stuck, deterministic, blocks
    )
    if diff is not None and by_filter_size:
        sentence += _by_filter_size(runs, values, unit, blocks)
    if diff is not None and by_augment and "augment" in runs and runs["augment"].nunique() > 1:
        per_augment = _split_by(runs, values, contrast, "augment", unit, _training_label,
                                deterministic)  # fmt: skip
        sentence += f" Split by training: {per_augment}."
    for setting in varied_splits(runs) if diff is not None else []:
        split = _split_by(runs, values, contrast, setting, unit, str, deterministic)
        sentence += f" By {setting}: {split}."
    return Answer(key, question, sentence, diff)


def _training_label(augment: object) -> str:
    return "with augmentation" if augment else "without augmentation"


def _split_by(
    runs: pd.DataFrame,
    values: pd.Series,
    contrast: Callable[[pd.DataFrame], Contrast],
    setting: str,
    unit: str,
    label: Callable[[object], str],
    deterministic: bool = False,
) -> str:
    """'a +1.20 [+0.30, +2.10] points; b …': the difference and its interval within the runs of
    each value of `setting` (no interval where a side has fewer than two runs, or it is exact)."""
    parts = []
    for value, subset in runs.groupby(setting):
        groups = contrast(subset)
        diff = paired_difference(values[subset.index][groups.treated],
                                 values[subset.index][groups.control],
                                 pairing_blocks(subset, (groups.treated, groups.control)),
                                 deterministic)  # fmt: skip
        interval = interval_text(diff.low, diff.high, signed=True)
        unit_shown = difference_unit(unit) if np.isfinite(diff.estimate) else ""
        parts.append(f"{label(value)} {format_value(diff.estimate, True)}{interval}{unit_shown}")
    return "; ".join(parts)


def answer_questions(
    runs: pd.DataFrame, consistency_metric: str = "consistency_circular"
) -> list[Answer]:
    """RQ1–RQ5 from the run table (one row per trial × seed); RQ2, RQ3 and RQ4 also under the
    other shift protocol (circular or crop) where the runs measured it (`RQ2-crop`, ...)."""
    other_consistency = _other_protocol(consistency_metric)
    answers = [
        _metric_question(
            runs,
            "RQ1",
            "Do the learned filters get smoother with blur?",
            "filter_tv_mean",
            "the mean normalised total variation of the learned conv filters (lower = smoother)",
            unit="",
            yes_if="lower",
            relative=True,  # how much smoother, not only whether
        ),
        _metric_question(
            runs,
            "RQ2",
            "Does shift consistency rise with blur?",
            consistency_metric,
            f"`{consistency_metric}`",
            by_filter_size=True,
        ),
        *_under_other_protocol(
            runs,
            "RQ2",
            "Does shift consistency under {protocol} shifts rise with blur?",
            other_consistency,
            by_filter_size=True,
        ),
        _shift_drop_question(runs, "RQ3", "circular"),
    ]
    if "accuracy_vs_shift_crop" in runs and runs["accuracy_vs_shift_crop"].map(
        lambda curve: isinstance(curve, (list, tuple))
    ).any():
        answers.append(_shift_drop_question(runs, "RQ3-crop", "crop"))
    answers.append(
        _metric_question(
            runs,
            "RQ4",
            "Is the network more robust to a shift adversary with blur?",
            "adversarial_circular",
            "`adversarial_circular` (correct at every circular offset)",
            by_augment=True,
        )
    )
    answers += _under_other_protocol(
        runs,
        "RQ4",
        "Is the network more robust to a {protocol}-shift adversary with blur?",
        "adversarial_crop",
        " (correct at every crop offset)",
        by_augment=True,
    )
    answers.append(
        _metric_question(
            runs,
            "RQ5",
            "Does clean accuracy rise with blur?",
            "accuracy",
            "clean test accuracy",
        )
    )
    return answers


def _shift_drop_question(runs: pd.DataFrame, key: str, protocol: str) -> Answer:
    """RQ3 under one shift protocol: does accuracy fall less over the diagonal offsets?"""
    return _metric_question(
        runs,
        key,
        "Does accuracy fall less under diagonal shifts with blur?"
        if protocol == "circular"
        else f"Does accuracy fall less under diagonal {protocol} shifts with blur?",
        f"accuracy_vs_shift_{protocol}",
        f"the drop from accuracy at offset 0 to the mean over {protocol} diagonal offsets 1..D "
        "(lower = flatter; below 0, the shifted images scored higher)",
        extract=lambda column: column.map(shift_drop),
        unit=" points",
        yes_if="lower",
    )


def _other_protocol(metric: str) -> str:
    """`consistency_crop` for `consistency_circular`, and the other way round."""
    protocol = metric.rsplit("_", 1)[-1]
    return metric.replace(protocol, "crop" if protocol == "circular" else "circular")


def _under_other_protocol(
    runs: pd.DataFrame,
    key: str,
    question: str,
    column: str,
    described: str = "",
    **breakdowns: bool,
) -> list[Answer]:
    """The answer `key` gives, with its `breakdowns`, for `column`'s shift protocol (the paper
    measures both: circular shifts, and crops of a larger image), where the runs measured it."""
    if column not in runs or not pd.to_numeric(runs[column], errors="coerce").notna().any():
        return []
    protocol = column.rsplit("_", 1)[-1]
    return [
        _metric_question(
            runs, f"{key}-{protocol}", question.format(protocol=protocol), column,
            f"`{column}`{described}", **breakdowns,
        )
    ]  # fmt: skip


def cost_answers(runs: pd.DataFrame) -> list[Answer]:
    """What blur costs: training and inference throughput (measured on the study's machine) and
    the forward pass's arithmetic (the same on every machine), C1–C3."""
    return [
        _metric_question(
            runs,
            "C1",
            "Does blur slow training down?",
            "train_images_per_s",
            "training throughput",
            unit=" images/s",
            yes_if="lower",
            relative=True,
            learning_matters=False,
        ),
        _metric_question(
            runs,
            "C2",
            "Does blur slow inference down?",
            "infer_images_per_s",
            "inference throughput",
            unit=" images/s",
            yes_if="lower",
            relative=True,
            learning_matters=False,
        ),
        _metric_question(
            runs,
            "C3",
            "Does blur add arithmetic?",
            "forward_mflops",
            "the forward pass's MFLOPs per image",
            unit=" MFLOPs",
            relative=True,
            by_filter_size=True,
            learning_matters=False,
        ),
    ]


def polyphase_answers(runs: pd.DataFrame) -> list[Answer]:
    """Each polyphase sampling the study ran against the fixed grid (A1–A3 for APS, L1–L3 for
    LPS) and LPS against APS (L4, L5), over the :func:`converted` runs of every filter size;
    none when the study did not vary `subsample`."""
    if "subsample" not in runs or runs["subsample"].nunique() < 2:
        return []
    present = set(runs["subsample"])
    answers = []
    for kind, letter in (("aps", "A"), ("lps", "L")):
        if {kind, "fixed"} <= present:
            answers += _against_fixed_grid(runs, kind, letter)
    if {"aps", "lps"} <= present:
        contrast = subsample_contrast("lps", "aps")
        answers += [
            _metric_question(
                runs,
                "L4",
                "Is LPS more accurate than APS?",
                "accuracy",
                "clean accuracy",
                contrast=contrast,
            ),
            _metric_question(
                runs,
                "L5",
                "Is LPS more consistent than APS under crop shifts?",
                "consistency_crop",
                "`consistency_crop`",
                contrast=contrast,
            ),
        ]
    return answers


def _against_fixed_grid(runs: pd.DataFrame, kind: str, letter: str) -> list[Answer]:
    contrast, name = subsample_contrast(kind, "fixed"), kind.upper()
    return [
        _metric_question(
            runs,
            f"{letter}1",
            f"Does {name} raise consistency under circular shifts?",
            "consistency_circular",
            "`consistency_circular`",
            contrast=contrast,
        ),
        _metric_question(
            runs,
            f"{letter}2",
            f"Does {name} raise consistency under crop shifts?",
            "consistency_crop",
            "`consistency_crop`",
            contrast=contrast,
        ),
        _metric_question(
            runs,
            f"{letter}3",
            f"Does {name} cost accuracy?",
            "accuracy",
            "clean accuracy",
            yes_if="lower",
            contrast=contrast,
        ),
    ]
