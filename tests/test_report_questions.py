"""The research questions' answers, on small hand-made run tables whose numbers are worked out
by hand: the exact effect, interval and verdict each sentence gives.

Intervals use the published 97.5 % quantiles of Student's t: 4.302653 for 2 degrees of freedom
and 2.776445 for 4. Two groups of two runs each with values a, a + 2 have variance 2 each, so
the Welch standard error of their difference is sqrt(2/2 + 2/2) = sqrt(2) with 2 degrees of
freedom: half width 4.302653 * 1.414214 = 6.0849.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ablate.report_questions import (
    answer_questions,
    cost_answers,
    polyphase_answers,
    shift_drop,
)


def _runs(blurred: list, baseline: list, column: str, **extra: list) -> pd.DataFrame:
    """One row per run: the blurred runs (placement paper, filter size 3) with `blurred` in
    `column`, then the baseline runs (placement none) with `baseline`; `extra` adds columns."""
    n_blurred, n_baseline = len(blurred), len(baseline)
    return pd.DataFrame(
        {
            "placement": ["paper"] * n_blurred + ["none"] * n_baseline,
            "filter_size": [3] * n_blurred + [1] * n_baseline,
            column: list(blurred) + list(baseline),
            **extra,
        }
    )


def _answer(runs: pd.DataFrame, key: str) -> str:
    answers = {a.key: a for a in answer_questions(runs) + cost_answers(runs)}
    return answers[key].sentence


def test_shift_drop_subtracts_the_mean_over_the_shifted_offsets_only() -> None:
    """The drop is accuracy at offset 0 minus the mean over offsets 1..D, not over 0..D (which
    would shrink it by D/(D+1))."""
    assert shift_drop([80.0, 70.0, 74.0]) == pytest.approx(8.0)  # 80 - (70 + 74) / 2
    assert shift_drop([90.0, 84.0]) == pytest.approx(6.0)  # diagonal 1: two values
    assert shift_drop([90.0, 88.0, 86.0, 84.0]) == pytest.approx(4.0)  # 90 - 86


def test_a_curve_of_diagonal_one_answers_rq3_with_the_exact_drop() -> None:
    """Curves of two values (offset 0 and one diagonal offset) are answered: drops 1, 2, 3 with
    blur and 6, 7, 8 without, so -5.00 points, sd 1 each, 4 degrees of freedom:
    half width 2.776445 * sqrt(2/3) = 2.2670."""
    runs = _runs(
        [[80, 79], [82, 80], [84, 81]],
        [[80, 74], [82, 75], [84, 76]],
        "accuracy_vs_shift_circular",
    )
    assert _answer(runs, "RQ3") == (
        "Yes: the drop from accuracy at offset 0 to the mean over circular diagonal offsets 1..D "
        "(lower = flatter; below 0, the shifted images scored higher) is 2.00 points with blur "
        "vs 7.00 points without (difference -5.00 points, "
        "95 % CI [-7.27, -2.73] points; Welch t over runs, n = 3 blurred vs 3 no-blur runs)."
    )


def test_a_wide_interval_over_unpaired_seeds_asks_for_runs_on_shared_seeds() -> None:
    """Blurred runs of seeds 0, 1 and baseline runs of seeds 2, 3 do not pair: the Welch
    interval over two runs a group is wide, and more seeds alone would not pair them."""
    runs = _runs([60.0, 64.0], [58.0, 62.0], "adversarial_circular", seed=[0, 1, 2, 3])
    sentence = _answer(runs, "RQ4")
    assert sentence.startswith("Inconclusive") and "Welch t over runs" in sentence
    assert sentence.endswith(
        " With 2 runs in a group the interval is wide: more runs, on seeds both groups ran "
        "(so that they pair), would narrow it."
    )


def test_the_difference_among_runs_that_learned_leaves_the_stuck_runs_out() -> None:
    """Adversarial accuracy counts a run that did not learn (30 %), but the clause on the runs
    that learned compares 60, 62 with 50, 52 only: +10.00 [+3.92, +16.08], not the +17.00 of
    all runs (61 - 44); the stuck run widens all runs' interval to an inconclusive one, which
    the clause says."""
    runs = _runs(
        [60.0, 62.0],
        [50.0, 52.0, 30.0],
        "adversarial_circular",
        learned=[True, True, True, True, False],
    )
    sentence = _answer(runs, "RQ4")
    assert "is 61.00 % with blur vs 44.00 % without (difference +17.00 points" in sentence
    assert "n = 2 blurred vs 3 no-blur runs" in sentence
    assert sentence.endswith(
        " This counts 0 blurred and 1 no-blur runs that did not learn (accuracy not above "
        "chance); among the runs that learned the difference is +10.00 [+3.92, +16.08] points: "
        "Yes among those, so the runs that did not learn decide the verdict above."
    )


def test_a_verdict_made_by_runs_that_did_not_learn_says_so() -> None:
    """Six blurred runs marked as not learning (74, 75 %) pull clean accuracy down to "No, the
    opposite"; among the runs that learned (81 % vs 80.25 % on average) there is no telling:
    the sentence must not leave the headline as blur's effect on networks that train."""
    runs = _runs(
        [80.0, 81.0, 82.0] * 2 + [74.0, 75.0] * 3,
        [79.0, 80.0, 81.0] * 2 + [80.0, 81.0] * 3,
        "accuracy",
        learned=[True] * 6 + [False] * 6 + [True] * 12,
    )
    sentence = _answer(runs, "RQ5")
    assert sentence.startswith("No, the opposite: clean test accuracy is 77.75 % with blur")
    assert sentence.endswith(
        " among the runs that learned the difference is +0.75 [-0.22, +1.72] points: "
        "Inconclusive among those, so the runs that did not learn decide the verdict above."
    )


