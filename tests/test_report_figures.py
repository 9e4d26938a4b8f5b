"""What the report's figures draw, on small hand-made tables: the labels, colours and notes they
give, the points, lines, bars and cells they plot, and where a study lacks what one needs."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest
import seaborn as sns
from optuna.distributions import CategoricalDistribution
from PIL import Image

from ablate import report_figures as figs
from ablate.report_groups import NO_BLUR
from ablate.spec import Objective

T1 = 12.706205  # t(0.975, 1): the 95 % interval of two seeds' mean


def _close(outcome: figs.FigureOutcome) -> None:
    if outcome.figure is not None:
        plt.close(outcome.figure)


# --- labels, order and colours ---------------------------------------------------------------


def test_each_filter_is_named_as_the_paper_names_it() -> None:
    """Family and size, the grid first where it is not the fixed one; a network that converts
    nothing is `no blur` whatever its filter fields hold."""
    table = pd.DataFrame(
        {
            "placement": ["paper", "paper", "paper", "paper", "paper", "none", "paper", "paper"],
            "sites": [None, None, None, None, None, None, 0, None],
            "filter": ["binomial", "box", "triangle", "gaussian", "custom", "box", "box", "box"],
            "filter_size": [3, 2, 5, 7, 4, 2, 2, 2],
            "subsample": ["fixed"] * 7 + ["lps"],
        }
    )
    assert figs.blur_labels(table).tolist() == [
        "Bin-3", "Rect-2", "Tri-5", "Gauss-7", "custom-4", NO_BLUR, NO_BLUR, "LPS · Rect-2",
    ]  # fmt: skip


def test_a_filter_without_family_or_grid_columns_is_a_fixed_grid_binomial() -> None:
    table = pd.DataFrame({"placement": ["paper", "paper"], "filter_size": [3, 5],
                          "subsample": ["fixed", "aps"]})  # fmt: skip
    assert figs.blur_labels(table).tolist() == ["Bin-3", "APS · Bin-5"]
    assert figs.blur_labels(pd.DataFrame({"placement": ["paper"]})).tolist() == ["Bin-?"]


def test_variants_name_the_placement_only_where_blurred_runs_differ_in_it() -> None:
    one = pd.DataFrame({"placement": ["none", "paper", "paper"], "filter_size": [1, 3, 5]})
    assert figs.with_labels(one)["variant"].tolist() == [NO_BLUR, "Bin-3", "Bin-5"]
    several = pd.DataFrame({"placement": ["none", "paper", "blur_before_max"],
                            "filter_size": [3, 3, 3]})  # fmt: skip
    labelled = figs.with_labels(several)
    assert labelled["variant"].tolist() == [NO_BLUR, "paper · Bin-3", "blur_before_max · Bin-3"]
    assert labelled["blur_label"].tolist() == [NO_BLUR, "Bin-3", "Bin-3"]
    assert "variant" not in several  # a copy: the table passed in is left as it was


def test_filters_are_ordered_no_blur_first_then_by_family_and_numeric_size() -> None:
    labels = pd.Series(["Bin-10", "Rect-3", NO_BLUR, "Bin-2", None, "Bin-x", "Bin-2"])
    assert figs._label_order(labels) == [NO_BLUR, "Bin-2", "Bin-10", "Bin-x", "Rect-3"]


def test_no_blur_is_black_and_the_filters_follow_the_viridis_ramp_in_order() -> None:
    palette = figs.blur_palette([NO_BLUR, "Bin-2", "Bin-3", "Bin-5"])
    ramp = sns.color_palette("viridis", 3)
    assert palette[NO_BLUR] == (0.0, 0.0, 0.0)
    assert [palette[label] for label in ("Bin-2", "Bin-3", "Bin-5")] == list(ramp)
    assert figs.blur_palette([NO_BLUR]) == {NO_BLUR: (0.0, 0.0, 0.0)}
    assert NO_BLUR not in figs.blur_palette(["Bin-3"])


def test_a_study_without_runs_has_no_palette() -> None:
    assert figs.study_palette(pd.DataFrame()) is None
    runs = pd.DataFrame({"placement": ["paper", "none"], "filter_size": [5, 3]})
    assert list(figs.study_palette(runs)) == ["Bin-5", NO_BLUR]


def test_a_metric_without_a_label_is_named_by_its_words() -> None:
    assert figs.metric_label("accuracy") == "Clean test accuracy (%)"
    assert figs.metric_label("mean_abs_error") == "mean abs error"


# --- subtitles -------------------------------------------------------------------------------


def test_a_span_gives_one_number_or_the_range_with_thousands_separated() -> None:
    assert figs._span(pd.Series([1000, 1000])) == "1,000"
    assert figs._span(pd.Series([1200, np.nan, 500])) == "500–1,200"
    assert figs._span(pd.Series(["n/a", None])) == ""


def test_the_fixed_note_names_what_the_study_held_and_what_it_lacks() -> None:
    table = pd.DataFrame({"padding": ["reflect", "reflect"], "placement": ["paper", "pool"]})
    assert figs._fixed_note(table, ["padding", "placement", "subsample"]) == (
        "padding fixed at reflect; no subsample column"
    )
    assert figs._fixed_note(table, ["placement"]) == ""


def test_the_pooled_note_names_the_varied_design_fields_a_figure_does_not_draw() -> None:
    table = pd.DataFrame({"padding": ["zeros", "reflect"], "lr": [0.1, 0.1],
                          "filter_size": [3, 5], "model": ["vgg", "resnet18"], "seed": [0, 1],
                          "accuracy": [90.0, 91.0]})  # fmt: skip
    assert figs._pooled_note(table, ["filter_size"]) == "pooled over padding"
    assert figs._pooled_note(table.assign(lr=[0.1, 0.2]), []) == (
        "pooled over filter_size, padding, lr"
    )
    assert figs._pooled_note(table, ["filter_size", "padding"]) == ""


def test_the_sample_note_counts_seeds_per_configuration_and_the_images_each_run_scored() -> None:
    runs = pd.DataFrame({"config_key": ["a", "a", "b"], "seed": [0, 1, 0], "n_test": 200,
                         "n_eval": [100, 100, 50], "diagonal": 4, "shift": 2})  # fmt: skip
    assert figs._sample_note(runs) == "1–2 seed(s) per configuration"
    assert figs._sample_note(runs, "test") == (
        "1–2 seed(s) per configuration, 200 test images per run"
    )
    assert figs._sample_note(runs, "diagonal") == (
        "1–2 seed(s) per configuration, the first 50–100 test images per run at diagonal "
        "offsets d = 0..4"
    )
    assert figs._sample_note(runs, "square") == (
        "1–2 seed(s) per configuration, the first 50–100 test images per run at each offset "
        "in [-S, S]², S = 2"
    )
    configs = pd.DataFrame({"n_seeds": [3, 3]})
    assert figs._sample_note(configs, "test") == "3 seed(s) per configuration"
    assert figs._sample_note(runs.drop(columns="diagonal"), "diagonal") == (
        "1–2 seed(s) per configuration"
    )
    assert figs._sample_note(pd.DataFrame({"n_test": [10]}), "test") == "10 test images per run"
    assert figs._sample_note(runs[["config_key", "seed"]]) == "1–2 seed(s) per configuration"
    assert figs._sample_note(runs[["n_eval", "diagonal", "shift"]], "diagonal") == (
        "the first 50–100 test images per run at diagonal offsets d = 0..4"
    )


# --- the scatters of configurations ----------------------------------------------------------


def _configs(n: int, intervals: bool = True) -> pd.DataFrame:
    """`n` blurred configurations (filter sizes 2, 3, ...) on a rising line: consistency 60 + i,
    accuracy 80 + 2i, throughput 1000 - 10i, each mean ± 0.5 where `intervals`."""
    i = np.arange(n, dtype=float)
    configs = pd.DataFrame({"placement": "paper", "filter_size": 2 + np.arange(n),
                            "consistency_circular_mean": 60 + i, "accuracy_mean": 80 + 2 * i,
                            "train_images_per_s_mean": 1000 - 10 * i, "n_seeds": 2})  # fmt: skip
    if intervals:
        for metric in ("consistency_circular", "accuracy", "train_images_per_s"):
            configs[f"{metric}_ci95_low"] = configs[f"{metric}_mean"] - 0.5
            configs[f"{metric}_ci95_high"] = configs[f"{metric}_mean"] + 0.5
    return configs


def _bar_segments(ax: plt.Axes) -> list[np.ndarray]:
    return [segment for collection in ax.collections
            if isinstance(collection, matplotlib.collections.LineCollection)
            for segment in collection.get_segments()]  # fmt: skip


def test_the_scatter_draws_each_configurations_mean_and_its_interval_bars() -> None:
    configs = _configs(3)
    configs.loc[1, "accuracy_ci95_high"] = 84.0  # a longer bar up than down
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    ax = outcome.figure.axes[0]
    points = np.vstack([c.get_offsets() for c in ax.collections if c.get_label() == "_child0"
                        or not isinstance(c, matplotlib.collections.LineCollection)])  # fmt: skip
    assert sorted(map(tuple, points.tolist())) == [(60.0, 80.0), (61.0, 82.0), (62.0, 84.0)]
    bars = sorted((tuple(s[0]), tuple(s[1])) for s in _bar_segments(ax))
    horizontal = [((59.5, 80.0), (60.5, 80.0)), ((60.5, 82.0), (61.5, 82.0)),
                  ((61.5, 84.0), (62.5, 84.0))]  # fmt: skip
    vertical = [((60.0, 79.5), (60.0, 80.5)), ((61.0, 81.5), (61.0, 84.0)),
                ((62.0, 83.5), (62.0, 84.5))]  # fmt: skip
    assert bars == pytest.approx(sorted(horizontal + vertical))
    assert ax.get_xlabel() == "Shift consistency, circular shifts (%)"
    assert ax.get_ylabel() == "Clean test accuracy (%)"
    assert "grey bars: 95 % t-interval over seeds" in outcome.figure.get_suptitle()
    legend = ax.get_legend()  # beside the axes, clear of the points: upper left at (1.02, 1)
    assert legend._loc == 2 and not legend.get_frame_on()
    anchor = legend.get_bbox_to_anchor().get_points()[0]
    assert ax.transAxes.inverted().transform(anchor) == pytest.approx((1.02, 1.0))
    _close(outcome)


def test_up_to_thirty_configurations_get_interval_bars_and_more_do_not() -> None:
    for n, bars in ((figs.MAX_POINTS_WITH_BARS, True), (figs.MAX_POINTS_WITH_BARS + 1, False)):
        outcome = figs.accuracy_consistency_figure(_configs(n), "consistency_circular", [])
        title = outcome.figure.get_suptitle()
        assert bool(_bar_segments(outcome.figure.axes[0])) == bars, n
        assert ("grey bars" in title) == bars
        assert (f"{n} configurations: interval bars left out (see configs.csv)" in title) == (
            not bars
        )
        _close(outcome)
    assert figs.MAX_POINTS_WITH_BARS == 30


def test_a_table_without_intervals_draws_no_bars_and_says_none() -> None:
    outcome = figs.accuracy_consistency_figure(_configs(3, intervals=False),
                                               "consistency_circular", [])  # fmt: skip
    assert not _bar_segments(outcome.figure.axes[0])
    assert "grey bars" not in outcome.figure.get_suptitle()
    _close(outcome)
    blank = _configs(3).assign(accuracy_ci95_low=np.nan, accuracy_ci95_high=np.nan,
                               consistency_circular_ci95_low=np.nan,
                               consistency_circular_ci95_high=np.nan)  # fmt: skip
    outcome = figs.accuracy_consistency_figure(blank, "consistency_circular", [])
    assert not _bar_segments(outcome.figure.axes[0])
    _close(outcome)


def test_the_scatter_frames_the_means_with_a_margin() -> None:
    """12 % of the range each side, at least 2 % of the larger end's size (or of 1)."""
    outcome = figs.accuracy_consistency_figure(_configs(3), "consistency_circular", [])
    ax = outcome.figure.axes[0]
    assert ax.get_xlim() == pytest.approx((60 - 1.24, 62 + 1.24))  # 2 % of 62 > 12 % of 2
    assert ax.get_ylim() == pytest.approx((80 - 1.68, 84 + 1.68))  # the bars run past it
    _close(outcome)
    ax = plt.figure().add_subplot()
    figs._zoom_to_points(ax, pd.Series([10.0, 20.0, np.nan]), pd.Series([0.5, 0.5, 0.5]))
    assert ax.get_xlim() == pytest.approx((10 - 1.2, 20 + 1.2))
    assert ax.get_ylim() == pytest.approx((0.5 - 0.02, 0.5 + 0.02))
    plt.close(ax.figure)


