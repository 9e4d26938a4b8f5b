"""The report's figures, each readable on its own: title, axes with units, legend.

Every function takes the tables it needs and returns a `FigureOutcome`: the matplotlib figure, or
None with a note saying what the study lacks. A study that varied only some parameters gets the
figures its data supports; nothing here assumes a column exists.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ablate.pareto import non_dominated
from ablate.report_groups import NO_BLUR, SPLIT_BY, blur_groups, converted, varied_splits
from ablate.report_stats import SEED, mean_interval
from ablate.report_table import CONFIG_KEY, at_chance, counted_once
from ablate.shifts import SHIFT_KINDS
from ablate.spec import Objective
from ablate.variant_config import VariantConfig, unused_fields
from kernels.files import atomic_write

FAMILY_NAMES = {"binomial": "Bin", "box": "Rect", "triangle": "Tri", "gaussian": "Gauss"}
METRIC_LABELS = {
    "accuracy": "Clean test accuracy (%)",
    "consistency_circular": "Shift consistency, circular shifts (%)",
    "consistency_crop": "Shift consistency, crop shifts (%)",
    "adversarial_circular": "Shift-adversarial accuracy, circular (%)",
    "adversarial_crop": "Shift-adversarial accuracy, crop (%)",
    "train_images_per_s": "Training throughput (images/s)",
    "infer_images_per_s": "Inference throughput (images/s)",
    "peak_memory_mb": "Peak memory (MB)",
    "forward_mflops": "Forward MFLOPs per image",
    "filter_tv_mean": "Mean normalised filter TV (lower = smoother)",
}
MIN_TRIALS_FOR_IMPORTANCE = 10
MAX_POINTS_WITH_BARS = 30  # more configurations than this: interval bars would hide the points
MAX_LINES = 6  # more placement x padding lines than this: pool the paddings
CAPTIONS = {
    "accuracy_vs_consistency": (
        "Each point is a configuration (mean over seeds). Up and right is better. The red dashed "
        "line, where configurations trade accuracy for consistency, is their front."
    ),
    "throughput_vs_accuracy": (
        "What anti-aliasing costs in training speed, per configuration; right and up is better."
    ),
    "metrics_vs_filter_size": (
        "RQ2: accuracy and shift consistency against filter size, one line per placement. An "
        "interval bounds one group's mean, the seeds' luck in it: groups whose intervals overlap "
        "can still differ clearly (the answers compare within each seed)."
    ),
    "accuracy_vs_shift": (
        "RQ3 (the paper's diagonal-shift plot): accuracy when the test images are shifted by d "
        "pixels along the diagonal (circular: the content rolls d pixels down and right; crop: "
        "the crop window moves d pixels down and right, so the content moves up and left); a "
        "flatter curve means less sensitivity to the shift."
    ),
    "accuracy_during_training": (
        "Whether the short runs had finished learning: test accuracy after each quarter of the "
        "training budget. Curves still rising at the end mean the study compares how fast the "
        "designs learn as much as where they end."
    ),
    "filter_tv": (
        "RQ1: normalised total variation of the learned conv filters per layer; lower means "
        "smoother filters."
    ),
    "adversarial_accuracy": (
        "RQ4: share of test images classified correctly at every shift in [-S, S]², per filter "
        "(and with and without training augmentation, where the study varied it); the subtitle "
        "names what the bars pool over."
    ),
    "parameter_importance": (
        "How much each varied parameter decides each objective (Optuna's PED-ANOVA)."
    ),
}
Palette = dict[str, tuple[float, ...]]  # a colour per filter label
#: A line's dashes per padding, the same in every panel, none dotted like the no-blur mean.
PADDING_DASHES = {"zeros": "", "reflect": (5, 2), "replicate": (5, 2, 1, 2), "circular": (9, 3)}


@dataclass
class FigureOutcome:
    """A named figure (or None when the study cannot support it) and what to say about it."""

    name: str
    figure: Figure | None
    note: str = ""  # why there is no figure, or what its caption adds to CAPTIONS


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _filter_name(row: pd.Series) -> str:
    size = row.get("filter_size", "?")
    family = FAMILY_NAMES.get(row.get("filter", "binomial"), str(row.get("filter", "custom")))
    subsample = row.get("subsample", "fixed")
    grid = "" if subsample == "fixed" else f"{str(subsample).upper()} · "
    return f"{grid}{family}-{size}"


def blur_labels(table: pd.DataFrame) -> pd.Series:
    """Per row, the paper's name of its low-pass filter (`Bin-3`, `Rect-2`; `APS · Bin-3` or
    `LPS · Bin-3` under adaptive or learnable polyphase sampling), or `no blur` for a network
    that converts nothing (placement `none`, or `sites` 0), whose filter settings are unused."""
    names = pd.Series([_filter_name(row) for _, row in table.iterrows()], index=table.index)
    return names.where(converted(table), NO_BLUR)


def with_labels(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of `table` with `blur_label` (filter) and `variant` (placement + filter) columns."""
    labelled = table.copy()
    labelled["blur_label"] = blur_labels(labelled)
    placements = (
        labelled["placement"] if "placement" in labelled else pd.Series("", index=labelled.index)
    )
    several = placements[labelled["blur_label"] != NO_BLUR].nunique() > 1
    labelled["variant"] = [
        f"{placement} · {label}" if several and label != NO_BLUR else label
        for label, placement in zip(labelled["blur_label"], placements, strict=True)
    ]
    return labelled


