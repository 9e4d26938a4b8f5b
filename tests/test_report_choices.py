"""Which value of each varied setting does best: hand-made runs whose numbers are worked out by
hand (two runs a, a + 2 have a standard error of 1 for their mean: t(1) = 12.7062 gives a
half width of 12.71; two such groups differ with a half width of 4.302653 * sqrt(2) = 6.08)."""

from __future__ import annotations

import pandas as pd

from ablate.report_choices import choice_answers
from ablate.spec import Objective

ACCURACY = Objective(metric="accuracy", direction="maximize")
LOSS = Objective(metric="final_train_loss", direction="minimize")


def _runs() -> pd.DataFrame:
    """Blurred runs with reflect (90, 92 %) and zeros (80, 82 %) padding, and runs without
    blur labelled zeros (99, 99 %), whose padding is unused and must not count."""
    return pd.DataFrame(
        {
            "placement": ["paper"] * 4 + ["none"] * 2,
            "filter_size": [3] * 4 + [1] * 2,
            "padding": ["reflect", "reflect", "zeros", "zeros", "zeros", "zeros"],
            "model": ["vgg"] * 6,
            "accuracy": [90.0, 92.0, 80.0, 82.0, 99.0, 99.0],
            "final_train_loss": [0.5, 0.7, 0.2, 0.4, 0.1, 0.1],
        }
    )


def test_the_best_value_leads_among_the_runs_that_use_the_setting() -> None:
    answers = choice_answers(_runs(), [ACCURACY], ["padding"])
    assert [a.question for a in answers] == ["Which padding gives the highest `accuracy`?"]
    assert answers[0].sentence == (
        "reflect: reflect is ahead of zeros (difference +10.00 points [+3.92, +16.08]), a clear "
        "lead (its 95 % interval excludes zero). Mean of each value's runs, the other settings "
        "varied pooled: reflect 91.00 % [78.29, 100.00] (n = 2), zeros 81.00 % [68.29, 93.71] "
        "(n = 2)."
    )


def test_a_minimised_objective_asks_for_the_lowest_and_an_unclear_lead_says_so() -> None:
    """Losses 0.2, 0.4 (zeros) against 0.5, 0.7 (reflect): -0.30 with a half width of
    4.302653 * sqrt(0.02/2 * 2) = 0.61, so no clear best."""
    (answer,) = choice_answers(_runs(), [LOSS], ["padding"])
    assert answer.question == "Which padding gives the lowest `final_train_loss`?"
    assert answer.sentence.startswith(
        "No clear best: zeros is ahead of reflect (difference -0.30 [-0.91, +0.31]), an "
        "interval that includes zero (more seeds would tell)."
    )


def test_settings_that_are_other_experiments_or_take_one_value_get_no_answer() -> None:
    """The network is another experiment (SPLIT_BY), not a choice among designs; placement is
    a choice, numbered on from the first; a filter size the blurred runs share is not."""
    runs = _runs().assign(model=["vgg", "resnet18"] * 3)
    answers = choice_answers(runs, [ACCURACY], ["model", "filter_size", "placement", "padding"])
    assert [(a.key, a.question) for a in answers] == [
        ("S1", "Which placement gives the highest `accuracy`?"),
        ("S2", "Which padding gives the highest `accuracy`?"),
    ]


def test_a_default_none_is_a_value_and_whole_numbers_read_whole() -> None:
    """`sites: [null, 1, 2]`: the None runs (all sites, 95, 96 %) are a value like the others,
    and the best; pandas reads the column as floats, which must not show as '1.0'."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 6,
            "filter_size": [3] * 6,
            "sites": [None, None, 1, 1, 2, 2],
            "accuracy": [95.0, 96.0, 80.0, 81.0, 70.0, 71.0],
        }
    )
    (answer,) = choice_answers(runs, [ACCURACY], ["sites"])
    assert answer.sentence.startswith("None (its default): None (its default) is ahead of 1 ")
    assert "1 80.50 %" in answer.sentence and "1.0" not in answer.sentence


def test_runs_that_did_not_learn_are_counted_and_named() -> None:
    """Consistency is left out for runs that did not learn (NaN here, as the report masks it):
    a value with none left is named, and a value's count says how many did not learn."""
    runs = _runs().assign(
        consistency_circular=[90.0, 92.0, None, None, 95.0, 95.0],
        learned=[True, True, False, False, True, True],
    )
    objective = Objective(metric="consistency_circular", direction="maximize")
    answers = choice_answers(runs, [objective, ACCURACY], ["placement", "padding"])
    placement, _, padding, padding_accuracy = (a.sentence for a in answers)
    assert "Cannot be answered from this study: fewer than two values of padding" in padding
    assert "to count (left out" not in placement
    assert "zeros 81.00 % [68.29, 93.71] (n = 2, 2 did not learn)" in padding_accuracy
    assert "paper 91.00 % [78.29, 100.00] (n = 2; 2 that did not learn left out)" in placement