def test_rq4_split_by_training_names_each_answer_by_its_own_augmentation() -> None:
    """With augmentation blur gains 10 points (70, 72 vs 60, 62), without it 1 point (55, 57 vs
    54, 56): each difference sits beside the label of the runs it came from."""
    runs = _runs(
        [70.0, 72.0, 55.0, 57.0],
        [60.0, 62.0, 54.0, 56.0],
        "adversarial_circular",
        augment=[True, True, False, False] * 2,
    )
    assert _answer(runs, "RQ4").endswith(
        " Split by training: without augmentation +1.00 [-5.08, +7.08] points; "
        "with augmentation +10.00 [+3.92, +16.08] points."
    )


def test_the_crop_answers_give_the_circular_ones_breakdowns() -> None:
    """Crop shifts are answered as fully as circular ones: RQ4-crop split by training (+10
    points with augmentation: 70, 72 vs 60, 62; +1 without: 55, 57 vs 54, 56), RQ2-crop with
    the mean of each blurred filter size (3: 81 %, 5: 85 %)."""
    runs = _runs(
        [70.0, 72.0, 55.0, 57.0],
        [60.0, 62.0, 54.0, 56.0],
        "adversarial_circular",
        augment=[True, True, False, False] * 2,
        adversarial_crop=[70.0, 72.0, 55.0, 57.0, 60.0, 62.0, 54.0, 56.0],
        consistency_circular=[90.0] * 8,
        consistency_crop=[80.0, 82.0, 84.0, 86.0, 78.0, 80.0, 78.0, 80.0],
    )
    runs.loc[2:3, "filter_size"] = 5
    assert _answer(runs, "RQ4-crop").endswith(
        " Split by training: without augmentation +1.00 [-5.08, +7.08] points; "
        "with augmentation +10.00 [+3.92, +16.08] points."
    )
    assert _answer(runs, "RQ2-crop").endswith(" Mean by filter size: 3: 81.00 %, 5: 85.00 %.")


def test_a_cost_blur_leaves_exactly_unchanged_is_answered_no_difference() -> None:
    """FLOPs are the same for every run of a configuration: groups that all measure 17.40 differ
    by exactly zero, which is a "No", not an inconclusive answer."""
    runs = _runs([17.4] * 3, [17.4] * 3, "forward_mflops")
    assert _answer(runs, "C3") == (
        "No, no difference: the forward pass's MFLOPs per image is 17.40 MFLOPs with blur vs "
        "17.40 MFLOPs without (difference +0.00 MFLOPs or +0.00 %, exact: every run of each "
        "group gave the same value; n = 3 blurred vs 3 no-blur runs)."
    )