def _label_order(labels: pd.Series) -> list[str]:
    """`no blur` first, then by family and size (Bin-2 before Bin-10)."""

    def key(label: str) -> tuple[int, str, float]:
        if label == NO_BLUR:
            return (0, "", 0.0)
        family, _, size = label.rpartition("-")
        try:
            return (1, family, float(size))
        except ValueError:
            return (1, label, 0.0)

    return sorted(labels.dropna().unique(), key=key)


def blur_palette(order: Sequence[str]) -> Palette:
    """Black for `no blur`, a viridis ramp by filter size for the rest. The report builds it
    once from every run's filter, so a filter keeps its colour in every figure."""
    blurred = [label for label in order if label != NO_BLUR]
    colours = sns.color_palette("viridis", max(len(blurred), 1))
    palette = {label: colours[i] for i, label in enumerate(blurred)}
    if NO_BLUR in order:
        palette[NO_BLUR] = (0.0, 0.0, 0.0)
    return palette


def study_palette(runs: pd.DataFrame) -> Palette | None:
    """The colour of every filter the study ran (None for a study without runs)."""
    return blur_palette(_label_order(with_labels(runs)["blur_label"])) if len(runs) else None


def _fixed_note(table: pd.DataFrame, columns: Sequence[str]) -> str:
    """'padding fixed at reflect; …' for the columns the study did not vary (or lacks)."""
    parts = []
    for column in columns:
        if column not in table:
            parts.append(f"no {column} column")
        elif table[column].nunique(dropna=False) == 1:
            parts.append(f"{column} fixed at {table[column].iloc[0]}")
    return "; ".join(parts)


def _pooled_note(table: pd.DataFrame, shown: Sequence[str]) -> str:
    """'pooled over padding, lr' for the design fields the study varied that a figure does not
    draw (nothing when it draws them all)."""
    drawn = {*shown, *SPLIT_BY, "seed", "device"}
    pooled = [
        field
        for field in VariantConfig.model_fields
        if field in table and field not in drawn and table[field].astype(str).nunique() > 1
    ]
    return f"pooled over {', '.join(pooled)}" if pooled else ""


def _sample_note(table: pd.DataFrame, images: str = "") -> str:
    """How much a figure's means pool, for its subtitle: the seeds per configuration (`table`
    holds runs, or configurations with `n_seeds`) and, with `images`, the test images each run
    scored (`n_test`, `n_eval`, as the runs record them): "test" all of them, "diagonal" or
    "square" the shift metrics' at their offsets."""
    if "n_seeds" in table:
        seeds = _span(table["n_seeds"])
    elif {CONFIG_KEY, "seed"} <= set(table):
        seeds = _span(table.groupby(CONFIG_KEY)["seed"].nunique())
    else:
        seeds = ""
    parts = [f"{seeds} seed(s) per configuration"] if seeds else []
    tested = _span(table["n_test"]) if "n_test" in table else ""
    shifted = _span(table["n_eval"]) if {"n_eval", "diagonal", "shift"} <= set(table) else ""
    if images == "test" and tested:
        parts.append(f"{tested} test images per run")
    elif images in ("diagonal", "square") and shifted:
        offsets = (
            f"diagonal offsets d = 0..{_span(table['diagonal'])}"
            if images == "diagonal"
            else f"each offset in [-S, S]², S = {_span(table['shift'])}"
        )
        parts.append(f"the first {shifted} test images per run at {offsets}")
    return ", ".join(parts)


def _span(values: pd.Series) -> str:
    """'1,000', or '500–1,000' where the values differ; '' where there is none."""
    known = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if known.empty:
        return ""
    low, high = int(known.min()), int(known.max())
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _title(fig: Figure, title: str, subtitle: str = "") -> None:
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)


def _legend_outside(ax: plt.Axes) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False)


def _errorbars(ax: plt.Axes, table: pd.DataFrame, x: str, y: str) -> bool:
    """Grey 95 % interval bars behind the points, where the table has them (≥ 2 seeds);
    whether any were drawn."""
    drawn = False
    for axis, metric in (("x", x), ("y", y)):
        low, high = f"{metric}_ci95_low", f"{metric}_ci95_high"
        if low not in table or table[low].isna().all():
            continue
        mean = table[f"{metric}_mean"]
        err = np.vstack([mean - table[low], table[high] - mean])
        xs, ys = table[f"{x}_mean"], table[f"{y}_mean"]
        kwargs = {"xerr": err} if axis == "x" else {"yerr": err}
        ax.errorbar(xs, ys, fmt="none", ecolor="0.75", elinewidth=0.8, zorder=0, **kwargs)
        drawn = True
    return drawn


def _clip_percent_axis(ax: plt.Axes) -> None:
    """Keep a percentage axis within [0, 100]: the t-interval of a few seeds can reach past
    either end, and the frame then cuts it rather than showing impossible values."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -1.0), min(high, 101.0))


def _bars_cut(ax: plt.Axes, table: pd.DataFrame, x: str, y: str) -> bool:
    """Whether an interval of `_errorbars` reaches past the axes' limits."""
    for metric, (low, high) in ((x, ax.get_xlim()), (y, ax.get_ylim())):
        ends = table.reindex(columns=[f"{metric}_ci95_low", f"{metric}_ci95_high"])
        if ((ends < low) | (ends > high)).to_numpy().any():
            return True
    return False


