"""The study report: tables, intervals, Pareto front, figures and summary, on storages built here.

Each storage is an Optuna journal file written with Optuna directly, with trial user attrs as the
engine's contract has them (`config` = the whole VariantConfig minus the seed, `seeds` = one
dict of metrics per seed), so the report is tested without training anything.
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from optuna.distributions import CategoricalDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from ablate import report_figures as figs
from ablate.pareto import non_dominated, pareto_mask
from ablate.report import (
    _device_item,
    _empty_front_reason,
    _evaluation_items,
    _is_default,
    _late_gain_items,
    _made_by_items,
    _throughput_spread_items,
    all_configs_table,
    front_table,
    main,
    make_figures,
    mark_front,
    summary_blocks,
    unfinished_note,
    write_report,
)
from ablate.report_choices import choice_answers
from ablate.report_groups import NO_BLUR, blur_groups
from ablate.report_questions import Answer, answer_questions, cost_answers, polyphase_answers
from ablate.report_stats import (
    mean_interval,
    paired_difference,
    seed_means,
    t_quantile,
    welch_difference,
)
from ablate.report_summary import Bullets, FigureBlock, Heading, Paragraph, _inline_html
from ablate.report_table import (
    StudyMeta,
    aggregate_over_seeds,
    failed_trials,
    first_run_per_seed,
    load_study,
    mask_runs_at_chance,
    read_meta,
    runs_table,
    study_location,
    varied_fields,
)
from ablate.spec import Constraint, Objective
from ablate.storage import StorageLocation
from ablate.trial_queue import QueueStatus
from ablate.variant_config import VariantConfig, run_identity, unused_fields

optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJECTIVES = [
    {"metric": "accuracy", "direction": "maximize"},
    {"metric": "consistency_circular", "direction": "maximize"},
    {"metric": "train_images_per_s", "direction": "maximize"},
]
LAYERS = ("features.0", "features.3", "features.7", "classifier")


def fake_metrics(config: dict, seed: int, rng: np.random.Generator) -> dict:
    """Plausible metrics: blur raises consistency and flattens the shift curve, costs speed."""
    blur = 0 if config["placement"] == "none" else config["filter_size"] - 1
    grid = "fixed" if config["placement"] == "none" else config["subsample"]
    aps = grid != "fixed"  # exact; APS a bit worse, LPS a bit better
    accuracy = 70 + 0.5 * blur + {"fixed": 0, "aps": -3, "lps": 3}[grid] + rng.normal(0, 1.5)
    wobble = max(0.0, 6 - blur)
    late_gain = 1.0 + 0.3 * blur  # blurred nets are still learning at the end of the budget
    metrics = {
        "seed": seed,
        "accuracy": accuracy,
        "consistency_circular": 100.0 if aps else 80 + 2.5 * blur + rng.normal(0, 1),
        "consistency_crop": 78 + 2 * blur + rng.normal(0, 1),
        "adversarial_circular": 50 + 3 * blur + (8 if config["augment"] else 0) + rng.normal(0, 1),
        "adversarial_crop": 45 + 2 * blur + rng.normal(0, 1),
        "accuracy_vs_shift_circular": [accuracy - wobble * (d % 2) for d in range(5)],
        "accuracy_vs_shift_crop": [accuracy - d - wobble * (d % 2) for d in range(5)],
        "true_prob_vs_shift_circular": [0.7] * 5,
        "true_prob_vs_shift_crop": [0.6] * 5,
        "filter_tv": {layer: 1.2 - 0.05 * blur + rng.normal(0, 0.02) for layer in LAYERS},
        "train_images_per_s": 900 - 60 * blur + rng.normal(0, 10),
        "infer_images_per_s": 3000 - 100 * blur,
        "peak_memory_mb": 120.0 + blur,
        "forward_mflops": 17.4 + 0.05 * blur**2,
        "train_seconds": 12.0,
        "final_train_loss": 0.8,
        "accuracy_during_training": [accuracy - d - late_gain for d in (10, 3, 0)] + [accuracy],
        "last_quarter_gain": late_gain,
        "params": 61_000,
        "n_test": 200,
        "n_eval": 100,
        "chance_accuracy": 10.0,
        "learned": True,
        "device": "cpu",
        "code": "5eed0f5eed0f",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "torch": "2.13.0",
    }
    # Seed noise in what the literal above draws none for (drawn last: the rest stays as it was)
    for kind in ("circular", "crop"):
        curve = metrics[f"accuracy_vs_shift_{kind}"]
        metrics[f"accuracy_vs_shift_{kind}"] = [curve[0], *(curve[1:] + rng.normal(0, 0.3, 4))]
    metrics["infer_images_per_s"] += rng.normal(0, 30)
    metrics["filter_tv_mean"] = float(np.mean(list(metrics["filter_tv"].values())))
    return metrics


def stuck_metrics(metrics: dict) -> dict:
    """`metrics` as a run on the loss plateau measures them: one class named for every image."""
    shifted = {}
    for kind in ("circular", "crop"):
        shifted[f"consistency_{kind}"] = 100.0
        shifted[f"accuracy_vs_shift_{kind}"] = [10.0] * 5  # flat: the answer ignores the image
    return {**metrics, **shifted, "accuracy": 10.0, "learned": False}


def make_study(
    out_dir: Path,
    space: dict[str, list],
    seeds: list[int],
    *,
    base: dict | None = None,
    objectives: list[dict] | None = None,
    constraints: list[dict] | None = None,
    failed: int = 1,
    rng_seed: int = 0,
    stuck: Callable[[dict, int], bool] = lambda config, seed: False,
    made_by: Callable[[dict, int], dict] = lambda config, seed: {},
    baseline: Callable[[dict], bool] = lambda config: config["placement"] == "none",
) -> optuna.Study:
    """A finished study in `out_dir` (journal.log + meta.json): one trial per grid point; the
    runs `stuck(config, seed)` picks did not learn, `made_by(config, seed)` changes what made
    a run (`code`, `commit`, `torch`), and the points `baseline` picks train the baseline's
    network (`baseline_network`), measuring what its runs do."""
    objectives = objectives or OBJECTIVES
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(out_dir / "journal.log")))
    study = optuna.create_study(
        study_name=out_dir.name,
        storage=storage,
        directions=[o["direction"] for o in objectives],
    )
    distributions = {k: CategoricalDistribution(v) for k, v in space.items()}
    for point in itertools.product(*space.values()):
        params = dict(zip(space, point, strict=True))
        config = VariantConfig(**(base or {}), **params).model_dump(exclude={"seed"})
        # one network, one set of numbers: points that build the same network (no blur, any
        # filter) measure the same, as real runs of it would
        network = {**config, "placement": "none"} if baseline(config) else config
        rng = np.random.default_rng([rng_seed, zlib.crc32(run_identity(network).encode())])
        per_seed = [
            {**fake_metrics(network, s, rng), "baseline_network": baseline(config)} for s in seeds
        ]
        per_seed = [stuck_metrics(m) if stuck(config, m["seed"]) else m for m in per_seed]
        per_seed = [{**m, **made_by(config, m["seed"])} for m in per_seed]
        values = [float(np.mean([m[o["metric"]] for m in per_seed])) for o in objectives]
        # as the engine's constraint on the seeds that did not learn
        system_attrs = {
            "constraints:seeds_at_chance<=0": float(sum(not m["learned"] for m in per_seed))
        }
        for bound in constraints or ():  # as the engine's `trial.set_constraint` stores them
            mean = float(np.mean([m[bound["metric"]] for m in per_seed]))
            for key, value in Constraint(**bound).violations(mean).items():
                system_attrs[f"constraints:{key}"] = value
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                values=values,
                user_attrs={"config": config, "seeds": per_seed},
                system_attrs=system_attrs,
            )
        )
    for _ in range(failed):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL,
                user_attrs={"fail_reason": "TrainingDiverged: loss nan at step 12"},
            )
        )
    meta = {"study_name": out_dir.name, "storage": "journal.log", "objectives": objectives}
    if constraints:
        meta["constraints"] = constraints
    (out_dir / "meta.json").write_text(json.dumps(meta))
    return study


FULL_SPACE = {
    "placement": ["none", "paper"],
    "filter_size": [1, 3, 5],
    "padding": ["zeros", "reflect"],
    "augment": [False, True],
}


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out_dir = tmp_path_factory.mktemp("runs") / "full"
    make_study(out_dir, FULL_SPACE, seeds=[0, 1], base={"epochs": 1.0})
    return out_dir, write_report(out_dir)


# --- intervals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (120, 1.9799)]
)
def test_t_quantile_matches_published_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="p="):
        t_quantile(0.3, 5)
    with pytest.raises(ValueError, match="df="):
        t_quantile(0.975, 0)


def test_t_quantile_rejects_the_median() -> None:
    """p = 0.5 is the median, a quantile of zero width: an interval asked for at it is a
    mistake in the caller's confidence, so p must lie strictly above it."""
    with pytest.raises(ValueError, match=r"p=0\.5"):
        t_quantile(0.5, 5)


def test_t_quantile_rejects_certainty() -> None:
    """p = 1 asks for a bound the whole distribution lies below: t has none, so it is refused
    by name rather than searched for."""
    with pytest.raises(ValueError, match=r"p=1\.0 must lie in \(0\.5, 1\)"):
        t_quantile(1.0, 5)


def test_seed_means_average_a_seeds_blocks_not_its_runs() -> None:
    """Seed 0 ran two resnet runs (10, 12) and one vgg run (20): its mean is that of its blocks,
    (11 + 20) / 2 = 15.5, not 14 over its three runs, so a network that ran more runs does not
    outweigh another. A non-finite value is dropped (seed 1 reads 30), and a column every run
    leaves empty (no data folder) is a value its runs share, not a reason to drop them."""
    values = pd.Series([10.0, 12.0, 20.0, 30.0, math.inf])
    blocks = pd.DataFrame({"seed": [0, 0, 0, 1, 1],
                           "model": ["resnet", "resnet", "vgg", "resnet", "resnet"],
                           "data_dir": [None] * 5})  # fmt: skip
    assert seed_means(values, blocks).to_dict() == {0: 15.5, 1: 30.0}
    # a seed whose every value is missing or infinite has no mean: it is left out, not NaN
    unread = pd.concat([values, pd.Series([math.nan, -math.inf], index=[5, 6])])
    seed_2 = pd.DataFrame({"seed": [2, 2], "model": ["resnet"] * 2, "data_dir": [None] * 2},
                          index=[5, 6])  # fmt: skip
    two_more = pd.concat([blocks, seed_2])
    assert seed_means(unread, two_more).to_dict() == {0: 15.5, 1: 30.0}


def test_a_non_finite_run_neither_pairs_its_seed_nor_counts() -> None:
    """Seed 2's treated run read inf: it is dropped before pairing, so seeds 0 and 1 alone pair,
    differences 1 and 2: 1.5 ± t(0.975, 1) · √0.5 / √2 = 1.5 ± 6.3531, over two runs a side
    (not a third seed that has only a control run)."""
    treated = pd.Series([11.0, 12.0, math.inf])
    control = pd.Series([10.0, 10.0, 10.0], index=[3, 4, 5])
    diff = paired_difference(treated, control, pd.DataFrame({"seed": [0, 1, 2] * 2}))
    half = 12.706205 * 0.5
    assert (diff.estimate, diff.seeds, diff.n_treated, diff.n_control) == (1.5, 2, 2, 2)
    assert (diff.low, diff.high) == pytest.approx((1.5 - half, 1.5 + half), abs=1e-5)


def test_an_exact_difference_spans_every_treated_minus_control_pair() -> None:
    """FLOPs of two treated configurations (3, 5) against two control ones (1, 2): the
    differences run from 3 - 2 = 1 to 5 - 1 = 4 around the estimate 4 - 1.5 = 2.5. Where
    each side repeats one value the bounds are the estimate itself, to the last bit, even
    where the mean of 0.1 thrice rounds to 0.10000000000000002."""
    spread = welch_difference([3.0, 5.0], [1.0, 2.0], deterministic=True)
    assert (spread.estimate, spread.low, spread.high) == (2.5, 1.0, 4.0)
    tied = welch_difference([0.1, 0.1, 0.1], [0.0, 0.0], deterministic=True)
    assert tied.low == tied.high == tied.estimate > 0


@pytest.mark.parametrize("deterministic", [False, True])
def test_a_side_without_a_finite_value_gives_no_difference(deterministic: bool) -> None:
    """Every treated reading is missing or infinite: there is nothing to subtract from, exact
    measure or not, so the difference and its bounds are NaN, and the control side keeps
    its mean and count."""
    diff = welch_difference([math.nan, math.inf], [17.4, 17.6], deterministic=deterministic)
    assert all(math.isnan(v) for v in (diff.estimate, diff.low, diff.high, diff.treated_mean))
    assert (diff.n_treated, diff.n_control) == (0, 2)
    assert diff.control_mean == pytest.approx(17.5) and not diff.excludes_zero


def test_mean_interval_drops_nan_and_is_nan_for_one_value() -> None:
    low, high = mean_interval([80.0, 82.0, math.nan, 84.0])
    half = 4.302653 * 2.0 / math.sqrt(3)
    assert (low, high) == pytest.approx((82 - half, 82 + half), abs=1e-5)
    assert all(math.isnan(v) for v in mean_interval([5.0]))
    assert all(math.isnan(v) for v in mean_interval([5.0, 5.0]))  # a tie bounds nothing
    assert mean_interval([5.0, 5.0], deterministic=True) == (5.0, 5.0)
    assert mean_interval([5.0], deterministic=True) == (5.0, 5.0)