def test_the_other_shift_protocol_and_clean_accuracy_are_answered_too() -> None:
    """The paper measures consistency and the adversary under circular shifts and under crops:
    each protocol gets its answer, under its own column (crop: +2.00 points from 80, 82 vs 78,
    80, while circular gains nothing); clean accuracy gets one (RQ5); a protocol the runs did
    not measure gets none."""
    runs = _runs([90.0, 92.0], [90.0, 92.0], "consistency_circular")
    runs["consistency_crop"] = [80.0, 82.0, 78.0, 80.0]
    runs["adversarial_circular"] = [50.0, 52.0, 50.0, 52.0]
    runs["accuracy"] = [71.0, 73.0, 70.0, 72.0]
    assert _answer(runs, "RQ2").startswith("Inconclusive: `consistency_circular` is 91.00 %")
    assert _answer(runs, "RQ2-crop").startswith(
        "Inconclusive: `consistency_crop` is 81.00 % with blur vs 79.00 % without (difference "
        "+2.00 points"
    )
    assert _answer(runs, "RQ5").startswith("Inconclusive: clean test accuracy is 72.00 %")
    keys = {a.key for a in answer_questions(runs)}
    assert "RQ4-crop" not in keys and {"RQ4", "RQ5"} <= keys
    crop_first = {a.key: a for a in answer_questions(runs, "consistency_crop")}
    assert crop_first["RQ2-circular"].question == (
        "Does shift consistency under circular shifts rise with blur?"
    )
    assert crop_first["RQ2"].sentence.startswith("Inconclusive: `consistency_crop`")


def test_smoother_filters_are_also_said_as_a_share() -> None:
    """A TV 0.02 lower is 1 % of 2.00: whether the filters are smoother, and by how much, with
    the third decimal a number near 1 needs (1.744 against 1.766 had read 1.74, 1.77, -0.02)."""
    runs = _runs([1.97, 1.99], [1.99, 2.01], "filter_tv_mean")
    assert "(difference -0.020 or -1.00 %, 95 % CI" in _answer(runs, "RQ1")
    runs = _runs([1.743, 1.745], [1.765, 1.767], "filter_tv_mean")
    assert "is 1.744 with blur vs 1.766 without (difference -0.022 or" in _answer(runs, "RQ1")


def test_a_pure_number_of_ten_or_more_on_either_side_reads_with_two_decimals() -> None:
    """The third decimal is for numbers near 1: a TV of 9.5 against 12.5 reads as 9.50."""
    runs = _runs([9.4, 9.6], [12.4, 12.6], "filter_tv_mean")
    assert "is 9.50 with blur vs 12.50 without (difference -3.00 or -24.00 %" in _answer(
        runs, "RQ1"
    )


def test_a_control_mean_of_zero_gives_no_share() -> None:
    """A difference from zero is no share of it: the sentence gives the difference alone."""
    runs = _runs([0.5, 0.7], [0.0, 0.0], "filter_tv_mean")
    assert "(difference +0.600, 95 % CI [-0.671, +1.871];" in _answer(runs, "RQ1")


def test_a_wide_interval_over_a_small_group_asks_for_more_runs_whatever_the_other() -> None:
    """Two blurred runs against five without: the smaller group is what makes it wide; three
    runs a group are no longer few."""
    runs = _runs([80.0, 82.0], [79.0, 81.0, 83.0, 80.0, 82.0], "accuracy")
    assert _answer(runs, "RQ5").endswith(
        "With 2 runs in a group the interval is wide: more runs, on seeds both groups ran (so "
        "that they pair), would narrow it."
    )
    three = _answer(_runs([80.0, 82.0, 84.0], [79.0, 81.0, 85.0], "accuracy"), "RQ5")
    assert three.startswith("Inconclusive") and three.endswith("n = 3 blurred vs 3 no-blur runs).")


def test_a_cost_every_run_repeats_is_exact_from_one_seed() -> None:
    """One seed a side measures FLOPs exactly: a "Yes", where a measure that varies by seed
    would be inconclusive."""
    assert _answer(_runs([17.6], [17.4], "forward_mflops"), "C3").startswith(
        "Yes: the forward pass's MFLOPs per image is 17.60 MFLOPs with blur vs 17.40 MFLOPs "
        "without (difference +0.20 MFLOPs or +1.15 %, exact"
    )
    assert "Inconclusive" in _answer(_runs([90.0], [80.0], "train_images_per_s"), "C1")