def _zoom_to_points(ax: plt.Axes, xs: pd.Series, ys: pd.Series) -> None:
    """Frame the means, not the intervals: with 2 seeds t(0.975, 1) = 12.7 makes the bars so
    long that they would squash every point into the middle. Clipped bars run off the edge."""
    for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        finite = values[np.isfinite(values)]
        if finite.empty:
            continue
        low, high = float(finite.min()), float(finite.max())
        margin = max(0.12 * (high - low), 0.02 * max(abs(high), 1.0))
        setter(low - margin, high + margin)


#: What a scatter's marker tells apart, where the configurations with blur differ in it.
MARKED_BY = ("padding", "placement")
RINGS_NOTE = "Red rings mark the study's Pareto front on all its objectives."
NEAR_RINGS_NOTE = (
    "Dashed rings mark the configurations near it: none on the front clearly beats them."
)


def _marker_fields(blurred: pd.DataFrame) -> list[str]:
    """The MARKED_BY fields whose values differ among the rows with blur, `blurred`
    (`blur_groups`): a network without blur reads no padding, and its placement converts
    nothing."""
    return [field for field in MARKED_BY if field in blurred and blurred[field].nunique() > 1]


def _marker_labels(table: pd.DataFrame, fields: Sequence[str], blurs: pd.Series) -> pd.Series:
    """Per row, its values of `fields` ('zeros', 'circular · paper'), or `no blur` for a row
    without blur (not `blurs`), which gets a marker of its own, never a padding's."""
    values = table[list(fields)].astype(str).agg(" · ".join, axis=1)
    return values.where(blurs, NO_BLUR)


def _ring_front(
    ax: plt.Axes, configs: pd.DataFrame, x: str, y: str, objectives: Sequence[Objective]
) -> str:
    """Red rings on the study's Pareto front where `x` or `y` is one of its objectives, dashed
    ones on the configurations near it (`near_front`); the caption's words on them ('' where
    none were drawn)."""
    metrics = [o.metric for o in objectives]
    if not {x, y} & set(metrics) or "pareto" not in configs or not configs["pareto"].any():
        return ""
    near = configs["near_front"] if "near_front" in configs else pd.Series(False, configs.index)
    rings = [(configs["pareto"], "solid", f"on the study's Pareto front\n({', '.join(metrics)})"),
             (near, "--", "near the front")]  # fmt: skip
    for ringed, line, label in rings:
        if ringed.any():
            ax.scatter(configs.loc[ringed, f"{x}_mean"], configs.loc[ringed, f"{y}_mean"], s=330,
                       facecolors="none", edgecolors="tab:red", linewidths=1.0,
                       linestyles=line, label=label, zorder=3)  # fmt: skip
    return f"{RINGS_NOTE} {NEAR_RINGS_NOTE}" if near.any() else RINGS_NOTE


@dataclass
class _Scatter:
    """A drawn `_scatter_by_variant`, for its figure to add to and then `finish`."""

    figure: Figure
    ax: plt.Axes
    notes: list[str]  # the subtitle's parts
    marker: str | None  # the legend title of the marker, where it means something
    rings: str  # the caption's words on the rings drawn ('' where none were)

    def finish(self, name: str, title: str) -> FigureOutcome:
        """Legend beside the axes, titles saying what colour, marker and size mean; the caption
        names the rings where there are some."""
        names = dict(LEGEND_NAMES)
        if self.marker:
            names[self.marker] = f"{self.marker} (marker)"
        # seaborn titles a legend of colour alone ("blur_label"), which a new legend drops
        drawn = self.ax.get_legend()
        legend_title = drawn.get_title().get_text() if drawn is not None else ""
        self.ax.legend(title=names.get(legend_title, legend_title) or None)
        _legend_outside(self.ax)
        _rename_legend_titles(self.ax, names)
        _title(self.figure, title, "; ".join(n for n in self.notes if n))
        return FigureOutcome(name, self.figure, self.rings)


def _scatter_by_variant(
    configs: pd.DataFrame,
    x: str,
    y: str,
    size: str | None,
    palette: Palette | None,
    objectives: Sequence[Objective],
) -> _Scatter:
    """Scatter of configurations: colour = filter, marker = what those with blur differ in
    among MARKED_BY (`_marker_labels`), the Pareto front ringed (`_ring_front`)."""
    data = with_labels(configs)
    order = _label_order(data["blur_label"])
    blurs = blur_groups(data) != NO_BLUR
    fields = _marker_fields(data[blurs])
    style = " · ".join(fields) or None
    if style:
        data[style] = _marker_labels(data, fields, blurs)
    size_column = f"{size}_mean" if size and f"{size}_mean" in data else None
    if size_column:  # whole numbers keep the size legend legible ("1892", not "1892.0")
        rounded = data[size_column].round()
        data[size_column] = rounded.astype(int) if rounded.notna().all() else rounded
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    notes = []
    bars = False
    if len(data) <= MAX_POINTS_WITH_BARS:
        bars = _errorbars(ax, data, x, y)
    else:
        notes.append(f"{len(data)} configurations: interval bars left out (see configs.csv)")
    sns.scatterplot(
        data=data,
        x=f"{x}_mean",
        y=f"{y}_mean",
        hue="blur_label",
        hue_order=order,
        palette=palette or blur_palette(order),
        style=style,
        style_order=sorted(data[style].unique(), key=lambda v: v != NO_BLUR) if style else None,
        size=size_column,
        sizes=(40, 260),
        ax=ax,
        zorder=2,
    )
    _zoom_to_points(ax, data[f"{x}_mean"], data[f"{y}_mean"])
    if bars:
        cut = ", cut at the frame (configs.csv has them whole)" if _bars_cut(ax, data, x, y) else ""
        notes.insert(0, f"grey bars: 95 % t-interval over seeds{cut}")
    ax.set_xlabel(metric_label(x))
    ax.set_ylabel(metric_label(y))
    if style is None:
        fixed = _fixed_note(data[blurs], MARKED_BY)
        notes.append(f"blurred points: {fixed}" if fixed else "marker: one style")
    if size and size_column is None:
        notes.append(f"no {size} in the runs, so all points have one size")
    return _Scatter(fig, ax, notes, style, _ring_front(ax, configs, x, y, objectives))