def test_paired_difference_by_hand() -> None:
    """Two blurred configurations and the baseline on seeds 0-2, a seed's luck (+4, 0, -4)
    shared by all its runs: per seed the blurred mean minus the baseline, 1.5, 2.5 and 2.0,
    gives 2.0 ± 4.302653 · 0.5 / √3. Welch over the runs counts the six blurred runs as six
    samples of a luck they share three ways, and the luck as noise: it cannot tell 2.0 from
    zero, while the seeds' differences can."""
    luck = pd.Series([4.0, 0.0, -4.0] * 3)
    blocks = pd.DataFrame({"seed": [0, 1, 2] * 3})
    values = luck + pd.Series([11.0, 12.0, 12.5, 12.0, 13.0, 12.5, 10.0, 10.0, 10.5])
    treated, control = values[:6], values[6:]
    diff = paired_difference(treated, control, blocks)
    half = 4.302653 * 0.5 / math.sqrt(3)
    assert (diff.estimate, diff.seeds, diff.n_treated, diff.n_control) == (2.0, 3, 6, 3)
    assert (diff.low, diff.high) == pytest.approx((2.0 - half, 2.0 + half), abs=1e-5)
    assert (diff.treated_mean, diff.control_mean) == pytest.approx((73 / 6, 61 / 6))
    assert diff.excludes_zero and not welch_difference(treated, control).excludes_zero
    # a seed's runs averaged first: seed 2 losing a blurred run changes no seed's weight
    uneven = paired_difference(treated.drop(5), control, blocks)
    assert uneven.estimate == pytest.approx(2.0) and uneven.n_treated == 5
    assert welch_difference(treated.drop(5), control).estimate == pytest.approx(12.9 - 61 / 6)
    # seeds that ran on one side only pair nothing: fewer than two pairs, Welch over runs
    apart = paired_difference(treated, control, pd.DataFrame({"seed": [0, 1, 2] * 2 + [3, 4, 5]}))
    assert apart == welch_difference(treated, control) and apart.seeds == 0
    assert paired_difference(treated, control, None) == welch_difference(treated, control)
    # runs pair within their network: vgg's blurred runs have no baseline, so they are left out
    by_model = blocks.assign(model=["resnet"] * 3 + ["vgg"] * 3 + ["resnet"] * 3)
    within = paired_difference(treated, control, by_model)
    assert (within.estimate, within.n_treated, within.n_control) == pytest.approx((5 / 3, 3, 3))
    # a measure every run of a configuration repeats is exact: its range, not paired
    exact = paired_difference(pd.Series([17.5, 17.5]), pd.Series([17.4, 17.4], index=[2, 3]),
                              pd.DataFrame({"seed": [0, 1] * 2}), deterministic=True)  # fmt: skip
    assert (exact.low, exact.high, exact.seeds) == pytest.approx((0.1, 0.1, 0))


def test_welch_difference_by_hand() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(2, 1, 7), rng.normal(0, 3, 5)
    va, vb = a.var(ddof=1) / 7, b.var(ddof=1) / 5
    df = (va + vb) ** 2 / (va**2 / 6 + vb**2 / 4)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    diff = welch_difference(a, b)
    assert diff.estimate == pytest.approx(a.mean() - b.mean())
    assert (diff.low, diff.high) == pytest.approx((diff.estimate - half, diff.estimate + half))
    assert (diff.n_treated, diff.n_control) == (7, 5)
    assert math.isnan(welch_difference([1.0], [2.0, 3.0]).low)
    exact = welch_difference([17.5, 17.5, 17.5], [17.4, 17.4], deterministic=True)  # FLOPs
    assert (exact.low, exact.high) == (exact.estimate, exact.estimate) and exact.excludes_zero
    same = welch_difference([17.5, 17.5, 17.5], [17.5, 17.5], deterministic=True)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero
    one_seed = welch_difference([17.5], [17.4], deterministic=True)  # one run each: exact
    assert (one_seed.low, one_seed.high) == (one_seed.estimate,) * 2 and one_seed.excludes_zero
    # Two blurred configurations of one run each against one baseline run: the spread is the
    # configurations', not seed noise, so the bounds are the exact range of the differences
    # (+0.1 to +1.1), not a t-interval on one degree of freedom (-5.75 to +6.95), which had
    # called blur's extra arithmetic inconclusive although every blurred network has more.
    spread = welch_difference([17.5, 18.5], [17.4], deterministic=True)
    assert (spread.low, spread.high) == pytest.approx((0.1, 1.1)) and spread.excludes_zero
    tied = welch_difference([5.0, 5.0], [3.0, 3.0])  # seeds' values that happen to tie
    assert tied.estimate == 2.0 and math.isnan(tied.low) and not tied.excludes_zero


# --- tables ----------------------------------------------------------------------------------


def test_aggregation_over_seeds_on_hand_made_table() -> None:
    runs = pd.DataFrame(
        {
            "trial": [0, 0, 0, 1, 2, 3],
            "filter_size": [3, 3, 3, 5, 1, 3],
            "padding": ["zeros"] * 6,
            "config_key": ["a", "a", "a", "b", "c", "a"],
            "seed": [0, 1, 2, 0, 0, 3],
            "accuracy": [80.0, 82.0, 84.0, 70.0, 60.0, 86.0],
            "peak_memory_mb": [1.0, 1.0, 1.0, 2.0, np.nan, 1.0],
            "learned": [True, True, True, True, False, True],
        }
    )
    configs = aggregate_over_seeds(runs, ["filter_size", "padding"]).set_index("config_key")
    assert not [c for c in configs if c.startswith("learned")]  # a verdict, not a measure
    # Config "a" ran in trials 0 and 3: pooled over its four seeds.
    a = configs.loc["a"]
    assert a["n_seeds"] == 4 and a["trials"] == "0,3"
    sd = np.std([80, 82, 84, 86], ddof=1)
    half = 3.182446 * sd / 2
    assert a["accuracy_mean"] == pytest.approx(83.0)
    assert (a["accuracy_ci95_low"], a["accuracy_ci95_high"]) == pytest.approx(
        (83 - half, 83 + half), abs=1e-5
    )
    b = configs.loc["b"]
    assert b["accuracy_mean"] == 70.0 and math.isnan(b["accuracy_ci95_low"])
    assert math.isnan(configs.loc["c", "peak_memory_mb_mean"])
    assert "seed_mean" not in configs and "trial_mean" not in configs


def test_intervals_stop_at_the_metrics_bounds_and_only_a_deterministic_tie_is_exact() -> None:
    """Two seeds give t(0.975, 1) = 12.7: a raw interval of 99 and 100 % reaches 105 %, one of
    10 and 20 images/s goes below 0. Seeds that tie bound nothing, unless every run of the
    configuration measures the same (FLOPs), which one run then gives exactly."""
    runs = pd.DataFrame(
        {
            "trial": [0, 0, 1, 1, 2],
            "filter_size": [3, 3, 5, 5, 7],
            "config_key": ["high", "high", "low", "low", "one"],
            "seed": [0, 1, 0, 1, 0],
            "accuracy": [99.0, 100.0, 0.0, 2.0, 50.0],
            "consistency_crop": [100.0, 98.0, 1.0, 0.0, 50.0],
            "train_images_per_s": [10.0, 20.0, 10.0, 20.0, 10.0],
            "unbounded": [10.0, 20.0, 10.0, 20.0, 10.0],
            "adversarial_crop": [10.0, 10.0, 10.0, 10.0, 10.0],
            "forward_mflops": [17.4, 17.4, 17.6, 17.6, 17.8],
        }
    )
    configs = aggregate_over_seeds(runs, ["filter_size"]).set_index("config_key")
    high, low, one = configs.loc["high"], configs.loc["low"], configs.loc["one"]
    half = 12.706205 * np.std([10.0, 20.0], ddof=1) / np.sqrt(2)
    assert high["unbounded_ci95_low"] == pytest.approx(15 - half) and 15 - half < 0
    assert high["train_images_per_s_ci95_low"] == 0.0
    assert high["train_images_per_s_ci95_high"] == pytest.approx(15 + half)
    for metric in ("accuracy", "consistency_crop"):
        assert high[f"{metric}_ci95_high"] == 100.0 and 0 < high[f"{metric}_ci95_low"] < 99
        assert low[f"{metric}_ci95_low"] == 0.0 and 1 < low[f"{metric}_ci95_high"] < 100
    assert np.isnan(high["adversarial_crop_ci95_low"]) and high["adversarial_crop_mean"] == 10
    assert (low["forward_mflops_ci95_low"], low["forward_mflops_ci95_high"]) == (17.6, 17.6)
    assert (one["forward_mflops_ci95_low"], one["forward_mflops_ci95_high"]) == (17.8, 17.8)
    assert np.isnan(one["accuracy_ci95_low"])


def test_runs_table_has_one_row_per_trial_and_seed(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", {"filter_size": [1, 4]}, seeds=[0, 1, 2])
    runs, config_cols = runs_table(study)
    assert len(runs) == 6 and sorted(runs["seed"].unique()) == [0, 1, 2]
    assert set(VariantConfig.model_fields) - {"seed"} == set(config_cols)
    # The metric `device` clashes with the config field `device`: it is renamed.
    assert (runs["device"] == "auto").all() and (runs["device_metric"] == "cpu").all()


def test_runs_on_several_devices_or_cpu_thread_counts_are_said_not_to_be_alike() -> None:
    """A CPU's thread count is part of its name (a study resumed or grown with another
    `--workers` mixes them): the report counts each device's runs and warns."""
    assert _device_item(pd.Series(["cpu (2 threads)"] * 3)) == "device: cpu (2 threads)"
    mixed = _device_item(pd.Series(["cpu (2 threads)", "cpu (1 thread)", "cpu (2 threads)"]))
    assert mixed.startswith("devices: cpu (2 threads): 2 runs; cpu (1 thread): 1 run;")
    assert "as if alike" in mixed and "so may their other metrics" in mixed


def test_a_point_drawn_again_adds_no_seeds(tmp_path: Path) -> None:
    """A random or TPE sampler can run a point twice: its second trial repeats seeds already
    run, which are no new samples of the spread over seeds, so the first trial's runs count."""
    out_dir = tmp_path / "again"
    study = make_study(out_dir, {"placement": ["none", "paper"]}, seeds=[0, 1], failed=0)
    first = study.get_trials()[1]
    repeat = [{**m, "accuracy": m["accuracy"] + 1} for m in first.user_attrs["seeds"]]
    study.add_trial(
        optuna.trial.create_trial(
            params=first.params,
            distributions=first.distributions,
            values=first.values,
            user_attrs={"config": first.user_attrs["config"], "seeds": repeat},
            system_attrs=first.system_attrs,
        )
    )
    write_report(out_dir)
    configs = pd.read_csv(out_dir / "configs.csv").set_index("placement")
    assert configs.loc["paper", "n_seeds"] == 2 and str(configs.loc["paper", "trials"]) == "1"
    accuracy = [m["accuracy"] for m in first.user_attrs["seeds"]]
    assert configs.loc["paper", "accuracy_mean"] == pytest.approx(np.mean(accuracy))
    assert len(pd.read_csv(out_dir / "runs.csv")) == 6  # every run is kept on file
    summary = (out_dir / "summary.md").read_text()
    assert "runs left out: 2, each a seed of a configuration already run (a point" in summary
    assert "finished trials: 3;" in summary and "runs (configuration × seed): 4" in summary


def test_read_meta_rejects_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist or is not a folder"):
        read_meta(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"meta\.json"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(
        json.dumps({"study_name": "x", "objectives": [{"metric": "accuracy", "direction": "up"}]})
    )
    with pytest.raises(ValueError, match=r"objectives\[0\]\.direction: .* \(got 'up'\)"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text('{"study_name": "x", ')  # cut short
    with pytest.raises(ValueError, match=r"meta\.json: not valid JSON \(.*line 1"):
        read_meta(tmp_path)


def test_read_meta_needs_the_objectives_and_defaults_what_an_older_meta_lacks(
    tmp_path: Path,
) -> None:
    """A meta.json without objectives is no study's; one from before constraints and retries
    existed has none of the first and the spec's default of the second."""
    (tmp_path / "meta.json").write_text(json.dumps({"study_name": "x"}))
    with pytest.raises(ValueError, match=r"missing field 'objectives'"):
        read_meta(tmp_path)
    objectives = [{"metric": "accuracy", "direction": "maximize"}]
    (tmp_path / "meta.json").write_text(json.dumps({"study_name": "x", "objectives": objectives}))
    meta = read_meta(tmp_path)
    assert (meta.constraints, meta.max_retries) == ((), 2)


def test_a_finished_trial_without_seeds_makes_no_runs() -> None:
    """A trial that finished with a config but no per-seed results (or the other way round)
    adds no rows: only a trial with both is runs."""
    study = optuna.create_study()
    config = {"placement": "none", "filter_size": 1}
    trials = [
        {"config": config},
        {"seeds": [{"seed": 0, "accuracy": 50.0}]},
        {"config": config, "seeds": [{"seed": 0, "accuracy": 60.0}]},
    ]
    for attrs in trials:
        study.add_trial(optuna.trial.create_trial(value=0.0, user_attrs=attrs))
    runs, config_cols = runs_table(study)
    assert runs["trial"].tolist() == [2] and runs["accuracy"].tolist() == [60.0]
    assert config_cols == ["placement", "filter_size"]


def test_a_pruned_trial_is_listed_with_the_failed_ones_and_optunas_reason_kept() -> None:
    """A pruned trial did not finish either; where the engine set no `fail_reason`, the one
    Optuna records (a trial that raised) is shown."""
    study = optuna.create_study()
    config = {"placement": "paper", "filter_size": 3}
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, user_attrs={"config": config}
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            user_attrs={"config": config},
            system_attrs={"fail_reason": "ValueError: boom"},
        )
    )
    table = failed_trials(study)
    assert table[["trial", "placement", "filter_size", "state", "fail_reason"]].values.tolist() == [
        [0, "paper", 3, "PRUNED", ""],
        [1, "paper", 3, "FAIL", "ValueError: boom"],
    ]


def test_every_measure_a_network_at_chance_scores_for_no_merit_is_blanked() -> None:
    """Consistency, accuracy and the true class's probability against the shift are blanked
    for a run at chance (a curve to None, a number to NaN); clean accuracy stays."""
    curve = [10.0, 10.0]
    runs = pd.DataFrame(
        {
            "learned": [True, False],
            "accuracy": [91.0, 10.0],
            "consistency_crop": [90.0, 100.0],
            "accuracy_vs_shift_circular": [curve, curve],
            "true_prob_vs_shift_crop": [curve, curve],
        }
    )
    masked = mask_runs_at_chance(runs)
    assert masked["accuracy"].tolist() == [91.0, 10.0]
    assert masked["consistency_crop"].isna().tolist() == [False, True]
    for column in ("accuracy_vs_shift_circular", "true_prob_vs_shift_crop"):
        assert masked[column].tolist() == [curve, None]


def test_runs_of_a_study_that_never_recorded_learned_count_as_learned() -> None:
    """Studies made before `learned` existed keep their consistency and count no run at chance,
    as does a run of a resumed study that has no `learned` beside runs that have it."""
    runs = pd.DataFrame({"accuracy": [91.0, 10.0], "consistency_circular": [90.0, 99.0]})
    pd.testing.assert_frame_equal(mask_runs_at_chance(runs), runs)
    mixed = runs.assign(learned=[None, False])
    assert mask_runs_at_chance(mixed)["consistency_circular"].isna().tolist() == [False, True]


# --- Pareto front ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_non_dominated_agrees_with_optuna_best_trials_on_random_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    directions = ["maximize", "minimize", "maximize"]
    # Coarse integers make ties and duplicates likely.
    values = rng.integers(0, 4, size=(40, 3)).astype(float)
    study = optuna.create_study(directions=directions)
    for row in values:
        study.add_trial(optuna.trial.create_trial(values=list(row)))
    expected = {t.number for t in study.best_trials}
    assert set(np.flatnonzero(non_dominated(values, directions))) == expected


def test_non_dominated_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="direction='up'"):
        non_dominated(np.zeros((2, 1)), ["up"])
    with pytest.raises(ValueError, match="one column per direction"):
        non_dominated(np.zeros((2, 2)), ["maximize"])