def test_a_non_finite_run_is_left_out_of_the_means_as_of_the_difference() -> None:
    """An inf throughput is left out of the difference, and of the group means beside it (the
    sentence had given one mean as n/a and a finite difference)."""
    runs = _runs([90.0, 92.0, float("inf")], [80.0, 82.0], "train_images_per_s")
    sentence = _answer(runs, "C1")
    assert "91.00 images/s with blur vs 81.00 images/s without (difference +10.00" in sentence


@pytest.mark.parametrize(
    ("setting", "values"),
    [("dataset", ["cifar10", "folder"]), ("data_dir", ["data/a", "data/b"])],
)
def test_answers_are_split_by_the_data_when_the_study_varies_it(
    setting: str, values: list[str]
) -> None:
    """Runs on two datasets (or data folders) mix their effects: the answer also gives the one
    within each, +10.00 on the first (90, 92 vs 80, 82), +1.00 on the second (81, 83 vs 80, 82)."""
    first, second = values
    runs = _runs(
        [90.0, 92.0, 81.0, 83.0],
        [80.0, 82.0, 80.0, 82.0],
        "consistency_circular",
        **{setting: [first, first, second, second] * 2},
    )
    assert _answer(runs, "RQ2").endswith(
        f" By {setting}: {first} +10.00 [+3.92, +16.08] points; "
        f"{second} +1.00 [-5.08, +7.08] points."
    )


def test_a_group_of_one_run_says_so_rather_than_that_runs_tied() -> None:
    """One blurred run against three baseline runs bounds nothing because a group has one run,
    not because the runs of each group tied."""
    runs = _runs([95.0], [88.0, 90.0, 92.0], "consistency_circular")
    assert _answer(runs, "RQ2") == (
        "Inconclusive: `consistency_circular` is 95.00 % with blur vs 90.00 % without "
        "(difference +5.00 points, no interval: a group has fewer than two runs; Welch t over "
        "runs, n = 1 blurred vs 3 no-blur runs)."
    )


def test_polyphase_answers_count_the_runs_whose_downsampling_was_replaced() -> None:
    """APS needs no blur, so its runs of filter size 1 count (99, 100 vs 80, 82); a run with
    `sites: 0` converts nothing, so it is no APS run whatever its `subsample` says."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 6,
            "filter_size": [1, 3, 1, 3, 3, 3],
            "sites": [None, None, None, None, 0, 0],
            "subsample": ["aps", "aps", "fixed", "fixed", "aps", "aps"],
            "consistency_circular": [99.0, 100.0, 80.0, 82.0, 70.0, 72.0],
        }
    )
    (a1,) = [a for a in polyphase_answers(runs) if a.key == "A1"]
    assert "99.50 % with APS vs 81.00 % with fixed subsampling" in a1.sentence
    assert "n = 2 APS vs 2 fixed-grid runs" in a1.sentence


def test_a_cost_of_pooled_configurations_is_their_exact_range_not_a_t_interval() -> None:
    """Blur at filter sizes 2 and 7 (10.1 and 15.0 MFLOPs, three seeds each) against the
    baseline (10.0): every blurred network does more arithmetic, so the answer is "Yes" with the
    exact range +0.10 to +5.00. A Welch interval over the runs had counted the repeated seeds as
    samples and the configurations' spread as noise: [-0.27, +5.37], "Inconclusive", and with
    one run a configuration a hint that more seeds would narrow it (they change nothing)."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 6 + ["none"] * 3,
            "filter_size": [2] * 3 + [7] * 3 + [1] * 3,
            "forward_mflops": [10.1] * 3 + [15.0] * 3 + [10.0] * 3,
        }
    )
    sentence = _answer(runs, "C3")
    assert sentence.startswith("Yes: the forward pass's MFLOPs per image is 12.55 MFLOPs")
    assert "by +0.10 to +5.00 MFLOPs" in sentence and "Welch" not in sentence
    one_run = _answer(runs.iloc[[0, 3, 6]], "C3")
    assert one_run.startswith("Yes: ") and "more seeds" not in one_run
    mixed = runs.assign(forward_mflops=[9.0] * 3 + [15.0] * 3 + [10.0] * 3)
    assert _answer(mixed, "C3").startswith("Mixed: it depends on the configuration")