def test_a_percentage_axis_stays_within_minus_one_and_one_hundred_and_one() -> None:
    ax = plt.figure().add_subplot()
    ax.set_ylim(-20.0, 130.0)
    figs._clip_percent_axis(ax)
    assert ax.get_ylim() == (-1.0, 101.0)
    ax.set_ylim(40.0, 60.0)
    figs._clip_percent_axis(ax)
    assert ax.get_ylim() == (40.0, 60.0)
    plt.close(ax.figure)


def test_the_throughput_scatter_names_the_device_and_its_axes() -> None:
    configs = _configs(2).assign(device_metric=["cuda:H200", np.nan])
    outcome = figs.throughput_accuracy_figure(configs, [])
    ax = outcome.figure.axes[0]
    assert ax.get_xlabel() == "Training throughput (images/s)"
    assert ax.get_ylabel() == "Clean test accuracy (%)"
    subtitle = outcome.figure.get_suptitle().split("\n")[1]
    assert subtitle.startswith("device: cuda:H200; ")
    assert subtitle.endswith("2 seed(s) per configuration")
    _close(outcome)
    outcome = figs.throughput_accuracy_figure(_configs(2), [])
    assert "device" not in outcome.figure.get_suptitle()
    _close(outcome)


def test_points_of_one_size_say_the_runs_had_no_throughput() -> None:
    configs = _configs(2).drop(columns=["train_images_per_s_mean"])
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    assert "no train_images_per_s in the runs, so all points have one size" in (
        outcome.figure.get_suptitle()
    )
    _close(outcome)
    outcome = figs.accuracy_consistency_figure(_configs(2), "consistency_circular", [])
    assert "one size" not in outcome.figure.get_suptitle()
    _close(outcome)


def test_a_scatter_of_one_marker_says_what_the_blurred_points_share() -> None:
    configs = _configs(2).assign(padding="reflect")
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    assert "blurred points: padding fixed at reflect; placement fixed at paper" in (
        outcome.figure.get_suptitle()
    )
    _close(outcome)