def test_pareto_mask_reads_each_columns_direction_and_keeps_non_finite_rows_off() -> None:
    """Accuracy up, FLOPs down: (85, 15) loses to (90, 10), and would beat it were the
    directions swapped. A row with a NaN or infinite mean is on no front and beats nothing."""
    nan, inf = math.nan, math.inf
    table = pd.DataFrame(
        {
            "accuracy": [90.0, 80.0, 95.0, 85.0, nan, 99.0, inf],
            "mflops": [10.0, 5.0, 20.0, 15.0, 1.0, -inf, 1.0],
        }
    )
    front = pareto_mask(table, ["accuracy", "mflops"], ["maximize", "minimize"])
    assert front.tolist() == [True, True, True, False, False, False, False]


def _front_trials(study: optuna.Study, out_dir: Path) -> set[int]:
    """The trials of the front's configurations (a configuration several trials built lists
    them all, as `best_trials` does: they measured the same)."""
    meta = read_meta(out_dir)
    runs, config_cols = runs_table(study)
    configs = mark_front(aggregate_over_seeds(runs, config_cols), meta)
    return {int(t) for ts in configs.loc[configs["pareto"], "trials"] for t in ts.split(",")}


def test_front_on_aggregated_table_agrees_with_best_trials(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", FULL_SPACE, seeds=[0, 1], rng_seed=5)
    assert _front_trials(study, tmp_path / "s") == {t.number for t in study.best_trials}


@pytest.mark.parametrize(
    "constraints",
    [
        [{"metric": "accuracy", "min": 71.0}],
        [{"metric": "forward_mflops", "max": 17.6}, {"metric": "accuracy", "min": 70.0}],
    ],
)
def test_front_with_constraints_agrees_with_best_trials(
    tmp_path: Path, constraints: list[dict]
) -> None:
    out_dir = tmp_path / "c"
    study = make_study(out_dir, FULL_SPACE, seeds=[0, 1], constraints=constraints)
    expected = {t.number for t in study.best_trials}
    assert expected and _front_trials(study, out_dir) == expected
    everything = {t.number for t in make_study(tmp_path / "u", FULL_SPACE, [0, 1]).best_trials}
    assert expected != everything  # the bounds rule out part of the front
    meta = read_meta(out_dir)
    runs, config_cols = runs_table(study)
    configs = mark_front(aggregate_over_seeds(first_run_per_seed(runs), config_cols), meta)
    cells = all_configs_table(configs, ["placement"], meta)["front"]
    assert (cells == "off: a constraint does not hold").sum() == (~configs["feasible"]).sum() > 0


def test_the_table_of_every_configuration_reads_best_first_with_what_its_seeds_measured() -> None:
    """Best accuracy first, a configuration without one last; a mean with its interval, one
    without (one seed) alone, `n/a` where no seed measured it, and `(n = k)` where fewer seeds
    than the row's did; the front column says why c cannot be on the front."""
    nan = math.nan
    configs = pd.DataFrame({
        "config": ["c", "b", "a"], "n_seeds": [2, 1, 3], "trials": ["2", "1", "0"],
        "accuracy_mean": [nan, 80.0, 90.0], "accuracy_ci95_low": [nan, nan, 88.5],
        "accuracy_ci95_high": [nan, nan, 91.5], "accuracy_n": [0, 1, 3],
        "forward_mflops_mean": [12.0, 11.0, 10.0], "forward_mflops_ci95_low": [12.0, 11.0, 10.0],
        "forward_mflops_ci95_high": [12.0, 11.0, 10.0], "forward_mflops_n": [1, 1, 3],
        "pareto": [False, False, True], "feasible": [False, True, True],
        "seeds_at_chance": [1, 0, 0], "near_front": [False, False, False],
    })  # fmt: skip
    objectives = (Objective(metric="accuracy", direction="maximize"),
                  Objective(metric="forward_mflops", direction="minimize"))  # fmt: skip
    table = all_configs_table(configs, ["config"], StudyMeta("s", None, objectives))
    assert table.to_dict("records") == [
        {"front": "✓", "config": "a", "accuracy ↑": "90 [88.5, 91.5]",
         "forward_mflops ↓": "10 [10, 10]", "seeds": 3, "trial numbers": "0"},
        {"front": "", "config": "b", "accuracy ↑": "80", "forward_mflops ↓": "11 [11, 11]",
         "seeds": 1, "trial numbers": "1"},
        {"front": "off: 1 of 2 seeds did not learn", "config": "c", "accuracy ↑": "n/a",
         "forward_mflops ↓": "12 [12, 12] (n = 1)", "seeds": 2, "trial numbers": "2"},
    ]  # fmt: skip
    assert list(table.columns)[:2] == ["front", "config"]
    # a table not marked (no front, feasibility or near-front columns) marks nothing
    unmarked = configs.drop(columns=["pareto", "feasible", "near_front"])
    meta = StudyMeta("s", None, objectives)
    assert list(front_table(configs, ["config"], meta)["config"]) == ["a"]
    assert list(all_configs_table(unmarked, ["config"], meta)["front"]) == [""] * 3
    assert front_table(unmarked, ["config"], meta).empty


def test_the_front_is_of_feasible_configurations_and_an_unrecorded_bound_holds_for_none() -> None:
    """c is the most accurate, but a seed of it did not learn; b misses accuracy >= 80: a alone
    is feasible and on the front. A bound on a metric the runs do not record cannot be shown
    to hold, so it leaves no configuration feasible and the front empty; an objective they do
    not record leaves the front empty too."""
    configs = pd.DataFrame({"accuracy_mean": [90.0, 70.0, 95.0], "seeds_at_chance": [0, 0, 1]},
                           index=["a", "b", "c"])  # fmt: skip
    objectives = (Objective(metric="accuracy", direction="maximize"),)
    at_least_80 = StudyMeta("s", None, objectives, (Constraint(metric="accuracy", min=80.0),))
    marked = mark_front(configs, at_least_80)
    assert marked["feasible"].to_dict() == {"a": True, "b": False, "c": False}
    assert marked["pareto"].to_dict() == {"a": True, "b": False, "c": False}
    unrecorded = StudyMeta("s", None, objectives, (Constraint(metric="peak_memory_mb", max=1e3),))
    marked = mark_front(configs, unrecorded)
    assert not marked["feasible"].any() and not marked["pareto"].any()
    # an objective the runs do not record: no front, though a and b stay feasible
    unmeasured = (*objectives, Objective(metric="consistency_crop", direction="maximize"))
    marked = mark_front(configs, StudyMeta("s", None, unmeasured))
    assert marked["feasible"].sum() == 2 and not marked["pareto"].any()


def test_runs_at_chance_are_listed_left_out_of_consistency_and_off_the_front(
    tmp_path: Path,
) -> None:
    """A run on the loss plateau is 100 % consistent for no merit: unmasked, its configuration
    would dominate on consistency; the report keeps it visible but out of every judgement."""
    out_dir = tmp_path / "stuck"
    space = {"placement": ["none", "paper"], "augment": [False, True]}

    def stuck(config: dict, seed: int) -> bool:
        if config["placement"] == "paper" and config["augment"]:
            return True  # both seeds
        return config["placement"] == "none" and not config["augment"] and seed == 1

    study = make_study(out_dir, space, seeds=[0, 1], objectives=OBJECTIVES[:2], stuck=stuck)
    raw_runs, config_cols = runs_table(study)
    raw = aggregate_over_seeds(raw_runs, config_cols)
    all_stuck = (raw["placement"] == "paper") & raw["augment"]
    raw_front = pareto_mask(raw, ["accuracy_mean", "consistency_circular_mean"], ["maximize"] * 2)
    assert raw_front[all_stuck].all()  # what the mask prevents

    write_report(out_dir)
    configs = pd.read_csv(out_dir / "configs.csv").set_index("trials")  # one trial each
    assert configs["seeds_at_chance"].to_dict() == {0: 1, 1: 0, 2: 0, 3: 2}
    assert math.isnan(configs.loc[3, "consistency_circular_mean"])
    runs = pd.read_csv(out_dir / "runs.csv")  # every value as measured
    learned_seed = runs[(runs["trial"] == 0) & (runs["seed"] == 0)]
    assert configs.loc[0, "consistency_circular_mean"] == pytest.approx(
        learned_seed["consistency_circular"].item()
    )
    assert (runs.loc[~runs["learned"], "consistency_circular"] == 100.0).all()
    assert configs["feasible"].to_dict() == {0: False, 1: True, 2: True, 3: False}
    assert _front_trials(study, out_dir) == {t.number for t in study.best_trials} <= {1, 2}

    summary = (out_dir / "summary.md").read_text()
    assert "runs that did not learn (accuracy not above chance): 3" in summary
    section = summary.split("## Runs that did not learn")[1].split("\n## ")[0]
    assert "not above chance" in section
    # RQ2 (consistency) and RQ3 (shift curve) count the learned runs only; RQ4 every run
    counted = {"RQ2": "2 blurred vs 3", "RQ3": "2 blurred vs 3", "RQ4": "4 blurred vs 4"}
    for key, runs in counted.items():
        line = next(line for line in summary.splitlines() if f"**{key} — " in line)
        assert f"n = {runs} no-blur runs" in line, line
    assert section.count("\n| 0 | 1 |") == 1 and section.count("\n| 3 |") == 2
    # the table of every configuration says why two cannot be on the front
    table = summary.split("## All configurations\n", 1)[1].split("\n## ", 1)[0]
    assert table.count("| off: 1 of 2 seeds did not learn |") == 1
    assert table.count("| off: 2 of 2 seeds did not learn |") == 1


def test_a_report_of_an_unfinished_study_says_so_first(tmp_path: Path) -> None:
    """A report written while trials still wait or run (a study stopped part-way, or read as
    it runs) is from the finished trials only, and says so before anything else; a finished
    study's does not."""
    study = make_study(tmp_path / "s", {"filter_size": [3, 5]}, seeds=[0, 1])
    write_report(tmp_path / "s")
    assert "Not finished" not in (tmp_path / "s" / "summary.md").read_text()
    study.enqueue_trial({"filter_size": 3})
    study.enqueue_trial({"filter_size": 5})
    study.ask()  # claimed: running
    write_report(tmp_path / "s")
    summary = (tmp_path / "s" / "summary.md").read_text()
    first = summary.split("\n\n")[1]  # after the title
    assert first.startswith("**Not finished:** design points 1 running, 1 waiting. Everything")


def test_an_unfinished_note_counts_failed_points_a_resume_runs_again(tmp_path: Path) -> None:
    """A failed point with a retry left (a stop between its failure and its retry, or missing
    data) is run by a resume, so the study is not finished; one out of retries is."""
    study = make_study(tmp_path / "s", {"filter_size": [3, 5]}, seeds=[0])
    meta_path = tmp_path / "s" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "max_retries": 1}))
    study.enqueue_trial({"filter_size": 3}, user_attrs={"slot": 7, "attempt": 0})
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    write_report(tmp_path / "s")
    first = (tmp_path / "s" / "summary.md").read_text().split("\n\n")[1]
    assert first.startswith("**Not finished:** design points 1 failed with a retry left."), first
    study.enqueue_trial({"filter_size": 3}, user_attrs={"slot": 7, "attempt": 1})
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    write_report(tmp_path / "s")
    assert "Not finished" not in (tmp_path / "s" / "summary.md").read_text()