def test_a_measure_every_run_of_a_configuration_repeats_gets_no_interval_or_seeds_advice():
    """FLOPs do not change with padding: a tie, said as one, with no 'more seeds'."""
    runs = _runs().assign(forward_mflops=[17.4] * 6)
    flops = Objective(metric="forward_mflops", direction="minimize")
    (answer,) = choice_answers(runs, [flops], ["padding"])
    assert answer.sentence.startswith("No difference: ")
    assert "seeds" not in answer.sentence and "[" not in answer.sentence


def test_a_sampled_continuous_setting_is_no_choice_and_uneven_runs_are_flagged() -> None:
    """Thirty sampled learning rates are a curve, not a choice among values; values with
    different numbers of runs get the caveat that the other settings may differ."""
    runs = pd.DataFrame(
        {"lr": [0.01 * (1 + i) for i in range(30)], "accuracy": [float(i) for i in range(30)]}
    )
    assert choice_answers(runs, [ACCURACY], ["lr"]) == []
    uneven = _runs().iloc[:3]  # reflect twice, zeros once
    (answer,) = choice_answers(uneven, [ACCURACY], ["padding"])
    assert answer.sentence.endswith("the comparison can mix in their effects.")


def test_uneven_runs_are_flagged_also_beside_a_value_with_no_measure() -> None:
    """circular's runs did not learn (no consistency to count), and reflect has two measured
    runs to zeros' one: the caveat on uneven counts holds for the two compared all the same."""
    runs = pd.concat([_runs().iloc[:3], _runs().iloc[:2].assign(padding="circular")])
    runs = runs.assign(consistency_circular=[90.0, 92.0, 85.0, None, None])
    consistency = Objective(metric="consistency_circular", direction="maximize")
    (answer,) = choice_answers(runs, [consistency], ["padding"])
    assert "No `consistency_circular` to count" in answer.sentence
    assert ": circular." in answer.sentence
    assert answer.sentence.endswith("the comparison can mix in their effects.")


def test_a_lead_is_clear_only_over_every_other_value() -> None:
    """zeros (80.0, 80.3, 80.1 on seeds 0-2) leads reflect (78.0, 78.1, 78.2) by 2.0, 2.2 and
    1.9, +2.03 [+1.65, +2.41], but circular (70, 78, 86) could be anywhere: zeros' lead over it
    is +2.13 [-17.62, +21.89]. The best value's lead is not clear, though the interval against
    the next excludes zero."""
    values = {"zeros": [80.0, 80.3, 80.1], "reflect": [78.0, 78.1, 78.2],
              "circular": [70.0, 78.0, 86.0]}  # fmt: skip
    runs = pd.DataFrame([
        {"placement": "paper", "filter_size": 3, "padding": padding, "seed": seed,
         "accuracy": value}
        for padding, seeds in values.items()
        for seed, value in enumerate(seeds)
    ])  # fmt: skip
    [answer] = choice_answers(runs, [Objective(metric="accuracy", direction="maximize")],
                              ["padding"])  # fmt: skip
    assert answer.sentence.startswith(
        "No clear best: zeros is ahead of reflect (difference +2.03 points [+1.65, +2.41]), but "
        "its lead over circular (difference +2.13 points [-17.62, +21.89]) does not exclude zero."
    )


def _padding_runs(values: dict[str, list[tuple[int, float]]]) -> pd.DataFrame:
    """Blurred runs of each padding, as (seed, accuracy) pairs."""
    return pd.DataFrame([
        {"placement": "paper", "filter_size": 3, "padding": padding, "seed": seed,
         "accuracy": value}
        for padding, runs in values.items()
        for seed, value in runs
    ])  # fmt: skip