def _rename_legend_titles(ax: plt.Axes, names: dict[str, str]) -> None:
    legend = ax.get_legend()
    if legend is None:
        return
    for text in legend.get_texts():
        if text.get_text() in names:
            text.set_text(names[text.get_text()])
            text.set_fontweight("bold")


LEGEND_NAMES = {
    "blur_label": "filter (colour)",
    "train_images_per_s_mean": "train images/s (size)",
}


def accuracy_consistency_figure(
    configs: pd.DataFrame,
    consistency_metric: str,
    objectives: Sequence[Objective],
    palette: Palette | None = None,
) -> FigureOutcome:
    """Accuracy vs consistency; the 2-D front as a line, the study's Pareto front ringed."""
    name = "accuracy_vs_consistency"
    needed = ["accuracy_mean", f"{consistency_metric}_mean"]
    missing = [c for c in needed if c not in configs]
    if configs.empty or missing:
        return FigureOutcome(name, None, f"skipped: the table has no {missing or 'rows'}")
    stuck = configs.get("seeds_at_chance", pd.Series(0, index=configs.index)) > 0
    if stuck.all():
        return FigureOutcome(
            name, None, "skipped: every configuration has a run that did not learn"
        )
    left_out = (
        f"{stuck.sum()} configuration(s) not shown: a run did not learn" if stuck.any() else ""
    )
    configs = configs[~stuck]
    plot = _scatter_by_variant(
        configs, consistency_metric, "accuracy", "train_images_per_s", palette, objectives
    )
    plot.notes += [left_out, _sample_note(configs)]
    values = configs[[f"{consistency_metric}_mean", "accuracy_mean"]].to_numpy(dtype=float)
    front_2d = configs[non_dominated(values, ["maximize", "maximize"])]
    front_2d = front_2d.sort_values(f"{consistency_metric}_mean")
    if len(front_2d) < 2:  # a line of one point draws nothing, but its legend entry
        plot.notes.append("one configuration is best on both axes: no front line to draw")
    else:
        plot.ax.plot(
            front_2d[f"{consistency_metric}_mean"],
            front_2d["accuracy_mean"],
            color="tab:red",
            linewidth=1.2,
            linestyle="--",
            drawstyle="steps-pre",
            label="front: accuracy × consistency",
            zorder=3,
        )
    return plot.finish(name, "Accuracy vs shift consistency per configuration (mean over seeds)")


def throughput_accuracy_figure(
    configs: pd.DataFrame, objectives: Sequence[Objective], palette: Palette | None = None
) -> FigureOutcome:
    """What blur costs: training throughput against accuracy; the Pareto front ringed."""
    name = "throughput_vs_accuracy"
    if configs.empty or "train_images_per_s_mean" not in configs:
        return FigureOutcome(name, None, "skipped: the runs carry no train_images_per_s")
    plot = _scatter_by_variant(configs, "train_images_per_s", "accuracy", None, palette, objectives)
    if "device_metric" in configs:
        devices = ", ".join(map(str, configs["device_metric"].dropna().unique()))
        plot.notes.insert(0, f"device: {devices}")
    plot.notes.append(_sample_note(configs))
    return plot.finish(name, "Training throughput vs accuracy per configuration (mean over seeds)")


def _interval_errorbar(values: np.ndarray) -> tuple[float, float]:
    """seaborn `errorbar=` callable: the 95 % t-interval, collapsed to the mean for one seed."""
    low, high = mean_interval(values)
    if np.isnan(low):
        mean = float(np.nanmean(values))
        return (mean, mean)
    return (low, high)