def test_the_summary_says_what_made_the_runs(tmp_path: Path) -> None:
    """One version of the code and torch in a line; several, each with its runs, and a warning
    that the report compares them as if alike (a study grown with other code)."""
    make_study(tmp_path / "a", {"filter_size": [3, 5]}, seeds=[0, 1])
    write_report(tmp_path / "a")
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "- made by: code 5eed0f5eed0f (commit 0123456789ab), torch 2.13.0\n" in summary
    make_study(
        tmp_path / "b",
        {"filter_size": [3, 5]},
        seeds=[0, 1],
        made_by=lambda config, seed: {"code": "a11ce0000000"} if seed == 1 else {},
    )
    write_report(tmp_path / "b")
    summary = (tmp_path / "b" / "summary.md").read_text()
    assert (
        "- made by 2 versions of the code or torch, whose runs this report compares as if alike:"
        " code 5eed0f5eed0f (commit 0123456789ab), torch 2.13.0: 2 runs; code a11ce0000000"
    ) in summary
    make_study(
        tmp_path / "c",
        {"filter_size": [3, 5]},
        seeds=[0, 1],
        made_by=lambda config, seed: {"commit": "fedcba9876543210-dirty"} if seed == 1 else {},
    )
    write_report(tmp_path / "c")  # another commit of the same sources: one version
    summary = (tmp_path / "c" / "summary.md").read_text()
    assert (
        "- made by: code 5eed0f5eed0f (commit 0123456789ab, fedcba987654-dirty), torch 2.13.0\n"
    ) in summary


def test_an_empty_front_says_why(tmp_path: Path) -> None:
    space = {"filter_size": [3, 5, 7]}
    make_study(tmp_path / "a", space, seeds=[0, 1], stuck=lambda config, seed: seed == 1)
    write_report(tmp_path / "a")
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "none is feasible: 3 of 3 have a run that did not learn." in summary
    # two seeds a row, one of which measured consistency: its mean says so
    rows = [line for line in summary.splitlines() if line.endswith(" | 2 | 0 |")]
    assert len(rows) == 1 and rows[0].split(" | ")[3].endswith(" (n = 1)"), rows
    configs = pd.read_csv(tmp_path / "a" / "configs.csv")
    assert (configs["consistency_circular_n"] == 1).all() and (configs["accuracy_n"] == 2).all()
    make_study(
        tmp_path / "b",
        space,
        seeds=[0, 1],
        constraints=[{"metric": "accuracy", "min": 99.0}],
        stuck=lambda config, seed: config["filter_size"] == 3,
    )
    write_report(tmp_path / "b")
    assert (
        "none is feasible: 1 of 3 have a run that did not learn and 2 miss the constraints."
        in (tmp_path / "b" / "summary.md").read_text()
    )


# --- the whole report ------------------------------------------------------------------------

FIGURE_NAMES = (
    "accuracy_vs_consistency",
    "throughput_vs_accuracy",
    "metrics_vs_filter_size",
    "accuracy_vs_shift",
    "accuracy_during_training",
    "filter_tv",
    "adversarial_accuracy",
    "parameter_importance",
)


def test_report_writes_every_file(full_report: tuple[Path, list[Path]]) -> None:
    out_dir, written = full_report
    expected = {
        out_dir / name
        for name in (
            "runs.csv",
            "runs.parquet",
            "configs.csv",
            "configs.parquet",
            "pareto_front.csv",
            "pareto_front.parquet",
            "summary.md",
            "report.html",
        )
    } | {out_dir / "figures" / f"{n}.{ext}" for n in FIGURE_NAMES for ext in ("png", "svg")}
    assert expected == set(written)
    assert all(p.stat().st_size > 0 for p in written)
    runs = pd.read_parquet(out_dir / "runs.parquet")
    assert len(runs) == 2 * 2 * 3 * 2 * 2  # configurations × seeds
    assert json.loads(runs["accuracy_vs_shift_circular"].iloc[0])[0] == pytest.approx(
        runs["accuracy"].iloc[0]
    )
    # 24 points, 12 networks: without blur (or with one tap) the filter settings are unused
    assert len(pd.read_csv(out_dir / "configs.csv")) == 12


def test_summary_answers_every_question(full_report: tuple[Path, list[Path]]) -> None:
    out_dir, _ = full_report
    summary = (out_dir / "summary.md").read_text()
    for key in ("RQ1", "RQ2", "RQ2-crop", "RQ3", "RQ3-crop", "RQ4", "RQ4-crop", "RQ5", "C1", "C2",
                "C3"):
        line = next(line for line in summary.splitlines() if f"**{key} — " in line)
        # FLOPs vary by configuration only: their range, not a t-interval over repeated seeds
        bounds = "exact per configuration" if key == "C3" else "95 % CI"
        assert bounds in line and "n = " in line, line
    dashboard = f"`optuna-dashboard {(out_dir / 'journal.log').resolve()}`"
    assert dashboard in summary and "TrainingDiverged" in summary
    assert "runs that did not learn (accuracy not above chance): 0" in summary
    assert "\n- fixed: epochs=1.0\n- at their defaults: dataset=synthetic," in summary
    assert "epochs=6.0" not in summary  # the default, which the study does not use
    assert (
        "images per run: 200 test images for accuracy; the first 100 of them for the shift "
        "metrics, each at 81 offsets ([-S, S]², S = 4) for consistency and the adversary and at "
        "9 diagonal offsets for accuracy vs shift"
    ) in summary
    assert "## Runs that did not learn" not in summary
    # the fake gains 1.0 points without blur (8 runs of 4 networks: none, or Bin-1, each with
    # and without augmentation) and 1.6 / 2.2 with Bin-3 / 5 (8 runs each)
    assert "last quarter of training: median 1.60 points, most 2.20" in summary
    assert "Adaptive polyphase sampling" not in summary  # the study did not vary it
    assert (  # the caption of the figure that draws the runs without blur says how
        "(the answers compare within each seed). The black dotted line is the mean over seeds "
        "of the runs without blur (placement none, or sites 0), the grey band its 95 % "
        "t-interval.*"
    ) in summary
    # every configuration in one table, best accuracy first, the front's marked
    table = summary.split("## All configurations\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    configs = pd.read_csv(out_dir / "configs.csv")
    assert len(rows) == len(configs) == 12
    assert sum("✓" in row.split("|")[1] for row in rows) == int(configs["pareto"].sum())
    best = configs["accuracy_mean"].max()
    assert f"{best:.4g} [" in rows[0]
    page = (out_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURE_NAMES)
    assert 'src="figures/' not in page


def test_questions_read_the_effect_direction(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", FULL_SPACE, seeds=[0, 1, 2])
    runs, _ = runs_table(study)
    answers = {a.key: a for a in answer_questions(runs)}
    # The fake metrics make blur smoother (lower TV), more consistent, flatter, more robust.
    assert answers["RQ1"].difference.high < 0 and answers["RQ1"].sentence.startswith("Yes")
    assert answers["RQ2"].difference.low > 0 and answers["RQ2"].sentence.startswith("Yes")
    assert answers["RQ3"].difference.high < 0 and answers["RQ3"].sentence.startswith("Yes")
    assert answers["RQ4"].difference.low > 0 and "with augmentation" in answers["RQ4"].sentence


def test_an_inconclusive_answer_over_two_runs_suggests_more_seeds(tmp_path: Path) -> None:
    space = {"placement": ["none", "paper"], "filter_size": [3, 5]}
    runs, _ = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))
    # The grid repeats the baseline per filter size: keep one of them, 2 runs.
    runs = runs[(runs["placement"] != "none") | (runs["filter_size"] == 3)].copy()
    assert (runs["placement"] == "none").sum() == 2
    runs.loc[:, "consistency_circular"] = 90 + np.random.default_rng(0).normal(0, 3, len(runs))
    answers = {a.key: a for a in answer_questions(runs)}
    hint = "With 2 seeds the interval is wide: more seeds would narrow it."
    assert answers["RQ2"].sentence.startswith("Inconclusive") and hint in answers["RQ2"].sentence
    assert answers["RQ1"].sentence.startswith("Yes") and hint not in answers["RQ1"].sentence
    assert " Mean by filter size: 3: " in answers["RQ2"].sentence
    # runs of a measure that varies by seed that tie bound nothing: neither exact nor a "Yes"
    blurred = runs["placement"] != "none"
    runs.loc[:, "consistency_circular"] = np.where(blurred, 95.0, 90.0)
    rq2 = answer_questions(runs)[1]
    assert rq2.sentence.startswith("Inconclusive") and hint not in rq2.sentence
    assert "no interval: each seed gave the same difference" in rq2.sentence
    runs, _ = runs_table(make_study(tmp_path / "t", space, seeds=[0, 1]))
    size, placement = runs["filter_size"], runs["placement"]
    one_size = runs[(placement == "none") & (size == 5) | (placement == "paper") & (size == 3)]
    rq2 = answer_questions(one_size)[1]
    assert rq2.key == "RQ2" and "Mean by filter size" not in rq2.sentence  # one blurred size


@pytest.mark.parametrize(
    ("setting", "values", "base"),
    [("model", ["vgg", "resnet18"], None),
     ("image_size", [32, 64], {"dataset": "folder", "data_dir": "images"})],
)  # fmt: skip
def test_answers_are_split_by_network_or_data_when_the_study_varies_them(
    tmp_path: Path, setting: str, values: list, base: dict | None
) -> None:
    """Pooled runs of two networks (or image sizes) mix their effects; each answer then also
    gives the effect within each. Here blur leaves the second one's consistency as it was."""
    space = {**FULL_SPACE, setting: values}
    runs = first_run_per_seed(runs_table(make_study(tmp_path / "s", space, seeds=[0, 1, 2],
                                                    base=base))[0])  # fmt: skip
    second = runs[setting] == values[1]
    noise = np.random.default_rng(3).normal(0, 1, int(second.sum()))
    runs.loc[second, "consistency_circular"] = 80 + noise
    rq2 = {a.key: a for a in answer_questions(runs)}["RQ2"]
    parts = []
    for value in sorted(values):
        subset = runs[runs[setting] == value]
        groups = blur_groups(subset)
        consistency = subset["consistency_circular"]
        diff = paired_difference(consistency[groups == "blur"], consistency[groups == "no blur"],
                                 subset[["seed"]])  # fmt: skip
        assert diff.seeds == 3
        parts.append(f"{value} {diff.estimate:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}] points")
        assert diff.excludes_zero == (value == values[0])
    assert f" By {setting}: {'; '.join(parts)}." in rq2.sentence
    assert f"By {setting}" not in answer_questions(runs[~second])[1].sentence  # one: no split