def test_answers_pair_the_runs_by_seed() -> None:
    """Blurred filter sizes 3 and 5 and the baseline on seeds 0-2, each seed's luck (+4, 0, -4)
    shared by its runs, seed 2's filter-size-5 run missing: per seed the blurred mean minus the
    baseline is 1.5, 2.5, 2.0, so +2.00 with half width 4.302653 * 0.5 / sqrt(3) = 1.24. The
    means are the seeds' means (15.5, 12.5, 8.5 and 14, 10, 6.5), which differ by the estimate;
    the runs' means would read 12.90 against 10.17. A blurred run of seed 7, with no baseline run
    to pair with, is left out and said to be."""
    blurred = [15.0, 12.0, 8.5, 16.0, 13.0, 99.0]
    runs = _runs(blurred, [14.0, 10.0, 6.5], "consistency_circular",
                 seed=[0, 1, 2, 0, 1, 7, 0, 1, 2])  # fmt: skip
    assert _answer(runs, "RQ2") == (
        "Yes: `consistency_circular` is 12.17 % with blur vs 10.17 % without (difference +2.00 "
        "points, 95 % CI [+0.76, +3.24] points; t over the 3 seeds' paired differences, n = 5 "
        "blurred vs 3 no-blur runs; 1 run left out, unpaired (no run of the other group with the "
        "same seed))."
    )


def test_a_run_left_out_unpaired_names_what_runs_pair_by() -> None:
    """The study varies the network, so runs pair by seed within a network: resnet18's blurred
    run of seed 0 has vgg's no-blur run of that seed, but none of its own network, and is left
    out. vgg pairs on seeds 0-2 by 1, 2, 3: +2.00, half width 4.302653 / sqrt(3) = 2.48."""
    models = ["vgg"] * 3 + ["resnet18"] + ["vgg"] * 3
    runs = _runs([15.0, 12.0, 9.0, 50.0], [14.0, 10.0, 6.0], "consistency_circular",
                 seed=[0, 1, 2, 0, 0, 1, 2], model=models)  # fmt: skip
    assert _answer(runs, "RQ2").startswith(
        "Inconclusive: `consistency_circular` is 12.00 % with blur vs 10.00 % without "
        "(difference +2.00 points, 95 % CI [-0.48, +4.48] points; t over the 3 seeds' paired "
        "differences, n = 3 blurred vs 3 no-blur runs; 1 run left out, unpaired (no run of the "
        "other group with the same seed and model))."
    )


def test_the_means_by_filter_size_are_over_seeds_as_the_answers_are() -> None:
    """Filter size 3 ran seed 0 (lucky: +10) twice and seed 1 once: its seeds' mean is
    (90 + 80) / 2 = 85.00, where its runs' mean, 86.67, would weigh the lucky seed double."""
    runs = _runs([90.0, 90.0, 80.0, 84.0, 74.0], [70.0, 60.0], "consistency_circular",
                 seed=[0, 0, 1, 0, 1, 0, 1])  # fmt: skip
    runs.loc[3:4, "filter_size"] = 5
    assert _answer(runs, "RQ2").endswith(" Mean by filter size: 3: 85.00 %, 5: 79.00 %.")


def test_runs_pair_within_a_setting_both_groups_ran_alike() -> None:
    """Blur (+2) with and without augmentation (+20) on seeds 0-2, the no-blur augmented run of
    seed 1 missing: its seed's runs pair within each augmentation, so the blurred augmented run
    of seed 1 is left out, and the seeds' differences are 2.05, 2.10, 1.90: +2.02, half width
    4.302653 * 0.1041 / sqrt(3) = 0.26. Paired by seed alone, seed 1 had set its blurred
    augmented run against no augmented baseline (+12.05): +5.33 [-9.12, +19.78]."""
    blurred = [63.0, 62.1, 60.9, 83.1, 82.0, 80.9]
    baseline = [61.0, 60.0, 59.0, 81.0, 79.0]
    runs = _runs(blurred, baseline, "consistency_circular",
                 seed=[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2],
                 augment=[False] * 3 + [True] * 3 + [False] * 3 + [True] * 2)  # fmt: skip
    assert _answer(runs, "RQ2").startswith(
        "Yes: `consistency_circular` is 68.68 % with blur vs 66.67 % without (difference +2.02 "
        "points, 95 % CI [+1.76, +2.28] points; t over the 3 seeds' paired differences, n = 5 "
        "blurred vs 5 no-blur runs; 1 run left out, unpaired (no run of the other group with "
        "the same seed and augment))."
    )