def test_scatters_the_table_cannot_support_are_skipped_with_the_reason() -> None:
    outcome = figs.accuracy_consistency_figure(_configs(2).drop(columns="accuracy_mean"),
                                               "consistency_circular", [])  # fmt: skip
    assert outcome.figure is None and outcome.note == "skipped: the table has no ['accuracy_mean']"
    outcome = figs.accuracy_consistency_figure(_configs(0), "consistency_circular", [])
    assert outcome.figure is None and outcome.note == "skipped: the table has no rows"
    outcome = figs.throughput_accuracy_figure(_configs(2).drop(columns="train_images_per_s_mean"),
                                              [])  # fmt: skip
    assert outcome.figure is None
    assert outcome.note == "skipped: the runs carry no train_images_per_s"
    assert figs.throughput_accuracy_figure(_configs(0), []).figure is None


# --- the figures of runs ---------------------------------------------------------------------


def _runs() -> pd.DataFrame:
    """Two seeds each of no blur, Bin-3 and Bin-5 under placement `paper`: each metric's seed 1
    is seed 0's plus 2, so each point's mean is seed 0's plus 1."""
    return pd.DataFrame({
        "placement": ["none", "none", "paper", "paper", "paper", "paper"],
        "filter_size": [3, 3, 3, 3, 5, 5], "seed": [0, 1] * 3, "augment": False,
        "accuracy": [80.0, 82.0, 84.0, 86.0, 88.0, 90.0],
        "accuracy_vs_shift_circular": [[80, 78, 76], [82, 80, 78], [84, 83, 82], [86, 85, 84],
                                       [88, 88, 88], [90, 90, 90]],
        "accuracy_during_training": [[50, 60, 70, 80], [52, 62, 72, 82], [54, 64, 74, 84],
                                     [56, 66, 76, 86], [58, 68, 78, 88], [60, 70, 80, 90]],
        "adversarial_circular": [40.0, 42.0, 50.0, 52.0, 60.0, 62.0],
        "filter_tv": [{"conv1": 1.0, "conv2": 2.0}, {"conv1": 1.2, "conv2": 2.2},
                      {"conv1": 0.5, "conv2": 0.7}, {"conv1": 0.7, "conv2": 0.9},
                      {"conv1": 0.3, "conv2": 0.4}, {"conv1": 0.1, "conv2": 0.2}],
    })  # fmt: skip


def _curves(ax: plt.Axes) -> dict[str, tuple[list[float], list[float]]]:
    """The (x, y) of each line drawn in a panel, keyed by the filter its colour stands for
    (`_runs`' filters: no blur, Bin-3, Bin-5)."""
    palette = figs.blur_palette([NO_BLUR, "Bin-3", "Bin-5"])
    names = {tuple(colour): label for label, colour in palette.items()}
    return {names[tuple(line.get_color())]: (list(line.get_xdata()), list(line.get_ydata()))
            for line in ax.lines if len(line.get_xdata())}  # fmt: skip


def test_the_shift_curves_are_each_filters_mean_over_seeds_at_each_offset() -> None:
    outcome = figs.shift_curve_figure(_runs())
    (ax,) = outcome.figure.axes
    assert ax.get_title() == "circular shift · placement paper"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Diagonal shift d (pixels)", "Test accuracy (%)")
    assert _curves(ax) == {NO_BLUR: ([0, 1, 2], [81, 79, 77]), "Bin-3": ([0, 1, 2], [85, 84, 83]),
                           "Bin-5": ([0, 1, 2], [89, 89, 89])}  # fmt: skip
    bands = [c for c in ax.collections if c.get_paths()]
    assert len(bands) == 3  # each filter's 95 % band over its two seeds
    (legend,) = outcome.figure.legends
    assert legend.get_title().get_text() == "filter"
    assert [t.get_text() for t in legend.get_texts()] == [NO_BLUR, "Bin-3", "Bin-5"]
    assert outcome.figure.get_suptitle() == (
        "Accuracy vs diagonal shift (mean over seeds; bands: 95 % t-interval where ≥ 2 seeds)\n"
        "flatter = less sensitive to where the image sits"
    )
    _close(outcome)


def test_the_shift_curves_have_a_panel_per_protocol_and_placement() -> None:
    runs = _runs()
    runs["accuracy_vs_shift_crop"] = [[v - d for d in range(3)] for v in runs["accuracy"]]
    runs.loc[4:, "placement"] = "blur_before_max"
    outcome = figs.shift_curve_figure(runs.drop(columns="seed"))
    titles = sorted(ax.get_title() for ax in outcome.figure.axes)
    assert titles == sorted(f"{kind} shift · placement {placement}" for kind in ("circular", "crop")
                            for placement in ("blur_before_max", "paper"))  # fmt: skip
    (crop,) = [ax for ax in outcome.figure.axes if ax.get_title() == "crop shift · placement paper"]
    assert _curves(crop) == {NO_BLUR: ([0, 1, 2], [81, 80, 79]),
                             "Bin-3": ([0, 1, 2], [85, 84, 83])}  # fmt: skip
    assert "mean over runs" in outcome.figure.get_suptitle()
    _close(outcome)


def test_the_training_curves_are_at_each_quarter_of_the_budget() -> None:
    outcome = figs.training_curve_figure(_runs())
    (ax,) = outcome.figure.axes
    assert ax.get_title() == "placement paper"
    assert ax.get_xlabel() == "Share of the training budget spent (%)"
    quarters = [25.0, 50.0, 75.0, 100.0]
    assert _curves(ax) == {NO_BLUR: (quarters, [51, 61, 71, 81]),
                           "Bin-3": (quarters, [55, 65, 75, 85]),
                           "Bin-5": (quarters, [59, 69, 79, 89])}  # fmt: skip
    assert outcome.figure.get_suptitle() == (
        "Test accuracy during training (mean over seeds; bands: 95 % t-interval where ≥ 2 "
        "seeds)\nstill rising at 100 % = the budget cut the runs short; other varied parameters "
        "pooled"
    )  # a table that records no images per run ends there, not on a dangling separator
    _close(outcome)


def test_curve_figures_skip_runs_without_a_curve_and_say_when_none_has_one() -> None:
    runs = _runs()
    runs["accuracy_vs_shift_circular"] = runs["accuracy_vs_shift_circular"].astype(object)
    runs.loc[0, "accuracy_vs_shift_circular"] = None  # a run at chance: its curve masked
    outcome = figs.shift_curve_figure(runs)
    assert _curves(outcome.figure.axes[0])[NO_BLUR] == ([0, 1, 2], [82, 80, 78])
    _close(outcome)
    empty = runs.assign(accuracy_vs_shift_circular=None, accuracy_during_training=None)
    outcome = figs.shift_curve_figure(empty)
    assert outcome.figure is None
    assert outcome.note == "skipped: the accuracy_vs_shift lists are empty"
    outcome = figs.training_curve_figure(empty)
    assert outcome.figure is None
    assert outcome.note == "skipped: the accuracy_during_training lists are empty"
    outcome = figs.shift_curve_figure(runs.drop(columns="accuracy_vs_shift_circular"))
    assert outcome.note == "skipped: the runs carry no accuracy_vs_shift_* lists"
    assert figs.shift_curve_figure(runs.iloc[:0]).figure is None
    assert figs.training_curve_figure(runs.iloc[:0]).figure is None