def test_curves_of_each_network_sit_beside_its_own_baseline(tmp_path: Path) -> None:
    space = {"placement": ["none", "paper", "blur_before_max"], "filter_size": [3],
             "model": ["vgg", "resnet18"]}  # fmt: skip
    runs, _ = runs_table(make_study(tmp_path / "s", space, seeds=[0]))
    data = figs._with_baseline_per_placement(runs)
    panels = {f"{placement} · model {model}" for placement in ("paper", "blur_before_max")
              for model in ("vgg", "resnet18")}  # fmt: skip
    assert set(data["panel"]) == panels and list(data["panel"]) == sorted(data["panel"])
    for panel, rows in data.groupby("panel"):
        assert set(rows["model"]) == {panel.rsplit(" ", 1)[1]}
        assert sorted(rows["placement"]) == sorted(["none", panel.split(" ·")[0]])
    outcome = figs.shift_curve_figure(runs)
    titles = {ax.get_title() for ax in outcome.figure.axes}
    assert "circular shift · placement paper · model vgg" in titles
    plt.close(outcome.figure)
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    axes = [ax for ax in outcome.figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["model resnet18"] * 2 + ["model vgg"] * 2
    for ax, (model, metric) in zip(axes, itertools.product(("resnet18", "vgg"), ("accuracy",
                                   "consistency_circular")), strict=True):  # fmt: skip
        band = next(line for line in ax.lines if line.get_label() == NO_BLUR)
        baseline = runs.loc[(runs["model"] == model) & (runs["placement"] == "none"), metric]
        assert band.get_ydata()[0] == pytest.approx(baseline.mean())
        assert list(ax.get_xticks()) == [3]  # one size: one tick, not fractions of a unit
    assert "one filter size with blur" in outcome.figure.get_suptitle()
    plt.close(outcome.figure)
    outcome = figs.filter_tv_figure(runs)  # a heatmap row per variant and network
    rows = [label.get_text() for label in outcome.figure.axes[0].get_yticklabels()]
    variants = ("no blur", "blur_before_max · Bin-3", "paper · Bin-3")
    assert rows == [f"{v} · model {m}" for m in ("resnet18", "vgg") for v in variants]
    mesh = outcome.figure.axes[0].collections[0]  # the colours start at 0, not at the least TV
    assert mesh.norm.vmin == 0.0 and mesh.norm.vmax == pytest.approx(mesh.get_array().max())
    plt.close(outcome.figure)


def test_figure_means_and_intervals_are_over_seeds_not_pooled_runs() -> None:
    """A point pooling two configurations (augment off and on) that share seeds with a strong
    seed effect: its bar, and the no-blur band, are the t-interval over the 3 seeds' means,
    not over the 6 runs, which are not independent samples."""
    runs = pd.DataFrame({
        "placement": ["paper"] * 6 + ["none"] * 6, "filter_size": 3, "seed": [0, 0, 1, 1, 2, 2] * 2,
        "augment": [False, True] * 6,
        # seed means: 51, 61, 71 with blur (mean 61, sd 10); 42, 48, 54 without (48, sd 6)
        "accuracy": [50, 52, 59, 63, 70, 72, 40, 44, 47, 49, 56, 52],
    })  # fmt: skip
    t2 = 4.302653  # t(0.975, 2)
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    ax = outcome.figure.axes[0]
    (bar,) = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    assert list(bar[:, 0]) == [3, 3]
    assert sorted(bar[:, 1]) == pytest.approx([61 - t2 * 10 / 3**0.5, 61 + t2 * 10 / 3**0.5])
    (band,) = [p for p in ax.patches if p.get_label() == f"{NO_BLUR}: 95 % t-interval"]
    low, high = band.get_y(), band.get_y() + band.get_height()
    assert (low, high) == pytest.approx((48 - t2 * 6 / 3**0.5, 48 + t2 * 6 / 3**0.5))
    assert "mean over seeds" in outcome.figure.get_suptitle()
    assert "mean over seeds of the runs without blur" in outcome.note
    plt.close(outcome.figure)
    # a table without seeds (an old study): the runs are the samples, as they were
    outcome = figs.filter_size_figure(runs.drop(columns="seed"), "consistency_circular")
    ax = outcome.figure.axes[0]
    (bar,) = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    assert sorted(bar[:, 1]) == pytest.approx(mean_interval([50, 52, 59, 63, 70, 72]))
    assert "mean over runs" in outcome.figure.get_suptitle()
    plt.close(outcome.figure)


def test_each_figure_says_how_many_seeds_and_images_its_means_pool(tmp_path: Path) -> None:
    """The summary said it, the figures had not: a figure saved alone names its sample."""
    base = {"test_size": 600, "eval_size": 150, "diagonal": 5, "shift": 3, "crop_pad": 5}
    study = make_study(tmp_path / "s", FULL_SPACE, seeds=[0, 1, 2], base=base)
    runs, _ = runs_table(study)
    runs["n_test"], runs["n_eval"] = 600, 150  # as a run of that base records them
    seeds = "3 seed(s) per configuration"
    expected = [
        (figs.filter_size_figure(runs, "consistency_circular"), f"{seeds}, 600 test images"),
        (figs.shift_curve_figure(runs), f"{seeds}, the first 150 test images per run at "
         "diagonal offsets d = 0..5"),
        (figs.adversarial_figure(runs), f"{seeds}, the first 150 test images per run at each "
         "offset in [-S, S]², S = 3"),
        (figs.training_curve_figure(runs), f"{seeds}, 600 test images per run"),
        (figs.filter_tv_figure(runs), seeds),
    ]  # fmt: skip
    for outcome, sample in expected:
        assert sample in outcome.figure.get_suptitle(), (outcome.name, sample)
        plt.close(outcome.figure)
    runs.loc[runs["seed"] == 2, "n_test"] = 1200  # a study whose runs differ gives the span
    outcome = figs.training_curve_figure(runs)
    assert "600–1,200 test images per run" in outcome.figure.get_suptitle()
    plt.close(outcome.figure)


def test_costs_read_the_effect_direction_and_its_share(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", FULL_SPACE, seeds=[0, 1, 2])
    runs, _ = runs_table(study)
    answers = {a.key: a for a in cost_answers(runs)}
    # The fake runs get slower with blur and do more arithmetic the larger the filter.
    for key in ("C1", "C2"):
        assert answers[key].difference.high < 0 and answers[key].sentence.startswith("Yes")
    flops = answers["C3"]
    assert flops.difference.low > 0 and flops.sentence.startswith("Yes")
    blurred = runs.loc[blur_groups(runs) == "blur", "forward_mflops"]  # no blur: 17.4 each
    assert f"or +{100 * (blurred.mean() / 17.4 - 1):.2f} %" in flops.sentence
    assert "filter size: 1: 17.40 MFLOPs, 3: 17.60 MFLOPs, 5: 18.20 MFLOPs." in flops.sentence


def test_a_cost_every_run_repeats_is_answered_exactly(tmp_path: Path) -> None:
    """One blurred configuration and the baseline, three seeds each: FLOPs do not vary with
    the seed, so the difference is exact, not inconclusive."""
    study = make_study(tmp_path / "s", {"placement": ["none", "paper"], "filter_size": [3]},
                       seeds=[0, 1, 2])  # fmt: skip
    runs, _ = runs_table(study)
    flops = cost_answers(runs)[2]
    assert flops.sentence.startswith("Yes: the forward pass's MFLOPs per image is 17.60")
    assert "exact: every run of each group gave the same value; n = 3 blurred" in flops.sentence
    assert "Welch" not in flops.sentence  # no test: there is no spread to test


def test_costs_of_runs_without_flops_say_so(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", FULL_SPACE, seeds=[0, 1])
    runs, _ = runs_table(study)
    answer = cost_answers(runs.drop(columns="forward_mflops"))[2]
    assert answer.difference is None and "carry no `forward_mflops`" in answer.sentence


def test_polyphase_runs_without_blur_are_neither_baseline_nor_blurred() -> None:
    table = pd.DataFrame(
        {
            "placement": ["none", "paper", "paper", "paper", "paper"],
            "filter_size": [4, 1, 1, 3, 1],
            "subsample": ["fixed", "fixed", "aps", "aps", "lps"],
        }
    )
    groups = ["no blur", "no blur", "APS without blur", "blur", "LPS without blur"]
    assert list(blur_groups(table)) == groups
    labels = figs.blur_labels(table).tolist()
    assert labels == ["no blur", "Bin-1", "APS · Bin-1", "APS · Bin-3", "LPS · Bin-1"]


def test_aps_answers_compare_the_grids_only_when_the_study_varies_them(tmp_path: Path) -> None:
    space = {"placement": ["none", "paper"], "filter_size": [3, 5], "subsample": ["fixed", "aps"]}
    runs, _ = runs_table(make_study(tmp_path / "aps", space, seeds=list(range(8))))
    answers = {a.key: a for a in polyphase_answers(runs)}
    assert list(answers) == ["A1", "A2", "A3"]
    assert answers["A1"].difference.low > 0 and answers["A1"].sentence.startswith("Yes")
    assert "100.00 % with APS vs" in answers["A1"].sentence
    assert "with fixed subsampling" in answers["A1"].sentence
    assert "n = 16 APS vs 16 fixed-grid runs" in answers["A1"].sentence  # placement none left out
    assert answers["A3"].difference.high < 0 and answers["A3"].sentence.startswith("Yes")
    fixed_only, _ = runs_table(make_study(tmp_path / "fixed", FULL_SPACE, seeds=[0, 1]))
    assert polyphase_answers(fixed_only) == []


def test_lps_answers_compare_it_with_the_fixed_grid_and_with_aps(tmp_path: Path) -> None:
    space = {"placement": ["paper"], "filter_size": [3], "subsample": ["fixed", "aps", "lps"]}
    runs, _ = runs_table(make_study(tmp_path / "lps", space, seeds=list(range(8))))
    answers = {a.key: a for a in polyphase_answers(runs)}
    assert list(answers) == ["A1", "A2", "A3", "L1", "L2", "L3", "L4", "L5"]
    assert answers["L1"].sentence.startswith("Yes") and "with LPS vs" in answers["L1"].sentence
    assert answers["L3"].sentence.startswith("No, the opposite")  # LPS gains accuracy here
    assert answers["L4"].sentence.startswith("Yes") and "with APS" in answers["L4"].sentence
    assert "n = 8 LPS vs 8 APS runs" in answers["L4"].sentence
    assert answers["L5"].difference is not None
    without_fixed = runs[runs["subsample"] != "fixed"]
    assert [a.key for a in polyphase_answers(without_fixed)] == ["L4", "L5"]


def test_questions_without_baseline_say_so(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", {"filter_size": [3, 5]}, seeds=[0, 1])
    runs, _ = runs_table(study)
    for answer in answer_questions(runs) + cost_answers(runs):
        assert answer.difference is None
        assert "Cannot be answered from this study" in answer.sentence


def test_questions_whose_baseline_did_not_learn_say_so(tmp_path: Path) -> None:
    """Consistency is left out for runs that did not learn: an answer that has none left for
    a group says that this is why, not that the study lacks such runs."""
    space = {"placement": ["none", "paper"], "filter_size": [3]}
    runs, _ = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))
    runs.loc[runs["placement"] == "none", "learned"] = False
    answers = {a.key: a for a in answer_questions(mask_runs_at_chance(runs))}
    assert answers["RQ2"].difference is None
    assert answers["RQ2"].sentence == (
        "Cannot be answered from this study: its no-blur (placement none or filter size 1) runs "
        "did not learn (accuracy not above chance), and `consistency_circular` is left out for "
        "such runs."
    )
    # costs do not depend on learning: answered from every run, with no word on learning
    for cost in cost_answers(runs):
        assert cost.difference is not None and "did not learn" not in cost.sentence
    # adversarial accuracy is kept, as low as it is, but no baseline run learned to compare
    assert answers["RQ4"].difference is None
    assert answers["RQ4"].sentence == (
        "Cannot be answered from this study: none of its no-blur (placement none or filter "
        "size 1) runs learned (accuracy not above chance)."
    )


def test_answers_say_which_runs_that_did_not_learn_they_left_out_or_counted(tmp_path: Path):
    """One no-blur run stuck: consistency leaves it out, adversarial accuracy counts it (and
    gives the difference among the runs that learned too)."""
    space = {"placement": ["none", "paper"], "filter_size": [3]}
    runs, _ = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1, 2]))
    runs.loc[(runs["placement"] == "none") & (runs["seed"] == 0), "learned"] = False
    answers = {a.key: a for a in answer_questions(mask_runs_at_chance(runs))}
    stuck = "0 blurred and 1 no-blur runs that did not learn (accuracy not above chance)"
    assert answers["RQ2"].sentence.endswith(f" Left out: {stuck}.")
    # the stuck run's seed pairs nothing: its blurred run is left out too, and said to be
    assert "n = 2 blurred vs 2 no-blur runs; 1 run left out, unpaired (no run of the other " \
        "group with the same seed)" in answers["RQ2"].sentence
    assert f" This counts {stuck}; among the runs that learned the difference is " in (
        answers["RQ4"].sentence
    )
    assert "n = 3 blurred vs 3 no-blur runs" in answers["RQ4"].sentence


def test_studies_without_training_curves_skip_their_figure_and_line(tmp_path: Path) -> None:
    """Studies recorded before the accuracy probe: no curve, no gain line, the rest as before."""
    study = make_study(tmp_path / "old", {"filter_size": [3, 5]}, seeds=[0])
    runs, _ = runs_table(study)
    old = runs.drop(columns=["accuracy_during_training", "last_quarter_gain"])
    outcome = figs.training_curve_figure(old)
    assert outcome.figure is None and "no accuracy_during_training" in outcome.note
    assert _late_gain_items(old) == [] and len(_late_gain_items(runs)) == 1
    finished = runs.assign(last_quarter_gain=0.0)  # no run still learning: no warning
    assert _late_gain_items(finished) == [
        "accuracy added by the last quarter of training: median 0.00 points, most 0.00: no run "
        "was still gaining at the end of its budget"
    ]
    # runs that did not learn gain nothing late either: that says nothing of their budget
    stuck = finished.assign(learned=[False] + [True] * (len(runs) - 1))
    assert _late_gain_items(stuck)[0].startswith(
        "accuracy added by the last quarter of training (runs that learned: "
        f"{len(runs) - 1} of {len(runs)}): median 0.00 points"
    )
    assert _late_gain_items(finished.assign(learned=False)) == [
        "accuracy added by the last quarter of training: no run learned (accuracy not above "
        "chance), so none tells whether its budget was long enough"
    ]


def _assert_readable(figure: plt.Figure) -> None:
    """Titled, every panel with both axis labels, and a legend or a labelled colour bar."""
    assert figure._suptitle is not None and figure._suptitle.get_text()
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    for ax in panels:
        assert ax.get_xlabel() and ax.get_ylabel(), ax
    colorbars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    legends = figure.legends + [ax.get_legend() for ax in panels if ax.get_legend()]
    assert legends or (colorbars and all(cb.get_ylabel() for cb in colorbars))
    for legend in legends:
        assert [t.get_text() for t in legend.get_texts()]