def test_values_rank_by_their_seeds_means_not_their_runs() -> None:
    """reflect is 2 points behind zeros on every seed (luck +10, 0, -10 shared), but one of its
    configurations also ran the lucky seed 0 only: its runs' mean, 82.50, tops zeros' 82.00,
    while its seeds' means, 80.00, do not. zeros leads by 2.1, 2.0, 1.9: +2.00 [+1.75, +2.25]."""
    runs = _padding_runs({
        "reflect": [(0, 90.0), (1, 80.0), (2, 70.0), (0, 90.0)],
        "zeros": [(0, 92.1), (1, 82.0), (2, 71.9)],
    })  # fmt: skip
    [answer] = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "zeros: zeros is ahead of reflect (difference +2.00 points [+1.75, +2.25]), a clear lead "
        "(its 95 % interval excludes zero). Mean of each value over its seeds (each seed's runs "
        "averaged first), the other settings varied pooled: zeros 82.00 % ["
    )
    assert "reflect 80.00 % [" in answer.sentence


def test_a_value_first_on_its_mean_but_behind_on_the_shared_seeds_is_no_clear_best() -> None:
    """reflect's seeds' mean (80, 80, 95: 85.00) tops zeros' (82, 82.2, 70: 78.07), but on
    seeds 0 and 1, the ones both ran, reflect trails by 2.0 and 2.2: -2.10, half width
    12.7062 * 0.1414 / sqrt(2) = 1.27. That is no lead, however clear its interval."""
    runs = _padding_runs({
        "reflect": [(0, 80.0), (1, 80.0), (2, 95.0)],
        "zeros": [(0, 82.0), (1, 82.2), (3, 70.0)],
    })  # fmt: skip
    [answer] = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "No clear best: reflect has the better mean, but on the seeds it shares with zeros it is "
        "behind (difference -2.10 points [-3.37, -0.83])."
    )


def test_a_lower_ranked_value_ahead_on_the_shared_seeds_is_said_to_be_ahead() -> None:
    """reflect (90, 80, 70: 80.00) leads zeros (88, 78.1, 67.9: 78.00) by 2.0, 1.9, 2.1:
    +2.00 [+1.75, +2.25]. circular ranks last (92, 82.2 and 40 on seed 3: 71.40), but on seeds
    0 and 1 it is ahead of reflect by 2.0 and 2.2: reflect's lead over it is -2.10, half width
    12.7062 * 0.1414 / sqrt(2) = 1.27, an interval that excludes zero on the wrong side."""
    runs = _padding_runs({
        "reflect": [(0, 90.0), (1, 80.0), (2, 70.0)],
        "zeros": [(0, 88.0), (1, 78.1), (2, 67.9)],
        "circular": [(0, 92.0), (1, 82.2), (3, 40.0)],
    })  # fmt: skip
    [answer] = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "No clear best: reflect is ahead of zeros (difference +2.00 points [+1.75, +2.25]), but "
        "on the seeds it shares with circular it is behind (difference -2.10 points [-3.37, "
        "-0.83])."
    )


def test_a_value_of_one_seed_gets_its_seeds_mean_where_the_others_have_seeds() -> None:
    """zeros ran seed 0 only, twice (88, 86): said over its seeds, as the sentence says every
    value is, that is one seed's mean, 87.00, with no interval; its two runs share their seed
    and would give [74.29, 99.71]. reflect (90, 80, 70) gets 80.00 [55.16, 100.00]."""
    runs = _padding_runs({
        "reflect": [(0, 90.0), (1, 80.0), (2, 70.0)],
        "zeros": [(0, 88.0), (0, 86.0)],
    })  # fmt: skip
    [answer] = choice_answers(runs, [ACCURACY], ["padding"])
    assert (
        "Mean of each value over its seeds (each seed's runs averaged first), the other settings "
        "varied pooled: zeros 87.00 % (n = 2), reflect 80.00 % [55.16, 100.00] (n = 3)."
    ) in answer.sentence