def test_the_filter_tv_heatmap_holds_each_variants_mean_per_layer() -> None:
    outcome = figs.filter_tv_figure(_runs())
    ax = outcome.figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [NO_BLUR, "Bin-3", "Bin-5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "conv2"]
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(3, 2),
                               [[1.1, 2.1], [0.6, 0.8], [0.2, 0.3]])  # fmt: skip
    assert [t.get_text() for t in ax.texts] == ["1.100", "2.100", "0.600", "0.800", "0.200",
                                                "0.300"]  # fmt: skip
    assert ax.get_xlabel() == "Conv layer (input → output order)"
    assert outcome.figure.get_suptitle() == (
        "Smoothness of the learned conv filters per layer (mean over seeds)"
    )
    _close(outcome)


def test_a_filter_tv_heatmap_of_more_than_two_hundred_cells_is_not_annotated() -> None:
    runs = _runs().iloc[:4]  # two variants
    for layers, annotated in ((100, 200), (101, 0)):
        tvs = dict.fromkeys([f"conv{i}" for i in range(layers)], 0.5)
        outcome = figs.filter_tv_figure(runs.assign(filter_tv=[tvs] * 4))
        assert len(outcome.figure.axes[0].texts) == annotated, layers
        _close(outcome)
    _close(outcome)


def test_a_filter_tv_figure_needs_the_runs_dicts() -> None:
    outcome = figs.filter_tv_figure(_runs().drop(columns="filter_tv"))
    assert outcome.figure is None and outcome.note == "skipped: the runs carry no filter_tv"
    outcome = figs.filter_tv_figure(_runs().assign(filter_tv=None))
    assert outcome.figure is None and outcome.note == "skipped: the filter_tv dicts are empty"
    assert figs.filter_tv_figure(_runs().iloc[:0]).figure is None


def test_the_adversarial_bars_are_each_filters_mean_and_interval_over_seeds() -> None:
    outcome = figs.adversarial_figure(_runs())
    (ax,) = outcome.figure.axes
    assert ax.get_title() == "circular shift · placement paper"
    assert [t.get_text() for t in ax.get_xticklabels()] == [NO_BLUR, "Bin-3", "Bin-5"]
    heights = [p.get_height() for p in ax.patches if p.get_width() > 0]
    assert heights == pytest.approx([41.0, 51.0, 61.0])
    intervals = sorted(value for line in ax.lines for value in line.get_ydata())
    half = T1 * 2**0.5 / 2**0.5  # sd of (40, 42) is √2, over √2 seeds
    assert intervals == pytest.approx([41 - half, 51 - half, 61 - half, 41 + half, 51 + half,
                                       61 + half])  # fmt: skip
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Filter", "Shift-adversarial accuracy (%)")
    assert [t.get_text() for t in outcome.figure.legends[0].get_texts()] == ["not augmented"]
    assert outcome.figure.get_suptitle().split("\n")[1] == (
        "correct at every offset; the study did not vary augmentation (augment = False)"
    )
    _close(outcome)


def test_the_adversarial_bars_tell_augmented_training_apart_where_the_study_varied_it() -> None:
    runs = pd.concat([_runs(), _runs().assign(augment=True, adversarial_circular=lambda t:
                                              t["adversarial_circular"] + 10)])  # fmt: skip
    outcome = figs.adversarial_figure(runs)
    legend = outcome.figure.legends[0]
    assert legend.get_title().get_text() == "training"
    assert [t.get_text() for t in legend.get_texts()] == ["augmented", "not augmented"]
    heights = [p.get_height() for p in outcome.figure.axes[0].patches if p.get_width() > 0]
    assert heights == pytest.approx([51.0, 61.0, 71.0, 41.0, 51.0, 61.0])
    assert "did not vary augmentation" not in outcome.figure.get_suptitle()
    _close(outcome)
    outcome = figs.adversarial_figure(_runs().drop(columns="augment"))
    assert [t.get_text() for t in outcome.figure.legends[0].get_texts()] == ["unknown"]
    assert "the study did not vary augmentation (augment = unknown)" in (
        outcome.figure.get_suptitle()
    )
    _close(outcome)
    outcome = figs.adversarial_figure(_runs().drop(columns="adversarial_circular"))
    assert outcome.figure is None
    assert outcome.note == "skipped: the runs carry no adversarial_* metric"


def _sized_runs(placements: list[str]) -> pd.DataFrame:
    """Two seeds of each placement x padding (zeros, reflect) x filter size (2, 3), accuracy
    80 + size + seed, and two of no blur (accuracy 70 and 72)."""
    rows = [{"placement": placement, "padding": padding, "filter_size": size, "seed": seed,
             "accuracy": 80.0 + size + seed, "consistency_circular": 70.0 + size}
            for placement in placements for padding in ("zeros", "reflect")
            for size in (2, 3) for seed in (0, 1)]  # fmt: skip
    baseline = [{"placement": "none", "padding": "zeros", "filter_size": 3, "seed": seed,
                 "accuracy": 70.0 + 2 * seed, "consistency_circular": 60.0}
                for seed in (0, 1)]  # fmt: skip
    return pd.DataFrame(rows + baseline)


def test_the_filter_size_lines_are_each_placements_mean_over_seeds_beside_the_baseline() -> None:
    outcome = figs.filter_size_figure(_sized_runs(["paper"]), "consistency_circular")
    accuracy, consistency = outcome.figure.axes
    assert accuracy.get_xlabel() == "Filter size k (taps per axis)"
    assert accuracy.get_ylabel() == "Clean test accuracy (%)"
    assert consistency.get_ylabel() == "Shift consistency, circular shifts (%)"
    drawn = [line for line in accuracy.lines if line.get_label() == "_child0"]
    assert [list(drawn[0].get_xdata()), list(drawn[0].get_ydata())] == [[2, 3], [82.5, 83.5]]
    (baseline,) = [line for line in accuracy.lines if line.get_label() == NO_BLUR]
    assert list(baseline.get_ydata()) == [71.0, 71.0] and baseline.get_linestyle() == ":"
    (band,) = [p for p in accuracy.patches if p.get_label() == f"{NO_BLUR}: 95 % t-interval"]
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((71 - T1, 71 + T1))
    assert consistency.get_legend() is not None and accuracy.get_legend() is None
    title = outcome.figure.get_suptitle()
    assert title.startswith("Accuracy and shift consistency vs filter size (mean over seeds")
    assert "padding fixed" not in title and "placement fixed at paper" in title
    _close(outcome)


def test_paddings_get_dashes_up_to_six_lines_and_are_pooled_beyond() -> None:
    """Three placements by two paddings are six lines, each padding its own dashes; four are
    eight, and the paddings are pooled, the subtitle says so."""
    for placements, styled in ((["paper", "pool", "stem"], True),
                               (["paper", "pool", "stem", "blur_before_max"], False)):  # fmt: skip
        outcome = figs.filter_size_figure(_sized_runs(placements), "consistency_circular")
        legend = [t.get_text() for t in outcome.figure.axes[-1].get_legend().get_texts()]
        assert ("padding" in legend) == styled, placements
        dashed = {line.get_linestyle() for line in outcome.figure.axes[0].lines
                  if len(line.get_xdata()) == 2 and line.get_label() != NO_BLUR}  # fmt: skip
        assert dashed - {"None"} == ({"-", "--"} if styled else {"-"}), placements
        assert ("paddings pooled" in outcome.figure.get_suptitle()) == (not styled)
        _close(outcome)


def test_a_filter_size_figure_of_one_run_per_point_says_it_has_no_interval() -> None:
    runs = _sized_runs(["paper"])
    outcome = figs.filter_size_figure(runs[runs["seed"] == 0], "consistency_circular")
    title = outcome.figure.get_suptitle()
    assert "one seed per point, so no interval" in title
    assert "padding" not in title  # the paddings' lines are drawn apart, so nothing is pooled
    assert outcome.note == (
        "The black dotted line is the mean over seeds of the runs without blur (placement none, "
        "or sites 0)."
    )  # one baseline run: a line, no band
    _close(outcome)
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    assert "no interval" not in outcome.figure.get_suptitle()
    assert "one filter size" not in outcome.figure.get_suptitle()
    _close(outcome)