def _per_seed(table: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """One row per plotted group (`keys`: x, hue, style, panel, ...) and seed, the mean of its
    runs' `values`: a seed's runs share initial weights and batch order, so the runs of the
    configurations a point pools are not independent samples, the seed is (as in the answers,
    `seed_means`). seaborn's mean and interval over these rows are then over seeds. A table
    without seeds (an old study) is returned as it is: its runs are the samples."""
    if SEED not in table:
        return table
    grouped = table.groupby([*keys, SEED], sort=False, dropna=False)
    return grouped[list(values)].mean().reset_index()


def _unit(table: pd.DataFrame) -> str:
    """What a figure's means and intervals are over (`_per_seed`): 'seed', or 'run' where the
    table records no seed."""
    return "seed" if SEED in table else "run"


def _baseline_note(drawn: set[str], unit: str) -> str:
    """The caption's words on what `filter_size_figure` drew of the runs without blur, means
    and interval over `unit`s (`_unit`)."""
    if not drawn:
        return ""
    band = ", the grey band its 95 % t-interval" if "band" in drawn else ""
    return (
        f"The black dotted line is the mean over {unit}s of the runs without blur (placement "
        f"none, or sites 0){band}."
    )


def filter_size_figure(runs: pd.DataFrame, consistency_metric: str) -> FigureOutcome:
    """Accuracy and consistency against filter size, one line per placement; no blur as a band;
    a row per network or dataset where the study varies one (SPLIT_BY)."""
    name = "metrics_vs_filter_size"
    metrics = [m for m in ("accuracy", consistency_metric) if m in runs]
    if runs.empty or "filter_size" not in runs or not metrics:
        return FigureOutcome(name, None, "skipped: the runs carry no filter_size or metrics")
    left_out = _sizes_without_values(runs, metrics)
    metrics = [m for m in metrics if runs[m].notna().any()]
    placements = runs["placement"] if "placement" in runs else pd.Series("paper", index=runs.index)
    blurs = converted(runs)
    if not blurs.any():
        return FigureOutcome(
            name, None, "skipped: no run has blur (placement none, or sites 0, in each)"
        )
    lines = _line_per_grid(runs[blurs])
    n_lines = lines["placement"].nunique() if "placement" in lines else 1
    spread = _on_every_padding(lines)
    paddings = spread["padding"].nunique() if "padding" in spread else 1
    style = "padding" if paddings > 1 and n_lines * paddings <= MAX_LINES else None
    splits = list(runs.groupby(split_suffix(runs), sort=True))
    fig, axes = plt.subplots(len(splits), len(metrics), squeeze=False,
                             figsize=(6 * len(metrics) + 2, 4.8 * len(splits)))  # fmt: skip
    baseline: set[str] = set()  # what of the no-blur runs the panels draw
    for row, (split, subset) in zip(axes, splits, strict=True):
        for ax, metric in zip(row, metrics, strict=True):
            baseline |= _metric_by_filter_size(ax, subset, blurs[subset.index], metric, style)
            if split:
                ax.set_title(split.removeprefix(" · "))
    for ax in axes.flat:
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    _legend_outside(axes[0][-1])
    notes = [_fixed_note(spread, ["placement", "padding"]), *left_out]
    if paddings > 1 and style is None:
        notes.append("paddings pooled")
    unit = _unit(runs)
    points = _per_seed(runs.assign(placement=placements), ["placement", "filter_size"], metrics)
    if points.groupby(["placement", "filter_size"]).size().max() < 2:
        notes.append(f"one {unit} per point, so no interval")
    if lines["filter_size"].nunique() < 2:
        notes.append("one filter size with blur")
    notes.append(_sample_note(runs, "test"))
    _title(
        fig,
        f"Accuracy and shift consistency vs filter size (mean over {unit}s, bars: 95 % "
        "t-interval)",
        "; ".join(n for n in notes if n),
    )
    fig.tight_layout()
    return FigureOutcome(name, fig, _baseline_note(baseline, unit))


def _sizes_without_values(runs: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """'consistency_circular: filter size 5 left out (no run that learned)' for each metric
    whose values are masked for every blurred run of some filter sizes (runs that did not
    learn)."""
    blurred = runs[converted(runs)]
    notes = []
    for metric in metrics:
        sizes = blurred.groupby("filter_size")[metric].apply(lambda v: v.notna().any())
        missing = [str(size) for size, present in sizes.items() if not present]
        if missing:
            every = len(missing) == len(sizes)
            where = "every filter size" if every else f"filter size {', '.join(missing)}"
            notes.append(f"{metric}: {where} left out (no run that learned)")
    return notes


def _metric_by_filter_size(
    ax: plt.Axes, runs: pd.DataFrame, blurs: pd.Series, metric: str, style: str | None
) -> set[str]:
    """One panel of `filter_size_figure`: a line per placement (and grid), paddings told apart
    by their markers and dashes (none dotted: a dotted line is the no-blur runs' mean, over its
    grey 95 % band), each point and the band over seeds (`_per_seed`); what it drew of the
    no-blur runs ('line', 'band')."""
    blurred = _line_per_grid(runs[blurs])
    if style == "padding":
        blurred = _on_every_padding(blurred)
    lines = [key for key in ("filter_size", "placement", style) if key and key in blurred]
    blurred = _per_seed(blurred, lines, [metric])
    baseline = _per_seed(runs[counted_once(runs, ~blurs)], [], [metric])[metric].dropna()
    if not blurred.empty:
        sns.lineplot(
            data=blurred,
            x="filter_size",
            y=metric,
            hue="placement" if "placement" in blurred else None,
            style=style,
            markers=True if style else None,
            dashes={p: PADDING_DASHES[p] for p in blurred["padding"].unique()} if style else False,
            marker=None if style else "o",
            errorbar=_interval_errorbar,
            err_style="bars",
            ax=ax,
        )
    drawn = set()
    if not baseline.empty:
        ax.axhline(baseline.mean(), color="black", linestyle=":", linewidth=1.8, label=NO_BLUR)
        drawn.add("line")
        low, high = mean_interval(baseline)
        if np.isfinite(low):
            ax.axhspan(low, high, color="0.85", zorder=0, label=f"{NO_BLUR}: 95 % t-interval")
            drawn.add("band")
    ax.set_xlabel("Filter size k (taps per axis)")
    ax.set_ylabel(metric_label(metric))
    _clip_percent_axis(ax)
    sizes = sorted(blurred.loc[blurred[metric].notna(), "filter_size"].unique())  # drawn ones
    if len(sizes) == 1:  # one tick, not the fractions of a unit-wide axis
        ax.set_xticks(sizes)
        ax.set_xlim(sizes[0] - 1, sizes[0] + 1)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, title="placement" if style is None else None)
    return drawn


def _on_every_padding(blurred: pd.DataFrame) -> pd.DataFrame:
    """`blurred` with each run whose filter reads no padding (one tap on the fixed grid), and
    so holds only the default in `padding`, repeated on every padding the other runs read:
    each padding's line starts from it, and no padding is drawn that no run read."""
    if "padding" not in blurred:
        return blurred
    reads = np.asarray(
        ["padding" not in unused_fields(row) for row in blurred.to_dict("records")], dtype=bool
    )
    read = blurred.loc[reads, "padding"].unique()
    if reads.all() or not len(read):
        return blurred
    return pd.concat([blurred[reads], *(blurred[~reads].assign(padding=p) for p in read)])


def _line_per_grid(blurred: pd.DataFrame) -> pd.DataFrame:
    """`blurred` with the subsampling added to its placement ('paper + APS') where the study
    varies it, so each grid gets a line of its own."""
    if "subsample" not in blurred or blurred["subsample"].nunique() < 2:
        return blurred
    fixed = blurred["subsample"] == "fixed"
    return blurred.assign(
        placement=blurred["placement"].where(
            fixed, blurred["placement"] + " + " + blurred["subsample"].str.upper()
        )
    )


def split_suffix(table: pd.DataFrame) -> pd.Series:
    """Per row, ' · model vgg' (one part per SPLIT_BY setting the table varies) to append to a
    label; '' per row when it varies none. Runs of different networks or data are not pooled in
    a panel."""
    suffix = pd.Series("", index=table.index)
    for setting in varied_splits(table):
        suffix += f" · {setting} " + table[setting].astype(str)
    return suffix


def _with_baseline_per_placement(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of blurred placements, plus the no-blur rows repeated under every placement; a
    panel per placement, and per network or dataset where the study varies one (SPLIT_BY), so
    each curve sits beside its own baseline."""
    labelled = with_labels(runs)
    suffix = split_suffix(labelled)
    if "placement" not in labelled:
        return labelled.assign(panel="all runs" + suffix)
    blurred = labelled["blur_label"] != NO_BLUR
    placements = sorted(labelled.loc[blurred, "placement"].unique()) or ["none"]
    parts = [labelled[blurred].assign(panel=labelled["placement"][blurred] + suffix[blurred])]
    parts += [labelled[~blurred].assign(panel=p + suffix[~blurred]) for p in placements]
    return pd.concat(parts, ignore_index=True).sort_values("panel", kind="stable")


def _label_grid(grid: sns.FacetGrid, xlabel: str, ylabel: str) -> None:
    """Label every panel (not only the outer ones) so a cropped panel still reads on its own."""
    for ax in grid.axes.flat:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)


def _grid_legend_beside(grid: sns.FacetGrid, legend_title: str) -> None:
    """Lay the panels out, then put the legend to their right, clear of the panel titles."""
    grid.figure.tight_layout()
    if grid.legend is not None:
        sns.move_legend(grid, "upper left", bbox_to_anchor=(1.0, 0.9), frameon=False)
        grid.legend.set_title(legend_title)


def _curves_long(
    data: pd.DataFrame, column: str, x: str, xs: Callable[[int], Sequence[float]], **tags: str
) -> list[dict]:
    """Long-form rows, one per point of each run's list in `column` (at `xs(len(list))`), with
    its panel, filter and seed; runs without a list are skipped."""
    kept = [key for key in ("panel", "blur_label", SEED) if key in data]
    rows = []
    for row, curve in zip(data[kept].to_dict("records"), data[column], strict=True):
        if not isinstance(curve, (list, tuple)):
            continue
        rows += [
            {**row, **tags, x: at, "accuracy": v}
            for at, v in zip(xs(len(curve)), curve, strict=True)
        ]
    return rows


def _curve_grid(
    long_df: pd.DataFrame, x: str, palette: Palette | None, row: str | None = None
) -> sns.FacetGrid:
    """Accuracy against `x`, a line per filter, a panel per placement (and per `row`), each
    point's mean and band over seeds (`_per_seed`)."""
    order = _label_order(long_df["blur_label"])
    keys = ["panel", "blur_label", x, *([row] if row else [])]
    grid = sns.relplot(
        data=_per_seed(long_df, keys, ["accuracy"]),
        kind="line",
        x=x,
        y="accuracy",
        hue="blur_label",
        hue_order=order,
        palette=palette or blur_palette(order),
        col="panel",
        row=row,
        marker="o",
        errorbar=_interval_errorbar,
        height=3.2,
        aspect=1.3,
        facet_kws={"sharey": False},
    )
    for ax in grid.axes.flat:
        _clip_percent_axis(ax)
    return grid


def shift_curve_figure(runs: pd.DataFrame, palette: Palette | None = None) -> FigureOutcome:
    """Accuracy at diagonal offsets 0..D, per filter, one panel per placement and protocol (RQ3)."""
    name = "accuracy_vs_shift"
    protocols = [p for p in SHIFT_KINDS if f"accuracy_vs_shift_{p}" in runs]
    if runs.empty or not protocols:
        return FigureOutcome(name, None, "skipped: the runs carry no accuracy_vs_shift_* lists")
    data = _with_baseline_per_placement(runs)
    long = []
    for protocol in protocols:
        long += _curves_long(data, f"accuracy_vs_shift_{protocol}", "d", range, protocol=protocol)
    if not long:
        reason = (
            "no run learned (accuracy not above chance), and their curves are left out"
            if at_chance(runs).all()
            else "the accuracy_vs_shift lists are empty"
        )
        return FigureOutcome(name, None, f"skipped: {reason}")
    grid = _curve_grid(pd.DataFrame(long), "d", palette, row="protocol")
    grid.set_titles("{row_name} shift · placement {col_name}")
    _label_grid(grid, "Diagonal shift d (pixels)", "Test accuracy (%)")
    for ax in grid.axes.flat:
        ax.xaxis.get_major_locator().set_params(integer=True)
    notes = [
        "flatter = less sensitive to where the image sits",
        _pooled_note(runs, ["placement", "filter", "filter_size", "subsample"]),
        _sample_note(runs, "diagonal"),
    ]
    unit = _unit(runs)
    _title(
        grid.figure,
        f"Accuracy vs diagonal shift (mean over {unit}s; bands: 95 % t-interval where ≥ 2 "
        f"{unit}s)",
        "; ".join(n for n in notes if n),
    )
    _grid_legend_beside(grid, "filter")
    return FigureOutcome(name, grid.figure)


def training_curve_figure(runs: pd.DataFrame, palette: Palette | None = None) -> FigureOutcome:
    """Test accuracy after each quarter of the training budget, per filter, a panel per placement:
    whether the short runs had finished learning."""
    name = "accuracy_during_training"
    if runs.empty or name not in runs:
        return FigureOutcome(name, None, f"skipped: the runs carry no {name} lists")
    long = _curves_long(
        _with_baseline_per_placement(runs),
        name,
        "budget",
        lambda n: [100 * (i + 1) / n for i in range(n)],
    )
    if not long:
        return FigureOutcome(name, None, f"skipped: the {name} lists are empty")
    grid = _curve_grid(pd.DataFrame(long), "budget", palette)
    grid.set_titles("placement {col_name}")
    _label_grid(grid, "Share of the training budget spent (%)", "Test accuracy (%)")
    unit = _unit(runs)
    notes = [
        "still rising at 100 % = the budget cut the runs short",
        "other varied parameters pooled",
        _sample_note(runs, "test"),
    ]
    _title(
        grid.figure,
        f"Test accuracy during training (mean over {unit}s; bands: 95 % t-interval where ≥ 2 "
        f"{unit}s)",
        "; ".join(n for n in notes if n),
    )
    _grid_legend_beside(grid, "filter")
    return FigureOutcome(name, grid.figure)


def filter_tv_figure(runs: pd.DataFrame) -> FigureOutcome:
    """Mean normalised TV of the learned conv filters per layer and variant (RQ1) as a heatmap."""
    name = "filter_tv"
    if runs.empty or "filter_tv" not in runs:
        return FigureOutcome(name, None, "skipped: the runs carry no filter_tv")
    data = with_labels(runs)
    suffix = split_suffix(data)  # a row per network where the study varies it: its own layers
    variants = [
        variant + value
        for value in sorted(suffix.unique())
        for variant in _label_order(data.loc[suffix == value, "variant"])
    ]
    data["variant"] = data["variant"] + suffix
    kept = [key for key in ("variant", SEED) if key in data]
    long = [
        {**row, "layer": layer, "tv": tv}
        for row, tvs in zip(data[kept].to_dict("records"), data["filter_tv"], strict=True)
        if isinstance(tvs, dict)
        for layer, tv in tvs.items()
    ]
    if not long:
        return FigureOutcome(name, None, "skipped: the filter_tv dicts are empty")
    long_df = _per_seed(pd.DataFrame(long), ["variant", "layer"], ["tv"])
    layers = list(dict.fromkeys(long_df["layer"]))
    table = long_df.pivot_table(index="variant", columns="layer", values="tv", aggfunc="mean")
    table = table.reindex(index=[v for v in variants if v in table.index], columns=layers)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.9 * len(layers) + 3), max(3.0, 0.45 * len(variants) + 2))
    )
    sns.heatmap(
        table,
        vmin=0.0,  # from 0, not the table's least: a 1 % difference had filled the whole scale
        annot=table.size <= 200,
        fmt=".3f",  # as the RQ1 answer gives them
        cmap="mako_r",
        cbar_kws={"label": "Normalised TV\n(dimensionless; lower = smoother)"},
        ax=ax,
    )
    ax.set_xlabel("Conv layer (input → output order)")
    # On two lines: one line is taller than a study of one or two variants' figure.
    ax.set_ylabel("Variant (filter; placement,\nnetwork and data where varied)")
    ax.tick_params(axis="x", rotation=45)
    _title(
        fig,
        f"Smoothness of the learned conv filters per layer (mean over {_unit(runs)}s)",
        _sample_note(runs),
    )
    fig.tight_layout()
    return FigureOutcome(name, fig)