def test_a_value_behind_over_runs_is_not_said_to_share_seeds() -> None:
    """reflect ran seed 0 in three configurations (90 each) and seed 1 in one (70): its seeds'
    mean 80.00 ranks it below zeros (82 on seeds 2 and 3), but no seed ran both, so the
    difference is Welch's over the runs (82 - 85 = -3.00): behind over the runs, not on seeds
    they share."""
    runs = _padding_runs({
        "reflect": [(0, 90.0), (0, 90.0), (0, 90.0), (1, 70.0)],
        "zeros": [(2, 82.0), (3, 82.0)],
    })  # fmt: skip
    [answer] = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "No clear best: zeros has the better mean, but over its runs and reflect's (fewer than "
        "two seeds ran both) it is behind (difference -3.00 points ["
    )


def test_an_infinite_value_is_left_out_as_the_answers_leave_it() -> None:
    """A throughput timed at zero seconds is inf: it has no mean to rank by or pair, so zeros'
    runs are 80 and 82 (81.00), and a value whose runs are all inf is named as unmeasured."""
    runs = _runs().assign(accuracy=[90.0, 92.0, 80.0, 82.0, 99.0, 99.0])
    runs.loc[4:5, "padding"] = "circular"
    runs.loc[4:5, ["placement", "filter_size", "accuracy"]] = ["paper", 3, float("inf")]
    runs.loc[3, "accuracy"] = float("-inf")
    runs = pd.concat([runs, runs.iloc[[2]].assign(accuracy=82.0)], ignore_index=True)
    (answer,) = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith("reflect: reflect is ahead of zeros (difference +10.00")
    assert "zeros 81.00 % [68.29, 93.71] (n = 2)" in answer.sentence
    assert answer.sentence.endswith(
        "No `accuracy` to count (left out for runs that did not learn, or not finite): circular."
    )


def test_values_pair_within_the_other_settings_both_ran_alike() -> None:
    """reflect leads zeros by about a point at filter sizes 3 and 5 (+20) on seeds 0-2, but
    zeros' Bin-5 run of seed 1 is missing: paired within filter size, the seeds' leads are 1.05,
    1.10 and 0.90, +1.02 [+0.76, +1.28]; by seed alone, seed 1 had set reflect's Bin-5 run
    against zeros' Bin-3 only (+11.05), and the lead was no clear one."""
    runs = pd.DataFrame([
        {"placement": "paper", "filter_size": size, "padding": padding, "seed": seed,
         "accuracy": value}
        for padding, size, values in [("reflect", 3, [71.0, 70.1, 68.9]),
                                      ("reflect", 5, [91.1, 90.0, 88.9]),
                                      ("zeros", 3, [70.0, 69.0, 68.0]),
                                      ("zeros", 5, [90.0, None, 88.0])]
        for seed, value in enumerate(values)
        if value is not None
    ])  # fmt: skip
    [answer] = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "reflect: reflect is ahead of zeros (difference +1.02 points [+0.76, +1.28]), a clear "
        "lead"
    )


def test_a_setting_of_eight_values_is_a_choice_and_of_nine_a_curve() -> None:
    """MAX_VALUES is 8: sites 1-8 (two runs each) get an answer, sites 1-9 none."""

    def runs(values: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "placement": ["paper"] * 2 * values,
                "filter_size": [3] * 2 * values,
                "sites": [site for site in range(1, values + 1) for _ in range(2)],
                "accuracy": [float(site + run) for site in range(values) for run in (0, 1)],
            }
        )

    assert [a.key for a in choice_answers(runs(8), [ACCURACY], ["sites"])] == ["S1"]
    assert choice_answers(runs(9), [ACCURACY], ["sites"]) == []


def test_a_fractional_value_reads_as_it_is_and_a_throughput_in_images_per_second() -> None:
    """A learning rate of 0.05 is not '0'; a throughput's means read in images/s."""
    rates = pd.DataFrame({"lr": [0.05, 0.05, 0.1, 0.1], "accuracy": [90.0, 92.0, 80.0, 82.0]})
    (answer,) = choice_answers(rates, [ACCURACY], ["lr"])
    assert answer.sentence.startswith("0.05: 0.05 is ahead of 0.1 (difference +10.00 points")
    speed = pd.DataFrame(
        {"batch_size": [64, 64, 128, 128], "train_images_per_s": [900.0, 1000.0, 1500.0, 1600.0]}
    )
    throughput = Objective(metric="train_images_per_s", direction="maximize")
    (answer,) = choice_answers(speed, [throughput], ["batch_size"])
    assert "(difference +600.00 images/s [" in answer.sentence
    assert "128 1550.00 images/s [914.69, 2185.31] (n = 2)" in answer.sentence