def test_figures_have_titles_labels_and_legends(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", FULL_SPACE, seeds=[0, 1])
    meta = read_meta(tmp_path / "s")
    runs, config_cols = runs_table(study)
    configs = mark_front(aggregate_over_seeds(runs, config_cols), meta)
    outcomes = make_figures(study, runs, configs, meta)
    assert [o.name for o in outcomes] == list(FIGURE_NAMES)
    for outcome in outcomes:
        assert outcome.figure is not None, outcome.note
        _assert_readable(outcome.figure)
        plt.close(outcome.figure)


def test_study_varying_one_parameter_reports_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "one"
    make_study(out_dir, {"filter_size": [1, 3, 5]}, seeds=[0], objectives=OBJECTIVES[:2], failed=0)
    assert main([str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert str(out_dir / "summary.md") in printed and str(out_dir / "report.html") in printed
    names = {p.name for p in (out_dir / "figures").iterdir()}
    assert {"accuracy_vs_shift.png", "adversarial_accuracy.png", "filter_tv.png"} <= names
    assert "parameter_importance.png" not in names
    summary = (out_dir / "summary.md").read_text()
    assert (
        "parameter importance needs at least 2 parameters varied across 10 or more finished "
        "trials whose runs all learned; this study varies only filter_size across "
        "those trials and has 3 finished trial(s) whose runs all learned" in summary
    )
    assert "varied: filter_size" in summary
    assert "(the answers compare within each seed).*" in summary  # no baseline: nothing after
    assert "dotted" not in summary
    assert "fixed: nothing" in summary  # the fake study sets no field but filter_size
    # the synthetic data reads no folder, and the SGD momentum is used
    assert "at their defaults: dataset=synthetic, image_size=32," in summary
    assert "data_dir" not in summary.split("at their defaults:")[1].split("\n")[0]
    assert "momentum=0.9" in summary
    html = (out_dir / "report.html").read_text()  # a figure's name, skipped, in italics
    assert "<em>parameter_importance</em>: skipped" in html


def test_cli_names_an_output_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "s"
    make_study(out_dir, {"filter_size": [1, 3]}, seeds=[0], failed=0)
    (out_dir / "figures").write_text("a file where the figures go")
    with pytest.raises(SystemExit) as exit_info:
        main([str(out_dir)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "cannot write the report: " in err and str(out_dir / "figures") in err


def test_cli_rejects_a_folder_without_a_study(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path)])


def test_cli_storage_takes_a_journal_path_and_names_a_storage_without_the_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--storage` as the study's takes it (a journal path too); a database or journal that
    does not hold the study is named, not a traceback, and no empty database is left behind."""
    out_dir = tmp_path / "s"
    make_study(out_dir, {"filter_size": [1, 3]}, seeds=[0], failed=0)
    moved = tmp_path / "elsewhere.log"
    (out_dir / "journal.log").rename(moved)
    assert main([str(out_dir), "--storage", str(moved)]) == 0
    assert f"`optuna-dashboard {moved}`" in (out_dir / "summary.md").read_text()
    missing = tmp_path / "nothere.db"
    for storage, message in (
        (f"sqlite:///{missing}", f"storage='sqlite:///{missing}' not found"),
        (str(tmp_path / "nothere.log"), "nothere.log' not found"),
        ("sqlite:/x.db", "'sqlite:/x.db' is not a database URL"),
    ):
        with pytest.raises(SystemExit):
            main([str(out_dir), "--storage", storage])
        assert message in capsys.readouterr().err
    other = tmp_path / "other"
    make_study(other, {"filter_size": [1]}, seeds=[0], failed=0)
    with pytest.raises(SystemExit):
        main([str(out_dir), "--storage", str(other / "journal.log")])
    assert "holds no study 's' (the one" in capsys.readouterr().err
    assert not missing.exists()


def _stored(out_dir: Path) -> optuna.Study:
    meta = read_meta(out_dir)
    return load_study(out_dir, meta, study_location(out_dir, meta))


def test_meta_with_other_storage_path_opens(tmp_path: Path) -> None:
    out_dir = tmp_path / "moved"
    make_study(out_dir, {"filter_size": [1, 3]}, seeds=[0], failed=0)
    meta = json.loads((out_dir / "meta.json").read_text())
    meta["storage"] = "/nonexistent/place/journal.log"  # folder copied elsewhere
    (out_dir / "meta.json").write_text(json.dumps(meta))
    assert isinstance(read_meta(out_dir), StudyMeta)
    runs, _ = runs_table(_stored(out_dir))
    assert len(runs) == 2
    assert Objective(metric="accuracy", direction="maximize") in read_meta(out_dir).objectives


def test_a_design_point_whose_every_run_failed_stays_in_the_report(tmp_path: Path) -> None:
    """A learning rate all of whose runs diverged was still varied (not "at its default"), and
    each failed attempt names the design point it tried, with the settings its network does
    not use blank; a point that makes no config is named by its sampled parameters."""
    out_dir = tmp_path / "s"
    study = make_study(out_dir, {"placement": ["none", "paper"]}, seeds=[0], failed=0)
    for placement in ("none", "paper"):
        config = VariantConfig(placement=placement, lr=10000.0).model_dump(exclude={"seed"})
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL,
                params={"placement": placement},
                distributions={"placement": CategoricalDistribution(["none", "paper"])},
                user_attrs={"config": config, "fail_reason": "TrainingDiverged: at step 3"},
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"filter_size": 0},
            distributions={"filter_size": CategoricalDistribution([0])},
            user_attrs={"fail_reason": "InvalidDesignPoint: filter_size"},
        )
    )
    failed = failed_trials(study)
    assert list(failed.columns[:2]) == ["trial", "dataset"] and failed["lr"].iloc[0] == 10000
    assert failed["filter_size"].tolist()[2] == 0 and np.isnan(failed["lr"].iloc[2])
    write_report(out_dir)
    summary = (out_dir / "summary.md").read_text()
    assert "\n- varied: placement, filter_size, lr\n" in summary
    assert "lr=" not in summary.split("- at their defaults:")[1].split("\n")[0]
    table = summary.split("## Failed attempts")[1].split("\n## ")[0]
    assert "| trial | placement | filter_size | lr | state | fail_reason |" in table
    assert "| 2 | none | – | 1e+04 | FAIL | TrainingDiverged: at step 3 |  |" in table
    assert "| 3 | paper | 4 | 1e+04 | FAIL |" in table
    assert "| 4 |  | 0 |  | FAIL | InvalidDesignPoint: filter_size |  |" in table


def test_a_field_varied_between_none_and_a_value_is_varied(tmp_path: Path) -> None:
    """`steps: [null, 50]` varies steps (None: the epochs decide): in a table None is a blank,
    as a failed trial's missing field is, so what was varied is read from the trials."""
    out_dir = tmp_path / "s"
    make_study(out_dir, {"steps": [None, 50], "filter_size": [3]}, seeds=[0, 1], failed=0)
    write_report(out_dir)
    summary = (out_dir / "summary.md").read_text()
    assert "\n- varied: steps\n" in summary and "steps=nan" not in summary


def test_failed_attempts_name_the_trial_that_ran_their_point_again():
    """An interrupted or retried attempt is listed with its rerun, so a study whose every point
    finished does not read as one with failures left."""
    study = optuna.create_study()
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "interrupted"}
        )
    )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"retry_of": 0}))
    table = failed_trials(study)
    assert table.to_dict("records") == [
        {
            "trial": 0,
            "state": "FAIL",
            "fail_reason": "interrupted",
            "run_again_as": "trial 2 (COMPLETE)",
        },
        {"trial": 1, "state": "FAIL", "fail_reason": "", "run_again_as": ""},
    ]


def test_throughput_that_varied_between_a_configurations_runs_is_flagged(tmp_path: Path) -> None:
    """A shared machine can time one configuration's runs 5x apart: the summary says so, since
    the speed answers and the front rest on it; steady runs get no such line."""
    space = {"placement": ["none", "paper"], "filter_size": [3]}
    uneven = {"train_images_per_s": 100.0, "infer_images_per_s": 300.0}
    make_study(tmp_path / "s", space, seeds=[0, 1],
               made_by=lambda config, seed: uneven if seed and config["placement"] == "paper"
               else {})  # fmt: skip
    write_report(tmp_path / "s")
    summary = (tmp_path / "s" / "summary.md").read_text()
    assert "`train_images_per_s` varied more than 2× between the runs of 1 of 2 configurations" in (
        summary
    )
    assert "`infer_images_per_s` varied more than 2×" in summary
    make_study(tmp_path / "steady", space, seeds=[0, 1])
    write_report(tmp_path / "steady")
    assert "varied more than" not in (tmp_path / "steady" / "summary.md").read_text()


def test_throughput_is_flagged_only_past_twice_and_a_run_timed_at_zero_is_not_timed() -> None:
    """a's runs are exactly 2x apart: not more than twice, not flagged. b's run timed at zero
    measured nothing, so b has one timed run and no spread. c's runs are 2.5x apart."""
    speeds = [100.0, 200.0, 0.0, 150.0, 100.0, 250.0]
    runs = pd.DataFrame({"config_key": list("aabbcc"), "train_images_per_s": speeds})
    assert _throughput_spread_items(runs) == [
        "`train_images_per_s` varied more than 2× between the runs of 1 of 3 configurations "
        "(up to 2.5×): other load on the machine timed them, so the answers on speed, and a "
        "front that optimises it, rest on that load"
    ]


def test_interval_bars_cut_at_the_frame_are_said_to_be(tmp_path: Path) -> None:
    """The scatters frame the means: bars longer than the frame (two seeds, t = 12.7) run off
    it, and the caption says so; bars inside it get no such words."""
    space = {"placement": ["none", "paper"], "filter_size": [3, 5]}
    runs, config_cols = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))
    configs = aggregate_over_seeds(first_run_per_seed(runs), config_cols)
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    title = outcome.figure.get_suptitle()
    assert "grey bars: 95 % t-interval over seeds, cut at the frame" in title
    plt.close(outcome.figure)
    for metric in ("accuracy", "consistency_circular", "train_images_per_s"):
        configs[f"{metric}_ci95_low"] = configs[f"{metric}_mean"] - 1e-3
        configs[f"{metric}_ci95_high"] = configs[f"{metric}_mean"] + 1e-3
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    title = outcome.figure.get_suptitle()
    assert "grey bars: 95 % t-interval over seeds" in title and "cut at the frame" not in title
    plt.close(outcome.figure)


def test_a_front_of_one_configuration_draws_no_line_and_names_none(tmp_path: Path) -> None:
    """A front of one point drew nothing, yet its legend named a red line; with two points and
    more, the line is drawn and named."""
    space = {"placement": ["none", "paper"], "filter_size": [3, 5]}
    runs, config_cols = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))
    configs = aggregate_over_seeds(first_run_per_seed(runs), config_cols)
    # (accuracy, consistency) of rows: one best on both axes; or each best on one axis
    placed = {True: {0: (100.0, 100.0)}, False: {0: (100.0, 0.0), 1: (0.0, 100.0)}}
    for lead, rows in placed.items():
        table = configs.copy()
        for row, values in rows.items():
            for metric, value in zip(("accuracy", "consistency_circular"), values, strict=True):
                columns = [f"{metric}_mean", f"{metric}_ci95_low", f"{metric}_ci95_high"]
                table.loc[table.index[row], columns] = value
        outcome = figs.accuracy_consistency_figure(table, "consistency_circular", [])
        legend = [t.get_text() for t in outcome.figure.axes[0].get_legend().get_texts()]
        lines = outcome.figure.axes[0].lines
        drawn = [line for line in lines if line.get_label().startswith("front")]
        assert ("front: accuracy × consistency" in legend) == (not lead) == bool(drawn)
        assert ("no front line" in outcome.figure.get_suptitle()) == lead
        plt.close(outcome.figure)


def test_figures_say_what_runs_that_did_not_learn_take_away(tmp_path: Path) -> None:
    """Configurations with a run at chance are not drawn on the accuracy-consistency plane, a
    filter size whose runs are all at chance is named where its consistency is missing, and a
    figure with nothing left says why."""
    space = {"placement": ["none", "paper"], "filter_size": [3, 5]}
    runs, config_cols = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))
    stuck = (runs["placement"] == "paper") & (runs["filter_size"] == 5)
    runs.loc[stuck, "learned"] = False
    masked = mask_runs_at_chance(runs)
    configs = aggregate_over_seeds(masked, config_cols)
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    assert "1 configuration(s) not shown: a run did not learn" in outcome.figure.get_suptitle()
    plt.close(outcome.figure)
    outcome = figs.filter_size_figure(masked, "consistency_circular")
    assert "consistency_circular: filter size 5 left out" in outcome.figure.get_suptitle()
    plt.close(outcome.figure)

    runs["learned"] = False
    masked = mask_runs_at_chance(runs)
    configs = aggregate_over_seeds(masked, config_cols)
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [])
    assert outcome.figure is None and "every configuration has a run" in outcome.note
    outcome = figs.shift_curve_figure(masked)
    assert outcome.figure is None and "no run learned" in outcome.note
    outcome = figs.filter_size_figure(masked, "consistency_circular")
    assert "consistency_circular: every filter size left out" in outcome.figure.get_suptitle()
    assert len([ax for ax in outcome.figure.axes if ax.get_ylabel()]) == 1  # accuracy alone
    plt.close(outcome.figure)


def test_the_adversarial_figure_names_what_its_bars_pool(tmp_path: Path) -> None:
    space = {"placement": ["none", "paper"], "filter_size": [3], "padding": ["zeros", "reflect"]}
    runs, _ = runs_table(make_study(tmp_path / "s", space, seeds=[0]))
    for outcome in (figs.adversarial_figure(runs), figs.shift_curve_figure(runs)):
        assert "pooled over padding" in outcome.figure.get_suptitle()
        plt.close(outcome.figure)


def test_custom_taps_set_the_filter_size_the_report_groups_by(tmp_path: Path) -> None:
    """Custom taps make the filter whatever `filter_size` says: three taps blur, one tap
    subsamples, and the report groups and labels them by the taps they have."""
    tables = [
        runs_table(make_study(tmp_path / name, {"filter_size": [1, 4]}, [0], base=base))[0]
        for name, base in (
            ("three", {"filter": "custom", "taps": [1.0, 2.0, 1.0]}),
            ("one", {"filter": "custom", "taps": [1.0]}),
        )
    ]
    runs = pd.concat(tables, ignore_index=True)
    assert runs["filter_size"].tolist() == [3, 3, 1, 1]
    assert blur_groups(runs).tolist() == ["blur", "blur", NO_BLUR, NO_BLUR]


def test_runs_of_the_baseline_network_count_once_where_pooled(tmp_path: Path) -> None:
    """A one-tap filter at max-pools trains the baseline's network: its runs repeat the
    baseline's seed by seed, so the no-blur group counts each network and seed once, while
    the configuration keeps its row."""
    space = {"placement": ["none", "paper", "blur_before_max"], "filter_size": [1, 3]}
    study = make_study(
        tmp_path / "s", space, seeds=[0, 1, 2],
        baseline=lambda config: config["placement"] == "none" or config["filter_size"] == 1,
    )  # fmt: skip
    runs, config_cols = runs_table(study)
    runs = first_run_per_seed(runs)
    assert len(aggregate_over_seeds(runs, config_cols)) == 5  # none, and each placement's two
    answers = {a.key: a for a in answer_questions(runs)}
    assert "n = 6 blurred vs 3 no-blur runs" in answers["RQ2"].sentence
    accuracy = Objective(metric="accuracy", direction="maximize")
    (by_size, *_) = choice_answers(runs, [accuracy], ["filter_size"])
    assert "1 " in by_size.sentence and "(n = 3)" in by_size.sentence  # k=1 under two placements
    assert "(n = 6)" in by_size.sentence  # k=3: two networks
    write_report(tmp_path / "s")
    summary = (tmp_path / "s" / "summary.md").read_text()
    assert "runs of the baseline's network under another configuration: 6" in summary


def test_configurations_that_build_one_network_count_as_one(tmp_path: Path) -> None:
    """Without blur the filter settings are unused; a one-tap filter on the fixed grid reads no
    padding (under APS circular padding still wraps the max, so there it counts)."""
    space = {
        "placement": ["none", "paper"],
        "filter_size": [1, 3],
        "padding": ["zeros", "circular"],
        "subsample": ["fixed", "aps"],
    }
    runs, config_cols = runs_table(make_study(tmp_path / "s", space, seeds=[0]))
    configs = aggregate_over_seeds(first_run_per_seed(runs), config_cols).set_index("trials")
    # none: 8 points, 1 network; paper k=1 fixed: 2 points, 1 network; the other 6 apart;
    # each network's seed counts once, the first trial's run
    assert len(runs) == 16 and len(configs) == 1 + 1 + 6
    assert configs.index.tolist() == ["0", "8", "9", "11", "12", "13", "14", "15"]
    assert (configs["n_seeds"] == 1).all()
    assert unused_fields(configs.loc["0"])[:2] == ("filter", "filter_size")
    assert unused_fields(configs.loc["8"])[:4] == ("filter", "sigma", "taps", "padding")
    assert "padding" not in unused_fields(configs.loc["9"])  # k=1 under APS: the padding counts
    assert unused_fields({"placement": "paper", "sites": 0}) == unused_fields({"placement": "none"})
    assert unused_fields({"filter": "custom", "taps": [1.0, 2.0]})[:1] == ("filter_size",)
    sites_zero = pd.DataFrame({"placement": ["paper", "paper"], "sites": [0, None]})
    assert blur_groups(sites_zero).tolist() == [NO_BLUR, "blur"]


def test_a_filter_keeps_its_colour_in_every_figure(tmp_path: Path) -> None:
    """The report colours filters from every run of the study, so a figure that lacks one
    (here: the accuracy-consistency plane, without Bin-3's stuck configuration) does not shift
    the others' colours."""
    space = {"placement": ["none", "paper"], "filter_size": [3, 5]}
    runs, config_cols = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))
    runs.loc[(runs["placement"] == "paper") & (runs["filter_size"] == 3), "learned"] = False
    masked = mask_runs_at_chance(runs)
    configs = aggregate_over_seeds(masked, config_cols)
    palette = figs.study_palette(masked)
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", [], palette)
    legend = outcome.figure.axes[0].get_legend()
    handles = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles,
                       strict=True))  # fmt: skip
    assert "Bin-5" in handles and "Bin-3" not in handles
    colour = matplotlib.colors.to_rgb(handles["Bin-5"].get_markerfacecolor())
    np.testing.assert_allclose(colour, palette["Bin-5"][:3])
    assert palette["Bin-5"] != figs.blur_palette(["Bin-5"])["Bin-5"]  # alone it would differ
    plt.close(outcome.figure)


def _conditional_study(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, StudyMeta]:
    """Runs and marked configurations of a study whose filter settings apply to placement
    `paper` only (a spec's `when:`), as `mine` was: the no-blur runs keep the defaults
    (Bin-4, reflect), which no converted run uses. One point converts nothing (`sites` 0)."""
    space = {"placement": ["none", "paper"], "filter_size": [3], "padding": ["zeros", "circular"],
             "sites": [None, 0]}  # fmt: skip
    study = make_study(tmp_path / "when", space, seeds=[0, 1])
    runs, config_cols = runs_table(study)
    none = runs["placement"] == "none"
    runs.loc[none, "filter_size"], runs.loc[none, "padding"] = 4, "reflect"
    meta = read_meta(tmp_path / "when")
    configs = mark_front(aggregate_over_seeds(first_run_per_seed(runs), config_cols), meta)
    return runs, configs, meta


def _legend_section(figure: plt.Figure, title: str) -> list[str]:
    """The entries under `title` in a scatter's legend, up to the next title or other entry."""
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    section = texts[texts.index(title) + 1 :]
    ends = [i for i, t in enumerate(section) if "(" in t or t.startswith("front")]
    return section[: ends[0] if ends else None]


def test_the_no_blur_runs_get_their_own_marker_and_colour(tmp_path: Path) -> None:
    """A network without blur (placement none, or sites 0) is drawn as `no blur`, never with
    the padding or filter it does not use, and a legend lists only what some blurred run
    used."""
    _, configs, meta = _conditional_study(tmp_path)
    outcome = figs.accuracy_consistency_figure(configs, "consistency_circular", meta.objectives)
    assert _legend_section(outcome.figure, "padding (marker)") == [NO_BLUR, "zeros", "circular"]
    assert _legend_section(outcome.figure, "filter (colour)") == [NO_BLUR, "Bin-3"]
    sizes = _legend_section(outcome.figure, "train images/s (size)")
    assert sizes and all(text.isdigit() for text in sizes), sizes  # "1892", not "1892.0"
    plt.close(outcome.figure)
    labels = figs.with_labels(configs)
    assert labels.loc[labels["sites"] == 0, "blur_label"].tolist() == [NO_BLUR]  # converts none


def test_a_scatter_of_colour_alone_titles_its_legend() -> None:
    """Where colour is all a legend explains (one marker, no sizes), its title says so."""
    configs = pd.DataFrame(
        {
            "placement": ["none", "paper", "paper"],
            "filter_size": [1, 3, 5],
            "accuracy_mean": [90.0, 91.0, 92.0],
            "train_images_per_s_mean": [1892.3, 1500.7, 1200.2],
        }
    )
    outcome = figs.throughput_accuracy_figure(configs, [])
    legend = outcome.figure.axes[0].get_legend()
    assert legend.get_title().get_text() == "filter (colour)"
    assert outcome.figure.get_suptitle().startswith("Training throughput vs accuracy")
    assert [t.get_text() for t in legend.get_texts()] == [NO_BLUR, "Bin-3", "Bin-5"]
    plt.close(outcome.figure)


def test_the_scatters_mark_alike_and_ring_the_front_of_their_objectives(tmp_path: Path) -> None:
    """The throughput figure's marker means what the accuracy-consistency figure's means (here
    padding, the only field the blurred configurations differ in; placement none is the
    no-blur marker), and it rings the Pareto front when an axis is one of the objectives."""
    _, configs, meta = _conditional_study(tmp_path)
    scatters = [
        figs.accuracy_consistency_figure(configs, "consistency_circular", meta.objectives),
        figs.throughput_accuracy_figure(configs, meta.objectives),
    ]
    for outcome in scatters:
        assert _legend_section(outcome.figure, "padding (marker)") == [NO_BLUR, "zeros", "circular"]
        rings = [c for c in outcome.figure.axes[0].collections
                 if c.get_label().startswith("on the study's Pareto front")]  # fmt: skip
        assert len(rings) == 1 and len(rings[0].get_offsets()) == int(configs["pareto"].sum())
        assert outcome.note == figs.RINGS_NOTE
        plt.close(outcome.figure)
    # a configuration none on the front clearly beats gets a dashed ring, and the caption says so
    last = configs.index == configs.index[-1]  # off the front here, near it
    near = configs.assign(pareto=configs["pareto"] & ~last, near_front=last)
    outcome = figs.throughput_accuracy_figure(near, meta.objectives)
    [dashed] = [c for c in outcome.figure.axes[0].collections
                if c.get_label() == "near the front"]  # fmt: skip
    assert len(dashed.get_offsets()) == 1 and dashed.get_linestyle() != [(0.0, None)]
    assert outcome.note == f"{figs.RINGS_NOTE} {figs.NEAR_RINGS_NOTE}"
    plt.close(outcome.figure)
    consistency_only = [Objective(metric="consistency_circular", direction="maximize")]
    outcome = figs.throughput_accuracy_figure(configs, consistency_only)
    labels = [c.get_label() for c in outcome.figure.axes[0].collections]
    assert not [label for label in labels if "Pareto" in label] and outcome.note == ""
    plt.close(outcome.figure)


def test_the_no_blur_line_is_dotted_and_the_paddings_differ_by_dashes(tmp_path: Path) -> None:
    """Dashes had meant both circular padding and the runs without blur: now the paddings differ
    by marker and by dashes none of which is dotted, each padding's the same in every panel, the
    no-blur mean alone is dotted, and the caption says so only for a figure that draws it."""
    space = {"placement": ["none", "paper"], "filter_size": [3, 5],
             "padding": ["zeros", "circular", "replicate"]}  # fmt: skip
    runs, _ = runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    dashes = []
    for ax in outcome.figure.axes:
        styles = {line.get_label(): line.get_linestyle() for line in ax.lines}
        assert styles.pop(NO_BLUR) == ":"
        assert set(styles.values()) <= {"-", "--", "None"}, styles
        padded = [line for line in ax.lines if line.get_label() != NO_BLUR]
        lines = [line for line in padded if len(line.get_xdata()) == 2]  # sizes 3 and 5
        dashes.append(sorted(str(line._dash_pattern) for line in lines))
    assert len(set(dashes[0])) == 3 and dashes[0] == dashes[1], dashes
    assert "dotted line" in outcome.note and "grey band" in outcome.note
    plt.close(outcome.figure)
    outcome = figs.filter_size_figure(runs[runs["placement"] != "none"], "consistency_circular")
    assert outcome.note == ""
    plt.close(outcome.figure)


def test_a_one_tap_filter_starts_the_line_of_every_padding(tmp_path: Path) -> None:
    """A one-tap filter reads no padding: its runs, which hold the default (a `when:` on the
    larger sizes leaves it), start each padding's line, and no padding no run read is drawn."""
    space = {"placement": ["paper"], "filter_size": [1, 3, 5], "padding": ["zeros", "circular"]}
    runs = first_run_per_seed(runs_table(make_study(tmp_path / "s", space, seeds=[0, 1]))[0])
    runs.loc[runs["filter_size"] == 1, "padding"] = "reflect"
    outcome = figs.filter_size_figure(runs, "consistency_circular")
    for ax in outcome.figure.axes:
        drawn = [list(line.get_xdata()) for line in ax.lines if len(line.get_xdata())]
        assert drawn and all(sizes[:1] == [1.0] and len(sizes) == 3 for sizes in drawn)
    legend = [text.get_text() for text in outcome.figure.axes[-1].get_legend().get_texts()]
    assert legend[legend.index("padding") + 1 :] == ["zeros", "circular"]
    plt.close(outcome.figure)


def test_the_files_leave_unused_fields_blank_and_config_key_last(tmp_path: Path) -> None:
    """runs, configs and the front on file: a network without blur shows no filter, filter
    size or padding (`sites` 0 stays: it is why), a blurred one shows its own; the long
    `config_key` comes last. The tables the statistics read keep every value."""
    space = {"placement": ["none", "paper"], "filter_size": [3], "padding": ["zeros", "circular"],
             "sites": [None, 0]}  # fmt: skip
    out_dir = tmp_path / "files"
    make_study(out_dir, space, seeds=[0, 1])
    write_report(out_dir)
    for name in ("runs", "configs", "pareto_front"):
        table = pd.read_csv(out_dir / f"{name}.csv", keep_default_na=False, dtype=str)
        assert table.columns[-1] == "config_key", name
        assert name != "runs" or table.columns[-2] == "network_key"
        blurred = (table["placement"] == "paper") & (table["sites"] == "")
        shown = table.loc[blurred, ["filter", "filter_size", "padding"]]
        assert (shown["filter"] == "binomial").all() and (shown["filter_size"] == "3").all()
        assert set(shown["padding"]) == {"zeros", "circular"}, name
        unused = table.loc[~blurred, ["filter", "filter_size", "padding", "antialias_stem"]]
        assert (unused == "").all().all(), name
        assert {float(v) for v in table.loc[~blurred, "sites"] if v} == {0.0}, name
        assert len(pd.read_parquet(out_dir / f"{name}.parquet").columns) == len(table.columns)
    runs, _ = runs_table(_stored(out_dir))
    assert runs["filter_size"].eq(3).all() and runs["padding"].notna().all()


def test_inline_markdown_keeps_code_spans_literal() -> None:
    """Bold and italics render outside code spans only, as Markdown reads them."""
    assert _inline_html("**RQ1 — x** see *figure* in `runs/*/x/*.csv` & <b>") == (
        "<strong>RQ1 — x</strong> see <em>figure</em> in <code>runs/*/x/*.csv</code> "
        "&amp; &lt;b&gt;"
    )
    assert _inline_html("a * b * c") == "a * b * c"
    # a bold span holding a code span (the best-value answers' questions) is bold around it
    assert _inline_html("**S1 — the highest `accuracy`?** `a*b*c`") == (
        "<strong>S1 — the highest <code>accuracy</code>?</strong> <code>a*b*c</code>"
    )


# --- the summary's text, piece by piece ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("no_such_field", None, False),  # not a VariantConfig field: never a default
        ("steps", None, True),  # default None: None, or NaN as a table reads it back
        ("steps", float("nan"), True),
        ("steps", 50, False),
        ("lr", 0.05, True),
        ("train_size", 5000.0, True),  # an int read back as a float
        ("lr", 0.5, False),
        ("lr", float("nan"), False),  # NaN is a default only where the default is None
        ("augment", False, True),
        ("augment", True, False),
    ],
)
def test_a_fixed_value_is_at_its_default_only_where_it_equals_it(
    field: str, value: object, expected: bool
) -> None:
    assert _is_default(field, value) is expected


def test_the_images_each_run_used_are_listed_sorted_with_their_offsets() -> None:
    """Two test set sizes and two shifts: each value once, smallest first, with (2S + 1)²
    offsets per S and D + 1 diagonal offsets; a study without these columns gets no line."""
    runs = pd.DataFrame(
        {
            "n_test": [400, 200, 400, np.nan],
            "n_eval": [100.0, 100.0, 100.0, 100.0],
            "shift": [2, 1, 2, 2],
            "diagonal": [3, 3, 3, 3],
        }
    )
    assert _evaluation_items(runs) == [
        "images per run: 200 or 400 test images for accuracy; the first 100 of them for the "
        "shift metrics, each at 9 or 25 offsets ([-S, S]², S = 1 or 2) for consistency and the "
        "adversary and at 4 diagonal offsets for accuracy vs shift"
    ]
    assert _evaluation_items(runs.drop(columns="diagonal")) == []
    assert _evaluation_items(runs.iloc[:0]) == []


def test_what_made_the_runs_counts_each_version_and_names_what_was_not_recorded() -> None:
    """Versions in the order their runs come, each with its commits (12 characters, a dirty
    tree marked) and runs; a run without a recorded code or torch version, or commit, says
    so; runs without the columns get no line."""
    runs = pd.DataFrame(
        {
            "code": ["c2", "c1", "c2", None, None],
            "torch": ["2.1", "2.1", "2.1", "2.0", "2.0"],
            "commit": ["bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa", "0123456789abcdef-dirty", None,
                       None],
        }
    )  # fmt: skip
    assert _made_by_items(runs.iloc[[1, 3, 4]].assign(code="c1", torch="2.1")) == [
        "made by: code c1 (commit ?, aaaaaaaaaaaa), torch 2.1"
    ]
    assert _made_by_items(runs) == [
        "made by 3 versions of the code or torch, whose runs this report compares as if alike: "
        "code c2 (commit 0123456789ab-dirty, bbbbbbbbbbbb), torch 2.1: 2 runs; "
        "code c1 (commit aaaaaaaaaaaa), torch 2.1: 1 run; "
        "code not recorded (commit ?), torch 2.0: 2 runs"
    ]
    assert _made_by_items(runs.drop(columns="commit").iloc[[0, 2]]) == [
        "made by: code c2 (commit ?), torch 2.1"
    ]
    assert _made_by_items(runs.drop(columns="torch")) == []
    # two versions are two; one version's commits are listed sorted, whatever their order
    two = runs.iloc[[1, 3]].assign(commit=["aaaaaaaaaaaaaaaa", "cccccccccccccccc"])
    assert _made_by_items(two)[0].startswith("made by 2 versions of the code or torch")
    commits = [f"{c}{c}" for c in "fdbeac"]
    one = pd.DataFrame({"code": "c1", "torch": "2.1", "commit": commits})
    assert _made_by_items(one) == ["made by: code c1 (commit aa, bb, cc, dd, ee, ff), torch 2.1"]


def test_the_late_gain_line_quotes_the_median_and_the_run_that_gained_most() -> None:
    """Median (not mean) of the runs that learned, the most and whose run it was; a run that
    did not learn, however much it gained, and a run that recorded no gain are not counted."""
    runs = pd.DataFrame(
        {
            "trial": [0, 0, 1, 1, 2],
            "seed": [0, 1, 0, 1, 0],
            "last_quarter_gain": [0.5, 1.0, 4.0, np.nan, 9.0],
            "learned": [True, True, True, True, False],
        }
    )
    assert _late_gain_items(runs) == [
        "accuracy added by the last quarter of training (runs that learned: 3 of 4): median 1.00 "
        "points, most 4.00 (trial 1, seed 0); runs still gaining at the end compare learning "
        "speed as much as end points (see the figure *accuracy_during_training*)"
    ]
    assert _late_gain_items(runs.assign(last_quarter_gain=np.nan)) == []
    # every run learned; one recorded no gain: not "some did not learn"
    learned = runs.assign(learned=True).iloc[:4]
    assert _late_gain_items(learned)[0].startswith(
        "accuracy added by the last quarter of training: median 1.00 points, most 4.00 (trial 1,"
    )
    # most runs lost ground, one still gained: the warning stands
    mixed = runs.assign(last_quarter_gain=[-1.0, -0.5, 0.5, np.nan, 9.0])
    assert _late_gain_items(mixed)[0].endswith("(see the figure *accuracy_during_training*)")
    losing = runs.assign(last_quarter_gain=[-1.0, -0.5, -0.25, np.nan, 9.0])
    assert _late_gain_items(losing)[0].endswith(
        "median -0.50 points, most -0.25: no run was still gaining at the end of its budget"
    )


def test_an_empty_front_says_whether_none_finished_none_is_feasible_or_the_objectives_lack(
) -> None:
    """No configuration; feasible ones but no recorded objective; none feasible, every one
    only for its constraints."""
    configs = pd.DataFrame({"feasible": [False, False], "seeds_at_chance": [0, 0]})
    assert _empty_front_reason(configs.iloc[:0]) == (
        "No configuration is on the front: none has a finished run."
    )
    assert _empty_front_reason(configs.assign(feasible=[False, True])) == (
        "No configuration is on the front: the runs do not record the objectives."
    )
    assert _empty_front_reason(configs) == (
        "No configuration is on the front, none is feasible: 2 miss the constraints."
    )
    assert _empty_front_reason(configs.assign(seeds_at_chance=[2, 1])) == (
        "No configuration is on the front, none is feasible: 2 of 2 have a run that did not "
        "learn."
    )


def _queue(running: int = 0, waiting: int = 0, retry: int = 0) -> QueueStatus:
    return QueueStatus(
        planned=4, complete=1, failed=1, running=running, waiting=waiting, finished_trials=2,
        retry_on_resume=retry, seeds_in_progress=0,
    )  # fmt: skip


def test_the_unfinished_note_names_only_the_states_points_are_in() -> None:
    """Running, waiting and retry counts in that order, a zero count left out; a study with
    none of them is finished and gets no note."""
    assert unfinished_note(_queue()) is None
    for status, left in [
        (_queue(running=2, waiting=3, retry=1), "2 running, 3 waiting, 1 failed with a retry left"),
        (_queue(waiting=3), "3 waiting"),
        (_queue(running=1), "1 running"),
        (_queue(retry=2), "2 failed with a retry left"),
    ]:
        note = unfinished_note(status)
        assert note is not None
        assert note.text.startswith(f"**Not finished:** design points {left}. "), note.text


def _overview_items(
    study: optuna.Study,
    meta: StudyMeta,
    *,
    drop: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> list[str]:
    """The overview's lines of `study`'s summary, its runs `drop` marks left out."""
    runs, config_cols = runs_table(study)
    runs = runs if drop is None else runs[~drop(runs)]
    configs = mark_front(aggregate_over_seeds(mask_runs_at_chance(runs), config_cols), meta)
    blocks = summary_blocks(
        meta, StorageLocation("journal.log", "journal.log"), runs, configs, failed_trials(study),
        config_cols, varied_fields(study), [], [],
    )  # fmt: skip
    return list(blocks[0].items)


def test_the_overview_counts_trials_configurations_seeds_runs_and_feasible_ones(
    tmp_path: Path,
) -> None:
    """Two points, one failed attempt, paper's seed 1 missing: 2 trials, 3 runs, seeds per
    configuration 1 and 2 (smallest first), 2 runs without blur and 1 with, and the
    constraint with how many configurations meet it (none at 99 %, both at 0 %)."""
    space = {"placement": ["none", "paper"]}
    bound = {"metric": "accuracy", "min": 99.0}
    study = make_study(tmp_path / "s", space, seeds=[0, 1], constraints=[bound])
    objectives = (Objective(metric="accuracy", direction="maximize"),)
    meta = StudyMeta("s", None, objectives, (Constraint(**bound),))

    def drop(runs: pd.DataFrame) -> pd.Series:
        return (runs["placement"] == "paper") & (runs["seed"] == 1)

    items = _overview_items(study, meta, drop=drop)
    assert items[1] == (
        "finished trials: 2; failed or pruned attempts: 1, 0 of them run again; "
        "configurations: 2; runs (configuration × seed): 3"
    )
    assert items[2] == "seeds per configuration: 1, 2"
    assert items[3] == "runs without blur: 2; with blur: 1"
    assert "constraints: 99 ≤ accuracy; feasible configurations: 0" in items
    met = StudyMeta("s", None, objectives, (Constraint(metric="accuracy", min=0.0),))
    assert "constraints: 0 ≤ accuracy; feasible configurations: 2" in _overview_items(study, met)
    assert not any(i.startswith("constraints:") for i in _overview_items(study, StudyMeta(
        "s", None, objectives)))  # fmt: skip


def test_the_overview_lists_chosen_settings_apart_from_defaults_and_no_unused_one(
    tmp_path: Path,
) -> None:
    """No configuration blurs: the filter's settings are used by none and not listed; the
    placement the study chose is fixed, the learning rate it left is at its default."""
    study = make_study(
        tmp_path / "s", {"augment": [False, True]}, seeds=[0], base={"placement": "none"}
    )
    meta = StudyMeta("s", None, (Objective(metric="accuracy", direction="maximize"),))
    items = _overview_items(study, meta)
    assert "varied: augment" in items and "fixed: placement=none" in items
    defaults = next(i for i in items if i.startswith("at their defaults: "))
    assert "lr=0.05" in defaults and "placement" not in defaults
    assert not any("filter_size=" in i for i in items)
    assert "runs without blur: 2; with blur: 0" in items
    assert not any(i.startswith("runs left out") for i in items)  # no point was drawn again


def test_the_summary_reads_in_order_and_leaves_out_what_it_has_nothing_for(
    tmp_path: Path,
) -> None:
    """The note of an unfinished study first, then the overview and the dashboard; a section
    without answers has no heading; a figure not drawn says why, one drawn is linked with its
    caption and note; the table of every configuration only where some are off the front, the
    failed attempts only where there are some."""
    study = make_study(tmp_path / "s", {"placement": ["none", "paper"]}, seeds=[0], failed=1)
    runs, config_cols = runs_table(study)
    meta = StudyMeta("s", None, (Objective(metric="accuracy", direction="maximize"),))
    configs = mark_front(aggregate_over_seeds(runs, config_cols), meta)
    answer = Answer("X1", "Does it?", "It does.")
    figure = plt.figure()
    outcomes = [figs.FigureOutcome("filter_tv", None, "no filters"),
                figs.FigureOutcome("adversarial_accuracy", figure, "Pooled.")]  # fmt: skip
    location = StorageLocation("journal.log", "runs/s/journal.log")

    def blocks(configs: pd.DataFrame, failed: pd.DataFrame) -> list:
        return summary_blocks(
            meta, location, runs, configs, failed, config_cols, ["placement"],
            [("Empty", []), ("Full", [answer])], outcomes, Paragraph("**Not finished:** …"),
        )  # fmt: skip

    written = blocks(configs, failed_trials(study))
    plt.close(figure)
    assert written[0] == Paragraph("**Not finished:** …") and isinstance(written[1], Bullets)
    assert written[2].text.startswith("Browse the trials interactively: `optuna-dashboard "
                                      "runs/s/journal.log`")  # fmt: skip
    headings = [b.text for b in written if isinstance(b, Heading)]
    assert headings == ["Full", "Pareto front", "All configurations", "Figures",
                        "Failed attempts", "How the numbers are made"]  # fmt: skip
    assert Bullets(("**X1 — Does it?** It does.",)) in written
    assert Paragraph("*filter_tv*: no filters") in written
    caption = f"{figs.CAPTIONS['adversarial_accuracy']} Pooled."
    assert FigureBlock("figures/adversarial_accuracy.png", caption) in written
    # one configuration, on the front, and no failure: neither table
    alone = blocks(configs[configs["pareto"]], failed_trials(study).iloc[:0])
    assert [b.text for b in alone if isinstance(b, Heading)] == [
        "Full", "Pareto front", "Figures", "How the numbers are made"
    ]
    # no configuration: the front says why instead of a table
    empty = blocks(configs.iloc[:0], failed_trials(study).iloc[:0])
    front = empty[[b for b in empty].index(Heading("Pareto front")) + 1]
    assert front == Paragraph("No configuration is on the front: none has a finished run.")