def adversarial_figure(runs: pd.DataFrame) -> FigureOutcome:
    """Shift-adversarial accuracy per filter, with and without augmentation (RQ4)."""
    name = "adversarial_accuracy"
    protocols = [p for p in SHIFT_KINDS if f"adversarial_{p}" in runs]
    if runs.empty or not protocols:
        return FigureOutcome(name, None, "skipped: the runs carry no adversarial_* metric")
    data = _with_baseline_per_placement(runs)
    if "augment" in data:
        data["training"] = data["augment"].map({True: "augmented", False: "not augmented"})
    else:
        data["training"] = "unknown"
    long = data.melt(
        id_vars=[key for key in ("panel", "blur_label", "training", SEED) if key in data],
        value_vars=[f"adversarial_{p}" for p in protocols],
        var_name="protocol",
        value_name="adversarial",
    )
    long["protocol"] = long["protocol"].str.removeprefix("adversarial_")
    order = _label_order(long["blur_label"])
    grid = sns.catplot(
        data=_per_seed(long, ["panel", "protocol", "blur_label", "training"], ["adversarial"]),
        kind="bar",
        x="blur_label",
        order=order,
        y="adversarial",
        hue="training",
        hue_order=sorted(long["training"].unique()),
        col="panel",
        row="protocol",
        errorbar=_interval_errorbar,
        height=3.2,
        aspect=1.4,
        sharey=False,
    )
    grid.set_titles("{row_name} shift · placement {col_name}")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=30)
        _clip_percent_axis(ax)
    _label_grid(grid, "Filter", "Shift-adversarial accuracy (%)")
    notes = ["correct at every offset", _sample_note(runs, "square")]
    if "augment" not in runs or runs["augment"].nunique() == 1:
        fixed = runs["augment"].iloc[0] if "augment" in runs else "unknown"
        notes.append(f"the study did not vary augmentation (augment = {fixed})")
    notes.append(_pooled_note(runs, ["placement", "filter", "filter_size", "subsample", "augment"]))
    unit = _unit(runs)
    _title(
        grid.figure,
        "Shift-adversarial accuracy per filter "
        f"(mean over {unit}s; bars: 95 % t-interval where ≥ 2 {unit}s)",
        "; ".join(n for n in notes if n),
    )
    _grid_legend_beside(grid, "training")
    return FigureOutcome(name, grid.figure)