def test_a_measure_every_run_repeats_is_averaged_over_runs_with_no_interval_per_value() -> None:
    """FLOPs differ with the filter size pooled within each padding (17, 19 and 16, 18 over
    seeds 0 and 1): each value's mean is over its runs, not its seeds, and its spread is the
    other settings', not an interval."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 8,
            "padding": ["reflect"] * 4 + ["zeros"] * 4,
            "filter_size": [3, 3, 5, 5] * 2,
            "seed": [0, 1] * 4,
            "forward_mflops": [17.0, 17.0, 19.0, 19.0, 16.0, 16.0, 18.0, 18.0],
        }
    )
    flops = Objective(metric="forward_mflops", direction="minimize")
    (answer,) = choice_answers(runs, [flops], ["padding"])
    # (a lower count is ahead: the difference is signed as elsewhere, not "ahead by -1")
    lead = "zeros, on average: ahead of reflect (difference -1.00 MFLOPs, the same in every"
    assert answer.sentence.startswith(lead)
    assert answer.sentence.endswith(
        "Mean of each value's runs, the other settings varied pooled: zeros 17.00 MFLOPs "
        "(n = 4), reflect 18.00 MFLOPs (n = 4)."
    )


def test_values_of_one_seed_each_are_compared_over_their_runs() -> None:
    """reflect ran seed 0 and zeros seed 1, each at two filter sizes: a seed's mean is no
    sample of a spread, so the means and intervals are over the runs."""
    runs = _runs().iloc[:4].assign(filter_size=[3, 5] * 2, seed=[0, 0, 1, 1])
    (answer,) = choice_answers(runs, [ACCURACY], ["padding"])
    assert "Mean of each value's runs, the other settings varied pooled: reflect 91.00 % " in (
        answer.sentence
    )
    assert "zeros 81.00 % [68.29, 93.71] (n = 2)" in answer.sentence


def test_values_that_tie_are_no_clear_best_and_neither_is_behind() -> None:
    """reflect and zeros both ran 90 and 92 %: a difference of zero, not a lead lost on the
    seeds they share."""
    runs = _runs().iloc[:4].assign(accuracy=[90.0, 92.0, 90.0, 92.0])
    (answer,) = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "No clear best: reflect is ahead of zeros (difference +0.00 points [-6.08, +6.08]), an "
        "interval that includes zero (more seeds would tell)."
    )
    assert "behind" not in answer.sentence


def test_a_lead_without_an_interval_says_why() -> None:
    """reflect leads zeros by 10 on both seeds (no spread to bound), and by 10 over one run
    each (no seeds): neither has an interval, for a reason each sentence names."""
    runs = _runs().iloc[:4].assign(seed=[0, 1, 0, 1], accuracy=[90.0, 92.0, 80.0, 82.0])
    (answer,) = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "No clear best: reflect is ahead of zeros (difference +10.00 points), with no interval "
        "(each seed gave the same difference)."
    )
    (answer,) = choice_answers(_runs().iloc[[0, 2]], [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "No clear best: reflect is ahead of zeros (difference +10.00 points), with no interval "
        "(a value has fewer than two runs, or its runs tie)."
    )


def test_a_lower_ranked_value_that_ties_the_best_keeps_the_lead_from_being_clear() -> None:
    """reflect (90, 92, 94 %) leads zeros clearly (+10.50 [+9.26, +11.74] over seeds 0-2), but
    circular ran the same 90, 92, 94 on those seeds and ranks last only for its seed 3 (0 %):
    on the seeds they share the lead over it is exactly zero, a tie, not a deficit."""
    runs = pd.DataFrame(
        {
            "placement": ["paper"] * 10,
            "filter_size": [3] * 10,
            "padding": ["reflect"] * 3 + ["zeros"] * 3 + ["circular"] * 4,
            "seed": [0, 1, 2] * 3 + [3],
            "accuracy": [90.0, 92.0, 94.0, 80.0, 81.5, 83.0, 90.0, 92.0, 94.0, 0.0],
        }
    )
    (answer,) = choice_answers(runs, [ACCURACY], ["padding"])
    assert answer.sentence.startswith(
        "No clear best: reflect is ahead of zeros (difference +10.50 points [+9.26, +11.74]), "
        "but its lead over circular (difference +0.00 points) does not exclude zero. "
    )