def test_a_filter_size_figure_needs_sizes_and_a_metric() -> None:
    runs = _sized_runs(["paper"])
    for table in (runs.drop(columns="filter_size"), runs.drop(columns=["accuracy",
                  "consistency_circular"]), runs.iloc[:0]):  # fmt: skip
        outcome = figs.filter_size_figure(table, "consistency_circular")
        assert outcome.figure is None
        assert outcome.note == "skipped: the runs carry no filter_size or metrics"
    outcome = figs.filter_size_figure(runs.drop(columns="accuracy"), "consistency_circular")
    assert [ax.get_ylabel() for ax in outcome.figure.axes] == [
        "Shift consistency, circular shifts (%)"
    ]
    _close(outcome)


def test_grids_get_a_line_of_their_own_where_the_study_varies_them() -> None:
    runs = _sized_runs(["paper"]).assign(subsample="fixed")
    runs.loc[runs["padding"] == "reflect", "subsample"] = "aps"
    lines = figs._line_per_grid(runs[runs["placement"] != "none"])
    assert sorted(lines["placement"].unique()) == ["paper", "paper + APS"]
    same = runs.assign(subsample="aps")
    assert figs._line_per_grid(same).equals(same)
    assert figs._line_per_grid(runs.drop(columns="subsample")).equals(
        runs.drop(columns="subsample")
    )


def _lines(ax: plt.Axes, legend: matplotlib.legend.Legend | None = None, by: str = "color"
           ) -> dict[str, tuple[list[float], list[float]]]:
    """The (x, y) of each line seaborn drew in a panel, keyed by the legend entry whose colour
    (or marker) it has; `legend` is the figure's one legend where the panel has none."""
    legend = legend or ax.get_legend()
    get = {"color": lambda line: tuple(matplotlib.colors.to_rgba(line.get_color())),
           "marker": lambda line: line.get_marker()}[by]  # fmt: skip
    names = {get(handle): text.get_text()
             for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True)
             if isinstance(handle, matplotlib.lines.Line2D) and text.get_text() != NO_BLUR}
    return {names[get(line)]: ([float(x) for x in line.get_xdata()],
                               [float(y) for y in line.get_ydata()])
            for line in ax.lines if line.get_label().startswith("_child")}  # fmt: skip


def _bars(ax: plt.Axes) -> list[tuple[float, float, float]]:
    """Each interval bar of a panel as (x, low, high), sorted."""
    return sorted((float(s[0][0]), float(min(s[:, 1])), float(max(s[:, 1])))
                  for s in _bar_segments(ax))  # fmt: skip


def test_the_filter_size_figure_has_a_row_per_network_each_beside_its_own_baseline() -> None:
    """Two networks are never pooled in a panel: a row each, titled by the network, its line
    and its no-blur band from its own runs; one legend, beside the top right panel."""
    vgg = _sized_runs(["paper"]).assign(model="vgg")
    resnet = vgg.assign(model="resnet", accuracy=vgg["accuracy"] + 10)
    outcome = figs.filter_size_figure(pd.concat([vgg, resnet], ignore_index=True),
                                      "consistency_circular")  # fmt: skip
    axes = outcome.figure.axes
    assert [(ax.get_title(), ax.get_ylabel()) for ax in axes] == [
        ("model resnet", "Clean test accuracy (%)"),
        ("model resnet", "Shift consistency, circular shifts (%)"),
        ("model vgg", "Clean test accuracy (%)"),
        ("model vgg", "Shift consistency, circular shifts (%)"),
    ]
    legend = axes[1].get_legend()
    assert [ax.get_legend() is not None for ax in axes] == [False, True, False, False]
    assert legend._loc == 2 and not legend.get_frame_on()
    assert _lines(axes[0], legend, "marker") == {"zeros": ([2, 3], [92.5, 93.5]),
                                                 "reflect": ([2, 3], [92.5, 93.5])}  # fmt: skip
    assert _lines(axes[2], legend, "marker")["zeros"] == ([2, 3], [82.5, 83.5])
    for ax, mean in ((axes[0], 81.0), (axes[2], 71.0)):  # no blur: 70 and 72, or 80 and 82
        (baseline,) = [line for line in ax.lines if line.get_label() == NO_BLUR]
        assert list(baseline.get_ydata()) == [mean, mean]
        (band,) = [p for p in ax.patches if p.get_label() == f"{NO_BLUR}: 95 % t-interval"]
        assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx(
            (mean - T1, mean + T1))
    assert outcome.note.endswith("(placement none, or sites 0), the grey band its 95 % "
                                 "t-interval.")  # fmt: skip
    _close(outcome)


def test_each_placement_gets_a_line_whose_points_and_bars_are_over_seeds() -> None:
    """Eight placement x padding lines are too many: the paddings are pooled, within each seed
    first, so a point is the mean of its seeds' means and its bar their 95 % t-interval."""
    runs = _sized_runs(["paper", "pool", "stem", "blur_before_max"])
    runs.loc[runs["padding"] == "reflect", "accuracy"] += 4  # seed 0 of paper, size 2: 82, 86
    runs.loc[runs["placement"] == "pool", "accuracy"] += 10
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    accuracy, consistency = outcome.figure.axes
    legend = consistency.get_legend()
    assert legend.get_title().get_text() == "placement"
    assert [t.get_text() for t in legend.get_texts()] == [
        "paper", "pool", "stem", "blur_before_max", NO_BLUR
    ]  # fmt: skip  (the no-blur runs' consistency ties: no band)
    lines = _lines(accuracy, legend)
    assert lines["paper"] == ([2, 3], [84.5, 85.5]) and lines["pool"] == ([2, 3], [94.5, 95.5])
    half = T1 * 0.5  # seed means 84 and 85: sd 1/√2, over √2 seeds
    bars = _bars(accuracy)
    assert len(bars) == 8
    assert any(bar == pytest.approx((2.0, 84.5 - half, 84.5 + half)) for bar in bars)
    assert any(bar == pytest.approx((3.0, 95.5 - half, 95.5 + half)) for bar in bars)
    assert "paddings pooled" in outcome.figure.get_suptitle()
    _close(outcome)


def test_a_filter_size_no_run_of_which_learned_is_a_gap_named_in_the_subtitle() -> None:
    """Consistency masked for every blurred run of size 3: its line stops at size 2, the one
    size it has, read off a single whole-number tick; the subtitle says what is left out. Masked
    everywhere, the metric gets no panel."""
    runs = _sized_runs(["paper"])
    runs = runs[runs["padding"] == "zeros"].reset_index(drop=True)
    runs.loc[(runs["placement"] == "paper") & (runs["filter_size"] == 3),
             "consistency_circular"] = np.nan  # fmt: skip
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    accuracy, consistency = outcome.figure.axes
    legend = consistency.get_legend()
    assert _lines(accuracy, legend) == {"paper": ([2, 3], [82.5, 83.5])}
    assert _lines(consistency, legend) == {"paper": ([2], [72.0])}
    assert list(consistency.get_xticks()) == [2] and consistency.get_xlim() == (1, 3)
    assert list(accuracy.get_xticks())[1:-1] == [2, 3]
    assert outcome.figure.get_suptitle().endswith(
        "placement fixed at paper; padding fixed at zeros; consistency_circular: filter size 3 "
        "left out (no run that learned)"
    )
    _close(outcome)
    outcome = figs.filter_size_figure(runs.assign(consistency_circular=np.nan),
                                      "consistency_circular")  # fmt: skip
    assert [ax.get_ylabel() for ax in outcome.figure.axes] == ["Clean test accuracy (%)"]
    assert outcome.figure.get_suptitle().endswith(
        "consistency_circular: every filter size left out (no run that learned)"
    )
    _close(outcome)