def test_runs_pair_only_within_settings_whose_combinations_both_groups_ran() -> None:
    """Each group ran augmentation on and off, and learning rates 0.1 and 0.01, but in other
    combinations (as a sampler can draw them): pairing within both would pair nothing, so the
    runs pair within augmentation alone and none is left out."""
    runs = _runs([70.0, 71.0, 80.0, 81.5], [68.0, 69.0, 78.0, 79.0], "consistency_circular",
                 seed=[0, 1] * 4, augment=[False, False, True, True] * 2,
                 lr=[0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.1, 0.1])  # fmt: skip
    sentence = _answer(runs, "RQ2")
    assert "t over the 2 seeds' paired differences, n = 4 blurred vs 4 no-blur runs)" in sentence


def test_a_setting_after_the_seed_pairs_as_one_before_it() -> None:
    """The first pairing test with the shift S (a field after `seed`) in place of augmentation:
    the seed is the sample, not a setting, so a run missing from seed 1 keeps S from pairing no
    more than it keeps augmentation: +2.02 [+1.76, +2.28], not +5.33 [-9.12, +19.78]."""
    blurred = [63.0, 62.1, 60.9, 83.1, 82.0, 80.9]
    baseline = [61.0, 60.0, 59.0, 81.0, 79.0]
    runs = _runs(blurred, baseline, "consistency_circular",
                 seed=[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2],
                 shift=[4] * 3 + [8] * 3 + [4] * 3 + [8] * 2)  # fmt: skip
    assert "(difference +2.02 points, 95 % CI [+1.76, +2.28] points; t over the 3 seeds' " \
        "paired differences, n = 5 blurred vs 5 no-blur runs; 1 run left out, unpaired (no " \
        "run of the other group with the same seed and shift))." in _answer(runs, "RQ2")


def test_a_missing_value_is_a_value_the_groups_must_both_run() -> None:
    """The blurred runs ran `steps` unset, 200 and 500, the no-blur runs 200 and 500 only: the
    groups did not run the setting alike, so no run is left out (the unset runs had been,
    their missing value dropped when comparing the groups but kept in the blocks)."""
    runs = _runs([70.0, 71, 72, 73, 74, 75, 76, 77, 78], [70.0, 71, 72, 73, 74, 75],
                 "consistency_circular", seed=[0, 1, 2] * 5,
                 steps=[None] * 3 + [200] * 3 + [500] * 3 + [200] * 3 + [500] * 3)  # fmt: skip
    assert "n = 9 blurred vs 6 no-blur runs)." in _answer(runs, "RQ2")