def importance_figure(study: optuna.Study, objectives: Sequence[Objective]) -> FigureOutcome:
    """PED-ANOVA importance of each varied parameter for each objective (Optuna's default)."""
    name = "parameter_importance"
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    complete = [t for t in finished if not _has_run_at_chance(t)]
    params = {p for t in complete for p in t.params}
    varied = [p for p in sorted(params) if len({repr(t.params.get(p)) for t in complete}) > 1]
    if len(varied) < 2 or len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        lacking = []
        if len(varied) < 2:
            lacking.append(
                f"varies only {varied[0]} across those trials"
                if varied
                else "varies no parameter across those trials"
            )
        if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
            lacking.append(f"has {len(complete)} finished trial(s) whose runs all learned")
        return FigureOutcome(
            name,
            None,
            f"skipped: parameter importance needs at least 2 parameters varied across "
            f"{MIN_TRIALS_FOR_IMPORTANCE} or more finished trials whose runs all learned; this "
            f"study {' and '.join(lacking)}",
        )
    learned = optuna.create_study(directions=[o.direction for o in objectives])
    learned.add_trials(complete)
    rows, constant = [], []
    for index, objective in enumerate(objectives):
        if len({t.values[index] for t in complete}) < 2:
            constant.append(objective.metric)
            continue
        sign = -1.0 if objective.direction == "maximize" else 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(
                learned,
                params=varied,
                target=lambda t, i=index, s=sign: s * t.values[i],
            )
        rows += [
            {"objective": objective.metric, "parameter": p, "importance": v}
            for p, v in importances.items()
        ]
    if not rows:
        return FigureOutcome(name, None, "skipped: every objective is the same in every trial")
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(varied) * len(objectives) + 1.8))
    sns.barplot(data=pd.DataFrame(rows), x="importance", y="parameter", hue="objective", ax=ax)
    ax.set_xlabel("Importance (PED-ANOVA, normalised to sum 1 per objective)")
    ax.set_ylabel("Varied parameter")
    _legend_outside(ax)
    notes = [f"{metric} left out: the same in every trial" for metric in constant]
    if len(finished) > len(complete):
        stuck = len(finished) - len(complete)
        notes.insert(0, f"{stuck} trial(s) with a run that did not learn left out")
    _title(
        fig,
        f"Which parameters matter for each objective ({len(complete)} trials)",
        "; ".join(notes),
    )
    return FigureOutcome(name, fig)


def _has_run_at_chance(trial: optuna.trial.FrozenTrial) -> bool:
    return any(record.get("learned") is False for record in trial.user_attrs.get("seeds", []))


def save_figure(outcome: FigureOutcome, folder: Path) -> list[Path]:
    """Write the figure as PNG and SVG in `folder`, close it, and return the two paths."""
    if outcome.figure is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{outcome.name}.png", folder / f"{outcome.name}.svg"]
    for path in paths:
        atomic_write(
            path,
            lambda temporary, kind=path.suffix[1:]: outcome.figure.savefig(
                temporary, format=kind, dpi=130, bbox_inches="tight"
            ),
        )
    plt.close(outcome.figure)
    return paths