def test_one_filter_size_reads_off_one_tick_and_runs_without_seeds_are_the_samples() -> None:
    """One size with blur: a single tick at it, the axis a unit either side, and the subtitle
    says so. A table that records no seeds (an old study, rows in any order) averages runs."""
    runs = _sized_runs(["paper"])
    runs = runs[(runs["filter_size"] == 3) & (runs["padding"] == "zeros")
                | (runs["placement"] == "none")]  # fmt: skip
    runs = runs.drop(columns=["seed", "consistency_circular"]).iloc[::-1]
    runs["config_key"], runs["n_test"] = runs["placement"], 500
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    (ax,) = outcome.figure.axes
    assert list(ax.get_xticks()) == [3] and ax.get_xlim() == (2, 4)
    assert _lines(ax) == {"paper": ([3], [83.5])}
    (bar,) = _bars(ax)  # runs 83 and 84
    assert bar == pytest.approx((3.0, 83.5 - T1 * 0.5, 83.5 + T1 * 0.5))
    title = outcome.figure.get_suptitle()
    assert title == (
        "Accuracy and shift consistency vs filter size (mean over runs, bars: 95 % t-interval)\n"
        "placement fixed at paper; padding fixed at zeros; one filter size with blur; 500 test "
        "images per run"
    )
    assert outcome.note.startswith("The black dotted line is the mean over runs of the runs")
    _close(outcome)


def test_a_study_without_blur_draws_no_filter_size_figure() -> None:
    """Runs that all convert nothing (placement none, or sites 0) have no filter size to plot
    against: no figure with an empty size axis that claims one filter size with blur, but the
    reason instead."""
    runs = _sized_runs(["paper"]).assign(sites=None)
    runs.loc[runs["padding"] == "reflect", "sites"] = 0
    for table in (runs[runs["placement"] == "none"], runs[runs["sites"] == 0]):
        outcome = figs.filter_size_figure(table, "consistency_circular")
        assert outcome.figure is None
        assert outcome.note == "skipped: no run has blur (placement none, or sites 0, in each)"


def test_only_the_filters_that_read_no_padding_are_repeated_on_every_padding() -> None:
    """A one-tap filter on the fixed grid reads no padding, so its runs join the line of each
    padding another run read (zeros too: the APS one-tap run reads it); a table where every
    run reads its padding, or none does, or without paddings, is drawn as it is."""
    table = pd.DataFrame({"placement": "paper", "filter_size": [1, 3, 3, 1],
                          "padding": ["zeros", "reflect", "circular", "zeros"],
                          "subsample": ["fixed", "fixed", "fixed", "aps"],
                          "accuracy": [1.0, 2.0, 3.0, 4.0]})  # fmt: skip
    spread = figs._on_every_padding(table)
    assert sorted(zip(spread["padding"], spread["accuracy"], strict=True)) == [
        ("circular", 1.0), ("circular", 3.0), ("reflect", 1.0), ("reflect", 2.0),
        ("zeros", 1.0), ("zeros", 4.0),  # one tap on the APS grid reads its padding
    ]  # fmt: skip
    for same in (table.drop(columns="padding"), table.iloc[[0]], table.iloc[[1, 2]]):
        assert figs._on_every_padding(same) is same


def test_each_grid_gets_a_line_of_its_own_in_the_filter_size_figure() -> None:
    runs = _sized_runs(["paper"])
    runs = runs[(runs["padding"] == "zeros") & (runs["placement"] == "paper")]
    runs = pd.concat([runs.assign(subsample="fixed"),
                      runs.assign(subsample="aps", accuracy=runs["accuracy"] - 10)],
                     ignore_index=True)  # fmt: skip
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    legend = outcome.figure.axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["paper", "paper + APS"]
    assert _lines(outcome.figure.axes[0], legend) == {"paper": ([2, 3], [82.5, 83.5]),
                                                      "paper + APS": ([2, 3], [72.5, 73.5])}
    _close(outcome)


# --- parameter importance and files ----------------------------------------------------------


def _importance_study(
    n: int,
    params: tuple[str, ...] = ("filter_size", "padding"),
    stuck: int = 0,
    flat: tuple[str, ...] = ("consistency",),
) -> optuna.Study:
    """`n` finished trials (and `stuck` more with a run that did not learn) over `params`;
    accuracy rises with the filter size, consistency with the padding, each the same in every
    trial where `flat` names it."""
    study = optuna.create_study(directions=["maximize", "maximize"])
    choices = {"filter_size": [1, 3, 5, 7], "padding": ["zeros", "reflect"], "lr": [0.1, 0.2]}
    distributions = {p: CategoricalDistribution(choices[p]) for p in params}
    for i in range(n + stuck):
        trial_params = {p: choices[p][i % len(choices[p])] for p in params}
        accuracy = 80.0 + trial_params.get("filter_size", 0) + 0.1 * i
        consistency = 90.0 + (trial_params.get("padding") == "zeros")
        values = [80.0 if "accuracy" in flat else accuracy,
                  90.0 if "consistency" in flat else consistency]  # fmt: skip
        seeds = [{"seed": 0, "learned": i < n}]
        study.add_trial(optuna.trial.create_trial(params=trial_params, distributions=distributions,
                                                  values=values,
                                                  user_attrs={"seeds": seeds}))  # fmt: skip
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    return study


OBJECTIVES = [Objective(metric="accuracy", direction="maximize"),
              Objective(metric="consistency_circular", direction="maximize")]  # fmt: skip


def test_importance_needs_ten_finished_trials_that_learned_and_two_varied_parameters() -> None:
    outcome = figs.importance_figure(_importance_study(9, stuck=3), OBJECTIVES)
    assert outcome.figure is None
    assert outcome.note == (
        "skipped: parameter importance needs at least 2 parameters varied across 10 or more "
        "finished trials whose runs all learned; this study has 9 finished trial(s) whose runs "
        "all learned"
    )
    outcome = figs.importance_figure(_importance_study(12, ("filter_size",)), OBJECTIVES)
    assert outcome.figure is None
    assert outcome.note.endswith("this study varies only filter_size across those trials")
    outcome = figs.importance_figure(_importance_study(3, ()), OBJECTIVES)
    assert outcome.note.endswith(
        "this study varies no parameter across those trials and has 3 finished trial(s) whose "
        "runs all learned"
    )