def test_a_setting_pairs_only_where_both_groups_ran_it_alike_in_each_network() -> None:
    """Both groups ran augmentation on and off, but on the ResNet the no-blur runs only off:
    pairing within augmentation would leave the blurred augmented ResNet runs without a pair,
    so the runs pair within seed and network alone, and none is left out."""
    runs = _runs([70.0, 71, 72, 80, 81, 82, 60, 61, 62, 65, 66, 67],
                 [68.0, 69, 70, 78, 79, 80, 58, 59, 60], "consistency_circular",
                 seed=[0, 1, 2] * 7,
                 model=["vgg"] * 6 + ["resnet18"] * 6 + ["vgg"] * 6 + ["resnet18"] * 3,
                 augment=[False] * 3 + [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3
                 + [True] * 3 + [False] * 3)  # fmt: skip
    assert "n = 12 blurred vs 9 no-blur runs)." in _answer(runs, "RQ2")


def test_runs_that_did_not_learn_with_a_value_are_counted_even_if_one_has_none() -> None:
    """Clean accuracy keeps the runs that did not learn: one blurred such run recorded 70 %,
    the other nothing. The one with a value counts, so the sentence says what the runs that
    learned show (80, 81 against 50-52: +29.50), not that such runs were left out."""
    runs = _runs([70.0, float("nan"), 80.0, 81.0], [50.0, 51.0, 52.0], "accuracy",
                 learned=[False, False] + [True] * 5)  # fmt: skip
    assert _answer(runs, "RQ5").endswith(
        " This counts 2 blurred and 0 no-blur runs that did not learn (accuracy not above "
        "chance); among the runs that learned the difference is +29.50 [+27.01, +31.99] points."
    )


def test_no_difference_among_the_runs_that_learned_is_no_verdict_of_theirs() -> None:
    """The blurred runs that learned have no clean accuracy, so among them there is no
    difference (n/a, with no unit) and no verdict to set against the headline's."""
    runs = _runs([70.0, 71.0, float("nan")], [50.0, 51.0, 52.0], "accuracy",
                 learned=[False, False] + [True] * 4)  # fmt: skip
    sentence = _answer(runs, "RQ5")
    assert sentence.startswith("Yes: clean test accuracy is 70.50 % with blur")
    assert sentence.endswith("; among the runs that learned the difference is n/a.")


def test_a_study_that_always_augmented_gets_no_split_by_training() -> None:
    """Every run trained with augmentation: there is nothing to split the answer by."""
    runs = _runs([70.0, 72.0], [60.0, 62.0], "adversarial_circular", augment=[True] * 4)
    sentence = _answer(runs, "RQ4")
    assert sentence.startswith("Yes: ") and "Split by training" not in sentence


def test_a_question_that_cannot_be_answered_gives_no_means_by_filter_size() -> None:
    """Blur at filter sizes 3 and 5 and no run without it: RQ2 says why it cannot be answered,
    and nothing else."""
    runs = _runs([80.0, 82.0, 84.0, 86.0], [], "consistency_circular")
    runs.loc[2:3, "filter_size"] = 5
    assert _answer(runs, "RQ2") == (
        "Cannot be answered from this study: it has no no-blur (placement none or filter size "
        "1) runs with `consistency_circular` to compare against."
    )


def test_a_split_without_a_difference_gives_no_unit() -> None:
    """Without augmentation no run went without blur: that split has no difference, which
    reads n/a, not 'n/a points'."""
    runs = _runs([70.0, 72.0, 55.0, 57.0], [60.0, 62.0], "adversarial_circular",
                 augment=[True, True, False, False, True, True])  # fmt: skip
    assert _answer(runs, "RQ4").endswith(
        " Split by training: without augmentation n/a; "
        "with augmentation +10.00 [+3.92, +16.08] points."
    )


def test_each_shift_protocol_asks_the_drop_question_in_its_own_words() -> None:
    """RQ3 asks about diagonal shifts (circular ones, the paper's), RQ3-crop names crops."""
    runs = _runs([[80, 79], [82, 80]], [[80, 74], [82, 75]], "accuracy_vs_shift_circular")
    runs["accuracy_vs_shift_crop"] = runs["accuracy_vs_shift_circular"]
    questions = {a.key: a.question for a in answer_questions(runs)}
    assert questions["RQ3"] == "Does accuracy fall less under diagonal shifts with blur?"
    assert questions["RQ3-crop"] == "Does accuracy fall less under diagonal crop shifts with blur?"


def test_the_other_protocol_is_answered_where_some_runs_measured_it() -> None:
    """Runs of an older engine measured no crops: the runs that did still answer RQ2-crop and
    RQ3-crop, over the runs that measured them."""
    runs = _runs([90.0, 92.0, 91.0], [88.0, 90.0, 89.0], "consistency_circular",
                 consistency_crop=[80.0, 82.0, None, 78.0, 80.0, None])  # fmt: skip
    runs["accuracy_vs_shift_crop"] = [[80, 79], [82, 80], None, [80, 74], [82, 75], None]
    assert "n = 2 blurred vs 2 no-blur runs" in _answer(runs, "RQ2-crop")
    assert "n = 2 blurred vs 2 no-blur runs" in _answer(runs, "RQ3-crop")


def test_each_polyphase_sampling_is_compared_with_those_the_study_ran() -> None:
    """APS against LPS without the fixed grid gets L4 and L5 only; LPS against the fixed grid
    L1-L3 only: no answer whose groups the study never ran."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 4,
            "filter_size": [3] * 4,
            "subsample": ["aps", "aps", "lps", "lps"],
            "accuracy": [70.0, 72.0, 80.0, 82.0],
        }
    )
    assert [a.key for a in polyphase_answers(runs)] == ["L4", "L5"]
    fixed = runs.assign(subsample=["fixed", "fixed", "lps", "lps"])
    assert [a.key for a in polyphase_answers(fixed)] == ["L1", "L2", "L3"]


def test_aps_costs_accuracy_when_its_runs_score_lower() -> None:
    """APS at 70, 72 % against the fixed grid's 80, 82 % on converted networks: yes, it costs
    10 points. The fixed-grid runs without blur placed (placement none, 50 %) are no fixed-grid
    runs: their downsampling was not replaced."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 4 + ["none"] * 2,
            "filter_size": [3] * 6,
            "subsample": ["aps", "aps", "fixed", "fixed", "fixed", "fixed"],
            "accuracy": [70.0, 72.0, 80.0, 82.0, 50.0, 50.0],
        }
    )
    (a3,) = [a for a in polyphase_answers(runs) if a.key == "A3"]
    assert a3.question == "Does APS cost accuracy?"
    assert a3.sentence == (
        "Yes: clean accuracy is 71.00 % with APS vs 81.00 % with fixed subsampling (difference "
        "-10.00 points, 95 % CI [-16.08, -3.92] points; Welch t over runs, n = 2 APS vs 2 "
        "fixed-grid runs)."
    )


