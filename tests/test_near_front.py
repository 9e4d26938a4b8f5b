"""Configurations off the Pareto front that none on it clearly beats: hand-made runs whose
paired differences are worked out by hand (three seeds: t(2) = 4.302653)."""

from __future__ import annotations

import pandas as pd

from ablate.near_front import near_front
from ablate.report import _near_front_note, all_configs_table
from ablate.report_table import CONFIG_KEY, StudyMeta, aggregate_over_seeds
from ablate.spec import Objective

OBJECTIVES = [Objective(metric="accuracy", direction="maximize"),
              Objective(metric="forward_mflops", direction="minimize")]  # fmt: skip

#: Per configuration: its accuracy on seeds 0-2, its FLOPs (the same in every run), whether
#: it is on the front and whether it is feasible (as `report.mark_front` marks them).
CONFIGS = {
    # on the front: the most accurate at the fewest FLOPs ...
    "a": ([90.0, 91.0, 92.0], 10.0, True, True),
    # ... and the most accurate of all, at more FLOPs
    "e": ([92.0, 93.0, 94.0], 14.0, True, True),
    # a leads by 1.0, 0.9, 1.1: +1.00 [+0.75, +1.25] points, FLOPs the same: clearly beaten
    "b": ([89.0, 90.1, 90.9], 10.0, False, True),
    # a leads by 5, -4, 2: +1.00 [-10.3, +12.3], FLOPs the same: not clearly beaten
    "c": ([85.0, 95.0, 90.0], 10.0, False, True),
    # as c, but 2 MFLOPs more than a in every run: exactly beaten on FLOPs
    "d": ([85.0, 95.0, 90.0], 12.0, False, True),
    # as c, but a seed did not learn: infeasible, never near
    "f": ([85.0, 95.0, 90.0], 10.0, False, False),
}


Table = dict[str, tuple[list[float], float, bool, bool]]


def _runs(table: Table = CONFIGS) -> pd.DataFrame:
    return pd.DataFrame([
        {CONFIG_KEY: key, "config": key, "trial": trial, "seed": seed, "accuracy": accuracy,
         "forward_mflops": flops}
        for trial, (key, (accuracies, flops, _, _)) in enumerate(table.items())
        for seed, accuracy in enumerate(accuracies)
    ])  # fmt: skip


def _configs(runs: pd.DataFrame, table: Table = CONFIGS) -> pd.DataFrame:
    configs = aggregate_over_seeds(runs, ["config"])
    configs["pareto"] = [table[key][2] for key in configs[CONFIG_KEY]]
    configs["feasible"] = [table[key][3] for key in configs[CONFIG_KEY]]
    return configs


def _near(table: Table) -> list[str]:
    """The configurations of `table` near its front."""
    runs = _runs(table)
    configs = _configs(runs, table)
    return list(configs[CONFIG_KEY][near_front(configs, runs, OBJECTIVES)])


def test_only_a_configuration_no_front_member_clearly_beats_is_near_the_front() -> None:
    runs = _runs()
    configs = _configs(runs)
    near = near_front(configs, runs, OBJECTIVES)
    assert dict(zip(configs[CONFIG_KEY], near, strict=True)) == {
        "a": False, "e": False, "b": False, "c": True, "d": False, "f": False
    }


def test_one_seed_tells_nothing_apart_but_an_exact_measure() -> None:
    """With one seed no accuracy difference has an interval: only d, exactly behind on FLOPs,
    is clearly beaten."""
    runs = _runs()
    runs = runs[runs["seed"] == 0]
    configs = _configs(runs)
    near = near_front(configs, runs, OBJECTIVES)
    assert list(configs[CONFIG_KEY][near]) == ["b", "c"]


def test_the_report_marks_and_counts_the_configurations_near_the_front() -> None:
    runs = _runs()
    configs = _configs(runs).assign(near_front=lambda table: near_front(table, runs, OBJECTIVES))
    meta = StudyMeta(study_name="s", storage=None, objectives=tuple(OBJECTIVES))
    table = all_configs_table(configs, ["config"], meta)
    assert dict(zip(table["config"], table["front"], strict=True))["c"] == "≈"
    assert _near_front_note(configs).startswith(
        "1 of the 3 feasible configurations off the front is near it (≈ below)"
    )
    assert _near_front_note(configs.assign(near_front=False)).startswith(
        "Every feasible configuration off the front is clearly beaten by one on it"
    )
    # no note without a front, without the near-front column, or with every feasible
    # configuration on the front
    assert _near_front_note(configs.assign(pareto=False)) == ""
    assert _near_front_note(configs.drop(columns="near_front")) == ""
    assert _near_front_note(configs.assign(pareto=configs["feasible"])) == ""


def test_runs_without_seeds_are_compared_over_the_runs() -> None:
    """Without a `seed` column nothing pairs, and a Welch interval over the runs decides: a's
    lead over b, +1.00 [-1.22, +3.22] unpaired, no longer excludes zero, and only d, exactly
    behind on FLOPs, is clearly beaten (none had been near the front, so the note had said
    every configuration off it is clearly beaten)."""
    runs = _runs().drop(columns="seed")
    configs = _configs(runs)
    near = near_front(configs, runs, OBJECTIVES)
    assert list(configs[CONFIG_KEY][near]) == ["b", "c"]


def test_a_tie_on_a_mean_is_no_worse() -> None:
    """g has a's mean accuracy, 91, by other seeds (a leads by -1, 0, +1: not clearly) and 2
    MFLOPs more in every run: a is at least as good on both means and exactly ahead on FLOPs,
    so g is clearly beaten, not near the front."""
    table = {"a": CONFIGS["a"], "e": CONFIGS["e"], "g": ([91.0, 91.0, 91.0], 12.0, False, True)}
    assert _near(table) == []


def test_one_front_member_that_clearly_beats_is_enough() -> None:
    """h (accuracy 85, 95, 90; 14 MFLOPs) is no better on the means than a or e. e, at the same
    FLOPs, leads by 7, -2, 4: not clearly; a is exactly ahead on FLOPs (10): h is beaten."""
    table = {"a": CONFIGS["a"], "e": CONFIGS["e"], "h": ([85.0, 95.0, 90.0], 14.0, False, True)}
    assert _near(table) == []


def test_a_configuration_not_measured_on_every_objective_is_never_near() -> None:
    """m has no accuracy (every run's reading is missing): no front member can be compared with
    it on that mean, which does not make it as good as the front."""
    nan = float("nan")
    table = {key: CONFIGS[key] for key in ("a", "e", "c")} | {"m": ([nan] * 3, 10.0, False, True)}
    assert _near(table) == ["c"]