def test_importance_ranks_the_varied_parameters_per_objective_that_varies() -> None:
    outcome = figs.importance_figure(_importance_study(10, stuck=2), OBJECTIVES)
    ax = outcome.figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["filter_size", "padding"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["accuracy"]
    widths = [p.get_width() for p in ax.patches if p.get_height() > 0]
    assert len(widths) == 2 and sum(widths) == pytest.approx(1.0)
    assert widths[0] > widths[1]  # the filter size sets the accuracy
    assert ax.get_xlabel() == "Importance (PED-ANOVA, normalised to sum 1 per objective)"
    assert ax.get_ylabel() == "Varied parameter"
    assert outcome.figure.get_suptitle() == (
        "Which parameters matter for each objective (10 trials)\n2 trial(s) with a run that did "
        "not learn left out; consistency_circular left out: the same in every trial"
    )
    _close(outcome)
    outcome = figs.importance_figure(_importance_study(10, flat=()), OBJECTIVES)
    assert outcome.figure.get_suptitle() == "Which parameters matter for each objective (10 trials)"
    legend = [t.get_text() for t in outcome.figure.axes[0].get_legend().get_texts()]
    assert legend == ["accuracy", "consistency_circular"]
    _close(outcome)
    flat = _importance_study(10, flat=("accuracy", "consistency"))
    outcome = figs.importance_figure(flat, OBJECTIVES)
    assert outcome.figure is None
    assert outcome.note == "skipped: every objective is the same in every trial"


def _importances(ax: plt.Axes) -> dict[str, dict[str, float]]:
    """Each bar's width, by its objective (legend entry, one bar container each) and its
    parameter (tick)."""
    ticks = {round(tick): label.get_text()
             for tick, label in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)}
    objectives = [t.get_text() for t in ax.get_legend().get_texts()]
    return {objective: {ticks[round(bar.get_y() + bar.get_height() / 2)]: bar.get_width()
                        for bar in container}
            for objective, container in zip(objectives, ax.containers, strict=True)}  # fmt: skip


def test_importance_ranks_each_objective_in_its_own_direction() -> None:
    """The same values, minimised as memory and maximised as accuracy, rank the parameters as
    Optuna does for a study of that one objective in that direction: the least memory comes
    with b = 1 whatever a, the most accuracy needs a = y as much as b = 5."""
    def value(a: str, b: int, i: int) -> float:
        return (0.0 if b == 1 else (10.0 if a == "x" else 20.0) + b) + 0.01 * i

    design = [(a, b) for _ in range(3) for a in ("x", "y") for b in (1, 2, 3, 4, 5)]
    distributions = {"a": CategoricalDistribution(["x", "y"]),
                     "b": CategoricalDistribution([1, 2, 3, 4, 5])}  # fmt: skip
    study = optuna.create_study(directions=["maximize", "maximize"])
    alone = {d: optuna.create_study(direction=d) for d in ("minimize", "maximize")}
    for i, (a, b) in enumerate(design):
        params = {"a": a, "b": b}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  values=[value(a, b, i)] * 2))  # fmt: skip
        for single in alone.values():
            single.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                       value=value(a, b, i)))  # fmt: skip
    objectives = [Objective(metric="peak_memory_mb", direction="minimize"),
                  Objective(metric="accuracy", direction="maximize")]  # fmt: skip
    outcome = figs.importance_figure(study, objectives)
    drawn = _importances(outcome.figure.axes[0])
    for metric, direction in (("peak_memory_mb", "minimize"), ("accuracy", "maximize")):
        expected = optuna.importance.get_param_importances(alone[direction])
        assert drawn[metric] == pytest.approx(expected), metric
    assert drawn["peak_memory_mb"]["b"] > 0.8 and drawn["accuracy"]["b"] < 0.7
    assert outcome.figure.get_suptitle() == "Which parameters matter for each objective (30 trials)"
    assert tuple(outcome.figure.get_size_inches()) == pytest.approx((8, 0.25 * 2 * 2 + 1.8))
    _close(outcome)


def test_importance_counts_the_finished_trials_whose_every_run_learned() -> None:
    """A trial is left out only where a run recorded `learned: False`, whatever its values:
    trials without seed records, or whose records predate `learned`, count; pruned trials do
    not. A parameter
    varied only among the trials left out, or the same in every trial counted, gets no bar
    and does not count as varied."""
    study = optuna.create_study(directions=["maximize", "maximize"])
    distributions = {"filter_size": CategoricalDistribution([1, 3, 5, 7]),
                     "padding": CategoricalDistribution(["zeros", "reflect"]),
                     "lr": CategoricalDistribution([0.1, 0.2])}  # fmt: skip
    seeds = [None, [{"seed": 0}], [{"seed": 0, "learned": True}, {"seed": 1, "learned": True}]]
    for i in range(10):
        params = {"filter_size": [1, 3, 5, 7][i % 4], "padding": ["zeros", "reflect"][i // 5],
                  "lr": 0.1}  # fmt: skip
        attrs = {} if seeds[i % 3] is None else {"seeds": seeds[i % 3]}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, user_attrs=attrs,
            values=[80.0 + params["filter_size"] + i / 100, 90.0 + i % 2]))  # fmt: skip
    stuck = [{"seed": 0, "learned": True}, {"seed": 1, "learned": False}]
    for lr, state in ((0.2, optuna.trial.TrialState.COMPLETE),
                      (0.2, optuna.trial.TrialState.PRUNED)):  # fmt: skip
        params = {"filter_size": 3, "padding": "zeros", "lr": lr}
        done = state == optuna.trial.TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(
            state=state, params=params, distributions=distributions,
            values=[200.0, 200.0] if done else None, user_attrs={"seeds": stuck}))  # fmt: skip
    outcome = figs.importance_figure(study, OBJECTIVES)
    drawn = _importances(outcome.figure.axes[0])
    assert sorted(drawn) == ["accuracy", "consistency_circular"]
    assert sorted(drawn["accuracy"]) == ["filter_size", "padding"]  # lr: 0.1 in every one
    counted = optuna.create_study(direction="maximize")  # the left-out trial's 200 sways none
    counted.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                  value=t.values[0])
                        for t in study.trials[:10]])  # fmt: skip
    expected = optuna.importance.get_param_importances(counted, params=["filter_size", "padding"])
    assert drawn["accuracy"] == pytest.approx(expected)
    assert outcome.figure.get_suptitle() == (
        "Which parameters matter for each objective (10 trials)\n1 trial(s) with a run that did "
        "not learn left out"
    )
    _close(outcome)
    only_size = optuna.create_study(directions=["maximize", "maximize"])
    only_size.add_trials([t for t in study.trials if t.params.get("padding") == "zeros"])
    outcome = figs.importance_figure(only_size, OBJECTIVES)
    assert outcome.figure is None
    assert outcome.note.endswith("this study varies only filter_size across those trials and "
                                 "has 5 finished trial(s) whose runs all learned")  # fmt: skip


def test_a_figure_on_file_is_replaced_whole_at_130_dpi_with_what_lies_outside_its_axes(
    tmp_path: Path,
) -> None:
    """A figure written again replaces the files (nothing else is left in the folder, and
    collaborators may read them); the PNG is at 130 dpi, and the files take in a legend put
    beside the axes, which a plain 4-inch-wide figure would have cut off."""
    (tmp_path / "shape.png").write_bytes(b"stale")
    (tmp_path / "shape.svg").write_text("stale")
    figure = plt.figure(figsize=(4, 2))
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], label="a long legend entry beside the axes")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    paths = figs.save_figure(figs.FigureOutcome("shape", figure), tmp_path)
    assert paths == [tmp_path / "shape.png", tmp_path / "shape.svg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shape.png", "shape.svg"]
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in paths)
    with Image.open(paths[0]) as png:
        width, height = png.size
        assert png.info["dpi"] == pytest.approx((130, 130), abs=0.01)
    svg = re.search(r'<svg[^>]* width="([\d.]+)pt" height="([\d.]+)pt"', paths[1].read_text())
    svg_width, svg_height = (float(v) / 72 for v in svg.groups())  # inches
    assert width > 4 * 130 and svg_width > 4  # the legend is in
    assert (width, height) == pytest.approx((svg_width * 130, svg_height * 130), rel=0.02)