def test_a_cost_counts_the_runs_that_did_not_learn_as_any_other() -> None:
    """A run that did not learn trains as fast as one that did: throughput counts it, and says
    nothing of learning."""
    runs = _runs([90.0, 92.0, 94.0], [80.0, 82.0, 84.0], "train_images_per_s",
                 learned=[False, True, True, True, True, False])  # fmt: skip
    assert _answer(runs, "C1") == (
        "No, the opposite: training throughput is 92.00 images/s with blur vs 82.00 images/s "
        "without (difference +10.00 images/s or +12.20 %, 95 % CI [+5.47, +14.53] images/s; "
        "Welch t over runs, n = 3 blurred vs 3 no-blur runs)."
    )


def test_the_split_by_training_pairs_each_part_by_seed() -> None:
    """Within each augmentation the runs pair by seed: without it the seeds' differences are 1,
    1, 0.5 (+0.83, half width 4.302653 * 0.2887 / sqrt(3) = 0.72), not a Welch interval over
    runs whose seeds' luck spreads them by 11 points."""
    runs = _runs([70.0, 75.0, 80.0, 60.0, 66.0, 71.0], [68.0, 73.0, 78.5, 59.0, 65.0, 70.5],
                 "adversarial_circular", seed=[0, 1, 2] * 4,
                 augment=[True] * 3 + [False] * 3 + [True] * 3 + [False] * 3)  # fmt: skip
    assert _answer(runs, "RQ4").endswith(
        " Split by training: without augmentation +0.83 [+0.12, +1.55] points; "
        "with augmentation +1.83 [+1.12, +2.55] points."
    )


def test_the_fixed_grid_counts_the_baseline_network_once_per_seed() -> None:
    """A one-tap filter at max-pools under two placements trains the baseline's network twice
    per seed (80, 82 %): the fixed grid counts each network and seed once, 2 runs, not 4."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 4 + ["blur_before_max"] * 2,
            "filter_size": [3, 3, 1, 1, 1, 1],
            "subsample": ["aps", "aps", "fixed", "fixed", "fixed", "fixed"],
            "network_key": ["aps-3", "aps-3"] + ["baseline"] * 4,
            "seed": [0, 1] * 3,
            "accuracy": [90.0, 92.0, 80.0, 82.0, 80.0, 82.0],
        }
    )
    (a3,) = [a for a in polyphase_answers(runs) if a.key == "A3"]
    assert "is 91.00 % with APS vs 81.00 % with fixed subsampling" in a3.sentence
    assert "n = 2 APS vs 2 fixed-grid runs" in a3.sentence


def test_lps_is_compared_with_aps_as_the_question_names_them() -> None:
    """L4 asks whether LPS is more accurate than APS: LPS's 80, 82 % against APS's 70, 72 % is
    a yes, +10 points."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 4,
            "filter_size": [3] * 4,
            "subsample": ["aps", "aps", "lps", "lps"],
            "accuracy": [70.0, 72.0, 80.0, 82.0],
        }
    )
    (l4,) = [a for a in polyphase_answers(runs) if a.key == "L4"]
    assert l4.question == "Is LPS more accurate than APS?"
    assert l4.sentence.startswith(
        "Yes: clean accuracy is 81.00 % with LPS vs 71.00 % with APS (difference +10.00 points"
    )