def test_a_figure_is_written_as_png_and_svg_and_closed(tmp_path: Path) -> None:
    figure = plt.figure()
    figure.add_subplot().plot([0, 1], [0, 1])
    folder = tmp_path / "figures" / "new"
    paths = figs.save_figure(figs.FigureOutcome("shape", figure), folder)
    assert paths == [folder / "shape.png", folder / "shape.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()
    assert not plt.fignum_exists(figure.number)
    assert figs.save_figure(figs.FigureOutcome("none", None, "skipped"), tmp_path / "x") == []
    assert not (tmp_path / "x").exists()


# --- what the figures leave out, pool and say ------------------------------------------------


def _points(ax: plt.Axes) -> list[tuple[float, float]]:
    """The scatter's points (the offsets of its one PathCollection), sorted."""
    offsets = [c.get_offsets() for c in ax.collections
               if isinstance(c, matplotlib.collections.PathCollection)]  # fmt: skip
    return sorted(map(tuple, np.vstack(offsets).tolist()))


def test_the_front_line_steps_through_the_configurations_that_trade_the_two() -> None:
    """Consistency 60, 61, 62 against accuracy 84, 82, 80: each is on the 2-D front, joined
    left to right by a red dashed staircase; one best on both axes draws no line and says so."""
    configs = _configs(3, intervals=False).assign(accuracy_mean=[84.0, 82.0, 80.0])
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    (line,) = [line for line in outcome.figure.axes[0].lines
               if line.get_label() == "front: accuracy × consistency"]  # fmt: skip
    assert list(line.get_xdata()) == [60.0, 61.0, 62.0]
    assert list(line.get_ydata()) == [84.0, 82.0, 80.0]
    assert (line.get_linestyle(), line.get_drawstyle()) == ("--", "steps-pre")
    assert "no front line" not in outcome.figure.get_suptitle()
    _close(outcome)
    outcome = figs.accuracy_consistency_figure(_configs(3), "consistency_circular", [])
    assert not [line for line in outcome.figure.axes[0].lines if len(line.get_xdata())]
    assert "one configuration is best on both axes: no front line to draw" in (
        outcome.figure.get_suptitle()
    )
    _close(outcome)


def test_configurations_with_a_run_that_did_not_learn_are_left_off_the_scatter() -> None:
    configs = _configs(3).assign(seeds_at_chance=[1, 0, 0])
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    assert _points(outcome.figure.axes[0]) == [(61.0, 82.0), (62.0, 84.0)]
    assert "1 configuration(s) not shown: a run did not learn" in outcome.figure.get_suptitle()
    _close(outcome)
    outcome = figs.accuracy_consistency_figure(configs.assign(seeds_at_chance=0),
                                               "consistency_circular", [])  # fmt: skip
    assert len(_points(outcome.figure.axes[0])) == 3
    assert "not shown" not in outcome.figure.get_suptitle()
    _close(outcome)
    outcome = figs.accuracy_consistency_figure(configs.assign(seeds_at_chance=[1, 2, 1]),
                                               "consistency_circular", [])  # fmt: skip
    assert outcome.figure is None
    assert outcome.note == "skipped: every configuration has a run that did not learn"


def test_the_size_legend_reads_whole_images_per_second() -> None:
    configs = _configs(3).assign(train_images_per_s_mean=[1000.4, 990.2, 980.6])
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    texts = [t.get_text() for t in outcome.figure.axes[0].get_legend().get_texts()]
    assert texts[texts.index("train images/s (size)") + 1:] == ["981", "990", "1000"]
    _close(outcome)


def test_an_interval_over_one_seed_collapses_to_its_mean() -> None:
    assert figs._interval_errorbar(np.array([3.0])) == (3.0, 3.0)
    assert figs._interval_errorbar(np.array([3.0, np.nan])) == (3.0, 3.0)
    assert figs._interval_errorbar(np.array([40.0, 42.0])) == pytest.approx((41 - T1, 41 + T1))


def test_a_seeds_runs_are_one_sample_and_a_table_without_seeds_is_left_as_it_is() -> None:
    """Two runs of seed 0 (80, 84) under one key are one row of mean 82; a missing key is a
    group of its own, not dropped."""
    table = pd.DataFrame({"k": ["a", "a", "a", None], "seed": [0, 0, 1, 0],
                          "accuracy": [80.0, 84.0, 90.0, 70.0]})  # fmt: skip
    per_seed = figs._per_seed(table, ["k"], ["accuracy"])
    assert sorted(map(tuple, per_seed[["seed", "accuracy"]].to_numpy().tolist())) == [
        (0, 70.0), (0, 82.0), (1, 90.0)
    ]
    no_seeds = table.drop(columns="seed")
    assert figs._per_seed(no_seeds, ["k"], ["accuracy"]) is no_seeds
    assert figs._unit(table) == "seed" and figs._unit(no_seeds) == "run"


def test_the_baseline_note_says_what_was_drawn_of_the_runs_without_blur() -> None:
    assert figs._baseline_note(set(), "seed") == ""
    line = ("The black dotted line is the mean over runs of the runs without blur (placement "
            "none, or sites 0)")  # fmt: skip
    assert figs._baseline_note({"line"}, "run") == line + "."
    assert figs._baseline_note({"line", "band"}, "run") == (
        line + ", the grey band its 95 % t-interval."
    )


def test_filter_sizes_without_a_run_that_learned_are_named_per_metric() -> None:
    runs = pd.DataFrame({"placement": ["paper", "paper", "paper", "none"],
                         "filter_size": [2, 3, 3, 3], "accuracy": [81.0, np.nan, np.nan, 70.0],
                         "consistency_circular": [np.nan, np.nan, np.nan, 60.0]})  # fmt: skip
    assert figs._sizes_without_values(runs, ["accuracy", "consistency_circular"]) == [
        "accuracy: filter size 3 left out (no run that learned)",
        "consistency_circular: every filter size left out (no run that learned)",
    ]
    assert figs._sizes_without_values(runs.assign(accuracy=1.0), ["accuracy"]) == []


def test_runs_without_blur_are_repeated_in_the_panel_of_every_placement_and_network() -> None:
    runs = pd.DataFrame({"placement": ["none", "pool", "paper", "none"],
                         "filter_size": [3, 3, 3, 3], "model": ["vgg", "vgg", "vgg", "resnet"],
                         "seed": [0, 0, 0, 0]})  # fmt: skip
    assert figs.split_suffix(runs).tolist() == [" · model vgg"] * 3 + [" · model resnet"]
    assert figs.split_suffix(runs.assign(model="vgg")).tolist() == [""] * 4
    panels = figs._with_baseline_per_placement(runs)
    assert list(zip(panels["panel"], panels["blur_label"], strict=True)) == [
        ("paper · model resnet", NO_BLUR), ("paper · model vgg", "Bin-3"),
        ("paper · model vgg", NO_BLUR), ("pool · model resnet", NO_BLUR),
        ("pool · model vgg", "Bin-3"), ("pool · model vgg", NO_BLUR),
    ]  # fmt: skip
    baseline = figs._with_baseline_per_placement(runs[runs["placement"] == "none"])
    assert baseline["panel"].tolist() == ["none · model resnet", "none · model vgg"]
    unplaced = figs._with_baseline_per_placement(runs.drop(columns="placement"))
    assert unplaced["panel"].tolist() == ["all runs · model vgg"] * 3 + ["all runs · model resnet"]
