"""The spec loader: bad files are rejected with a message naming the problem; good ones load."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
import yaml

from ablate.spec import (
    MAX_CHECKED_POINTS,
    MAX_RANGE_VALUES,
    SpecError,
    StudySpec,
    identity_differences,
    load_spec,
)
from ablate.variant_config import VariantConfig

SPECS = Path(__file__).parent / "data" / "specs"

# file, fragments the message must contain (the key path, the bad value, what is allowed)
BAD_SPECS = [
    ("bad_unknown_key.yaml", ["top level", "unknown key 'samplr'", "did you mean 'sampler'"]),
    ("bad_unknown_field.yaml", ["space.paddng", "unknown field 'paddng'", "valid fields:"]),
    ("bad_wrong_type.yaml", ["base.width", "'wide'", "valid integer"]),
    ("bad_empty_choices.yaml", ["space.padding.choices", "at least 1 item"]),
    ("bad_unknown_condition.yaml", ["space.sigma.when.filtr", "unknown parameter 'filtr'"]),
    (
        "bad_condition_on_base.yaml",
        [
            "space.filter_size.when.placement",
            "'placement' is set in base, so a condition on it",
            "the space has no other parameter a condition could name",
        ],
    ),
    ("bad_padding_mode.yaml", ["space.padding.choices[1]", "'mirror'", "'reflect'", "'circular'"]),
    ("bad_misspelled_padding.yaml", ["base.padding", "'reflec'", "did you mean 'reflect'"]),
    ("bad_broken_yaml.yaml", ["broken YAML", "line 4"]),
    ("bad_float_on_grid.yaml", ["space.lr", "grid sampler needs finite values"]),
    ("bad_unknown_metric.yaml", ["objectives[0].metric", "accuracy_vs_shift_crop", "'accuracy'"]),
    ("bad_missing_sigma.yaml", ["filter='gaussian'", "needs sigma"]),
    ("bad_tpe_without_trials.yaml", ["sampler", "needs trials"]),
    ("bad_seed_in_base.yaml", ["base.seed", "seeds:"]),
    ("bad_condition_value.yaml", ["space.sigma.when.filter", "'gaussian' is never taken"]),
    ("bad_model.yaml", ["base.model", "'resnet' is unknown", "did you mean 'resnet18'"]),
    ("bad_image_size.yaml", ["base: image_size=64", "needs dataset 'folder'", "at 32"]),
    ("bad_reflect_crop_pad.yaml", ["base: crop_pad=32 with crop_fill 'reflect'", "<= 31"]),
    ("bad_seed_range.yaml", ["seeds[1]", "greater than or equal to 0", "got -1"]),
    ("bad_misspelled_metric.yaml", ["objectives[0].metric", "did you mean 'accuracy'"]),
    ("bad_duplicate_key.yaml", ["broken YAML", "line 5", "'filter_size' is given twice"]),
    ("bad_quoted_number.yaml", ["space.filter_size.choices[0]", "'3' is a string", "int"]),
    ("bad_infinite_epochs.yaml", ["base.epochs", "inf", "finite number"]),
    ("bad_empty_condition.yaml", ["space.filter_size.when.placement", "[] accepts no value"]),
    ("bad_conditions_never_together.yaml", ["space.padding: never set", "never hold together"]),
    ("bad_constraint_bounds.yaml", ["constraints[0]", "min=90 > max=10"]),
    ("bad_boolean_seed.yaml", ["seeds[1]", "a seed is an int, got True"]),
    ("bad_sampler_seed.yaml", ["sampler.seed", "greater than or equal to 0", "got -5"]),
    ("bad_taps_without_custom.yaml", ["base:", "taps are only used with filter='custom'"]),
    ("bad_zero_sum_taps.yaml", ["base:", "taps=[1.0, -1.0] is invalid", "must not sum to 0"]),
    ("bad_huge_int_range.yaml", ["space.data_seed.int", "100000001 values", "sampler tpe"]),
    ("no_such_file.yaml", ["cannot read the spec", "No such file"]),
]


@pytest.mark.parametrize(("name", "fragments"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_rejected_with_a_message_naming_the_problem(name, fragments):
    path = SPECS / name
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message and "pydantic" not in message


def test_spec_error_is_a_value_error():
    with pytest.raises(ValueError, match="no_such_file"):
        load_spec(SPECS / "no_such_file.yaml")


def test_example_spec_loads_and_its_grid_covers_the_conditional_space():
    spec = load_spec(SPECS / "example.yaml")
    points = spec.grid_points()
    # filter_size 3 x padding 3 x filter 2 x width 2; sigma is a fixed value, not a grid axis
    assert len(points) == 36
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    expected = itertools.product(
        [1, 3, 5], ["zeros", "reflect", "circular"], ["binomial", "gaussian"], [8, 16]
    )
    axes = ("filter_size", "padding", "filter", "width")
    assert {tuple(p[a] for a in axes) for p in points} == set(expected)
    point = next(p for p in points if p["filter"] == "gaussian")
    gaussian = spec.config(point | spec.fixed_values(point), seed=1)
    assert gaussian.sigma == 1.0 and gaussian.seed == 1


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _minimal(**changes) -> dict:
    data = {
        "name": "t",
        "objectives": [{"metric": "accuracy", "direction": "maximize"}],
        "sampler": {"name": "grid"},
    }
    return data | changes


def test_conditional_choice_branches_only_where_its_condition_holds(tmp_path):
    space = {
        "filter": {"choices": ["binomial", "gaussian", "box"]},
        "sigma": {"choices": [0.5, 1.0, 2.0], "when": {"filter": ["gaussian"]}},
        "filter_size": {"int": [2, 6], "step": 2},
    }
    spec = load_spec(_write(tmp_path, _minimal(space=space)))
    points = spec.grid_points()
    # (binomial + box) x 3 sizes + gaussian x 3 sigmas x 3 sizes
    assert len(points) == 2 * 3 + 3 * 3
    assert all(("sigma" in p) == (p["filter"] == "gaussian") for p in points)
    assert {p["filter_size"] for p in points} == {2, 4, 6}


def test_resolve_skips_inactive_parameters_for_any_pick(tmp_path):
    space = {
        "filter": {"choices": ["binomial", "gaussian"]},
        "sigma": {"float": [0.5, 2.0], "when": {"filter": "gaussian"}},
        "lr": {"float": [0.01, 0.2], "log": True},
    }
    spec = load_spec(_write(tmp_path, _minimal(space=space, sampler={"name": "tpe", "trials": 3})))
    rng = random.Random(0)
    for _ in range(20):
        values = spec.resolve(
            lambda _n, p: rng.choice(p.choices) if p.choices else rng.uniform(*p.float_range)
        )
        assert ("sigma" in values) == (values["filter"] == "gaussian")
        spec.config(values, seed=0)  # every resolved point is a valid VariantConfig


def test_base_overrides_replace_base_values_and_are_validated(tmp_path):
    path = _write(tmp_path, _minimal(base={"epochs": 3}))
    assert load_spec(path, {"steps": 7}).base == {"epochs": 3, "steps": 7}
    with pytest.raises(SpecError, match=r"base\.steps: 0 is not allowed"):
        load_spec(path, {"steps": 0})
    with_steps = _write(tmp_path, _minimal(base={"epochs": 3, "steps": 5}))
    assert load_spec(with_steps, {"epochs": 2, "steps": None}).base == {"epochs": 2}


def test_networks_of_your_own_are_checked_when_the_spec_loads(tmp_path, user_nets):
    space = {"model": {"choices": ["vgg", f"{user_nets}:small_cnn", f"{user_nets}:KeywordNet"]}}
    spec = load_spec(_write(tmp_path, _minimal(space=space)))
    assert [p["model"] for p in spec.grid_points()] == space["model"]["choices"]
    space["model"]["choices"][2] = f"{user_nets}:small_cnnn"
    with pytest.raises(SpecError, match=r"choices\[2\]: .* has no attribute 'small_cnnn'"):
        load_spec(_write(tmp_path, _minimal(space=space)))
    space["model"]["choices"][2] = f"{user_nets}:KeywordNet"
    with pytest.raises(SpecError, match="'user_nets:KeywordNet' takes no 'width' argument"):
        load_spec(_write(tmp_path, _minimal(space=space, base={"width": 8})))


def test_base_overrides_on_a_base_that_is_not_a_mapping_give_a_spec_error(tmp_path):
    path = _write(tmp_path, _minimal(base=["epochs", 3]))
    with pytest.raises(SpecError, match=r"base: .*valid dictionary"):
        load_spec(path, {"epochs": 2})


def test_dumped_spec_reloads_to_the_same_study(tmp_path):
    spec = load_spec(SPECS / "example.yaml")
    again = tmp_path / "again.yaml"
    again.write_text(spec.as_yaml())
    reloaded = load_spec(again)
    assert reloaded.fingerprint() == spec.fingerprint()
    assert reloaded.grid_points() == spec.grid_points()


def test_fingerprint_ignores_trial_count_but_not_the_space(tmp_path):
    space = {"lr": {"float": [0.01, 0.2]}}
    a = StudySpec.model_validate(_minimal(space=space, sampler={"name": "random", "trials": 3}))
    b = StudySpec.model_validate(_minimal(space=space, sampler={"name": "random", "trials": 9}))
    c = StudySpec.model_validate(
        _minimal(space={"lr": {"float": [0.01, 0.3]}}, sampler={"name": "random", "trials": 3})
    )
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_a_spec_written_otherwise_defines_the_same_trials():
    """What a resume compares: a default spelled out, a `when:` value alone or in a list and
    the seeds in another order change no trial; a changed value is named with its stored and
    new values, and reordered choices are a change (Optuna's distributions list them)."""
    space = {
        "placement": {"choices": ["none", "paper"]},
        "filter_size": {"choices": [1, 3], "when": {"placement": "paper"}},
    }
    stored = StudySpec.model_validate(_minimal(space=space, seeds=[0, 1])).identity()
    written_otherwise = StudySpec.model_validate(_minimal(
        base={"lr": VariantConfig().lr},
        space={**space, "filter_size": {"choices": [1, 3], "when": {"placement": ["paper"]}}},
        seeds=[1, 0],
    )).identity()  # fmt: skip
    assert identity_differences(stored, written_otherwise) == []
    changed = StudySpec.model_validate(_minimal(
        base={"epochs": 8}, space={**space, "placement": {"choices": ["paper", "none"]}}
    )).identity()  # fmt: skip
    assert identity_differences(stored, changed) == [
        f"base.epochs: {VariantConfig().epochs} → 8",
        "seeds: [0, 1] → [0]",
        'space.placement.choices: ["none", "paper"] → ["paper", "none"]',
    ]


@pytest.mark.parametrize(
    ("parameter", "fragment"),
    [
        ({"choices": [1], "int": [1, 2]}, "exactly one of"),
        ({"int": [5, 1]}, "low > high"),
        ({"float": [0.0, 1.0], "log": True}, "positive range"),
        ({"choices": [3, 3]}, "repeat a value"),
        ({"choices": [2, 2.0, 3]}, "2 and 2.0 are equal"),
        ({"choices": [1, 2], "step": 1}, "only to int and float ranges"),
        (3, "values fixed for every trial belong under base"),
        ({"float": [1.5, 2.5]}, "does not take fractional numbers"),
    ],
)
def test_malformed_parameters_are_rejected(tmp_path, parameter, fragment):
    sampler = {"name": "random", "trials": 2}
    path = _write(tmp_path, _minimal(space={"filter_size": parameter}, sampler=sampler))
    with pytest.raises(SpecError, match=r"space\.filter_size") as caught:
        load_spec(path)
    assert fragment in str(caught.value)


ACCURACY = {"metric": "accuracy", "direction": "maximize"}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (
            {"base": {"filter_size": True}},
            "base.filter_size: True is not allowed: expected a whole",
        ),
        ({"space": {"width": {"choices": [True, 8]}}}, "space.width.choices[0]: True is not"),
        ({"seeds": []}, "seeds: List should have at least 1 item"),
        ({"seeds": [1, 1]}, "seeds repeat a value: [1, 1]"),
        ({"objectives": [ACCURACY, ACCURACY]}, "objectives repeat a metric: ['accuracy', 'acc"),
        ({"name": "../evil"}, "name: String should match pattern"),
        ({"base": {"device": "cuda"}}, "base.device: 'device' cannot be set here: the runner"),
        ({"space": {"width": {"int": [8, 16], "step": 0.5}}}, "step of an int range must be a"),
        ({"space": {"lr": {"float": [0.1, 1.0], "log": True, "step": 0.1}}}, "log: true cannot"),
        ({"space": {"width": {"int": [8, 16], "step": 0}}}, "space.width.step: Input should be"),
        ({"sampler": {"name": "tpe", "trials": 2, "population": 4}}, "population applies only"),
        ({"sampler": {"name": "grid", "trials": 3}}, "grid runs every point exactly once"),
        ({"max_retries": True}, "max_retries: expected a whole number, got the boolean True"),
        ({"sampler": {"name": "tpe", "trials": True}}, "sampler.trials: expected a whole number"),
        ({"space": {"augment": {"int": [0, 1]}}}, "space.augment.int: field 'augment' is not"),
        ({"base": {"width": 8}, "space": {"width": {"choices": [8, 16]}}}, "base.width: also"),
        ({"base": {"momentum": 1.0}}, "base.momentum: 1.0 is not allowed: Input should be less"),
        ({"base": {"lr": 0}}, "base.lr: 0 is not allowed: Input should be greater than 0"),
        (  # refused at once: the filter's taps had been built for minutes
            {"space": {"filter_size": {"choices": [3, 100_000]}}},
            "space.filter_size.choices[1]: 100000 is not allowed: Input should be less than or "
            "equal to 4096",
        ),
        (  # the value parameter, not base, makes the trial invalid
            {"base": {"placement": "blur_before_max"}, "space": {"subsample": {"value": "aps"}}},
            "space: the trial with subsample='aps' is invalid: subsample 'aps' needs",
        ),
    ],
)
def test_bad_fields_are_named_with_what_is_accepted(tmp_path, changes, fragment):
    """YAML's `true` where a number goes (read as 1 before), and the checks no other test
    reaches: each refused by the field it concerns."""
    sampler = {"name": "random", "trials": 2} if "space" in changes else {"name": "grid"}
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, _minimal(sampler=sampler) | changes))
    assert fragment in str(caught.value)


CONDITIONAL_APS = {
    "placement": {"choices": ["none", "blur_before_max"]},
    "subsample": {"choices": ["fixed", "aps"], "when": {"placement": "blur_before_max"}},
}


#: Enough batch sizes that a sampled space's corners outnumber `MAX_CHECKED_POINTS`.
MANY_BATCH_SIZES = {"batch_size": {"choices": list(range(1, MAX_CHECKED_POINTS + 2))}}


@pytest.mark.parametrize("extra", [{}, MANY_BATCH_SIZES], ids=["corners", "beyond_corners"])
def test_a_sampled_space_is_checked_in_every_combination_of_its_choices(tmp_path, extra):
    """A random or TPE study may draw any combination: one that no config accepts is refused
    when the spec loads, as on a grid, also where only a condition makes it reachable (and
    also where the space is too large to build every combination)."""
    sampler = {"name": "random", "trials": 4}
    path = _write(tmp_path, _minimal(space=CONDITIONAL_APS | extra, sampler=sampler))
    with pytest.raises(SpecError, match=r"subsample='aps'.*needs placement 'paper'"):
        load_spec(path)


def test_conditions_that_form_a_cycle_are_rejected(tmp_path):
    space = {
        "filter": {"choices": ["binomial", "box"], "when": {"padding": "zeros"}},
        "padding": {"choices": ["zeros", "reflect"], "when": {"filter": "box"}},
    }
    with pytest.raises(SpecError, match="cycle"):
        load_spec(_write(tmp_path, _minimal(space=space)))


SHIPPED = sorted((Path(__file__).parents[1] / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_studies_load_and_every_point_is_a_valid_variant(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    points = spec.grid_points()
    assert points, f"{path.name} plans no trial"
    for point in points:
        for seed in spec.seeds:
            assert isinstance(spec.config(point, seed), VariantConfig)


def test_yaml_reads_exponents_as_numbers_and_merge_keys_as_yaml_does(tmp_path):
    """`5e-4` is a number (YAML 1.1 read it as a string); `<<: *anchor` merges, and a key it
    brings may be given again."""
    text = """
name: t
base: {weight_decay: 5e-4, lr: 1.5E-2}
space:
  filter_size: &sizes {choices: [3, 5]}
  width: {<<: *sizes, choices: [8, 16]}
objectives: [{metric: accuracy, direction: maximize}]
sampler: {name: grid}
"""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.base == {"weight_decay": 5e-4, "lr": 1.5e-2}
    assert spec.space["width"].choices == [8, 16]
    path.write_text(text.replace("width: {<<: *sizes, choices: [8, 16]}", "? [a, b]\n  : 1"))
    with pytest.raises(SpecError, match="broken YAML"):
        load_spec(path)


def test_a_sampled_int_range_may_be_wide(tmp_path: Path) -> None:
    """A sampler draws from a range without listing it; only a grid, which runs every value,
    is held to a bounded count."""
    path = tmp_path / "wide.yaml"
    path.write_text(
        "name: wide\nspace:\n  steps: {int: [10, 200000], log: true}\n"
        "objectives: [{metric: accuracy, direction: maximize}]\n"
        "sampler: {name: random, trials: 2}\n"
    )
    assert load_spec(path).space["steps"].first_value == 10


@pytest.mark.parametrize(
    ("int_range", "points"),
    [([8, 8], 1), ([1, 10000], 10_000), ([0, 19998, 2], 10_000), ([1, 10001], None)],
)
def test_a_grid_runs_an_int_range_of_up_to_max_range_values(tmp_path, int_range, points):
    """A one-value range is a range; MAX_RANGE_VALUES values are allowed, counted by the step;
    one more is refused."""
    low, high, *step = int_range
    parameter = {"int": [low, high], **({"step": step[0]} if step else {})}
    path = _write(tmp_path, _minimal(space={"data_seed": parameter}))
    if points is None:
        with pytest.raises(SpecError, match=f"than the {MAX_RANGE_VALUES} a grid can run"):
            load_spec(path)
    else:
        assert len(load_spec(path).grid_points()) == points


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        (
            {"filter_size": {}},
            "space.filter_size: give exactly one of choices, int, float, value (got none)",
        ),
        ({"width": {"int": [8, 32], "log": True, "step": 2}}, "log: true cannot be combined"),
        ({"lr": {"float": [0.01, 1.0], "log": True, "step": 1}}, "log: true cannot be combined"),
        ({"padding": {"choices": ["zeros", "reflect"], "log": True}}, "only to int and float"),
        ({"augment": {"float": [0.1, 0.5]}}, "field 'augment' does not take fractional numbers"),
        (
            {"width": {"int": [8, 16]}, "filter_size": {"choices": [3], "when": {"width": 8}}},
            "space.filter_size.when.width: conditions may name only choices or value parameters",
        ),
        (
            {
                "filter": {"choices": ["binomial", "box"], "when": {"filter": "box"}},
                "width": {"choices": [8, 16]},
            },
            "space.filter.when.filter: space.filter cannot be conditioned on its own value; "
            "conditions may name the other space parameters: width",
        ),
    ],
)
def test_parameters_a_sampler_could_not_draw_are_named_with_the_reason(tmp_path, space, fragment):
    """No kind at all, a step beside `log: true` (an int range's step 1 is no step), `log`
    on choices, a float range on a field of another type, a condition on a range, and a
    condition on the parameter itself (which named the parameter as unknown)."""
    path = _write(tmp_path, _minimal(space=space, sampler={"name": "random", "trials": 2}))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert fragment in str(caught.value)


def test_ranges_that_a_field_takes_load(tmp_path):
    """An int range on a float field, `step: 1` beside `log: true` on an int range, and a
    kind left null beside the one given."""
    space = {
        "epochs": {"int": [1, 6]},
        "width": {"int": [8, 32], "log": True, "step": 1},
        "filter_size": {"choices": None, "int": [1, 3]},
    }
    spec = load_spec(_write(tmp_path, _minimal(space=space, sampler={"name": "tpe", "trials": 2})))
    assert [spec.space[n].kind for n in space] == ["int", "int", "int"]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"sampler": {"name": "random", "trials": 0}}, "sampler.trials: Input should be greater"),
        ({"sampler": {"name": "nsga2", "trials": 4, "population": 1}}, "sampler.population: "),
        ({"sampler": {"name": "random", "trials": 2, "population": 4}}, "population applies"),
        ({"name": ".."}, "name: String should match pattern"),
        ({"name": "_hidden"}, "name: String should match pattern"),
        ({"name": "a/b"}, "name: String should match pattern"),
        ({"base": {"padding": 3}}, "base.padding: 3 is not allowed: Input should be 'zeros'"),
        ({"base": {"taps": "1 2 1"}}, "base.taps: '1 2 1' is not allowed"),
        ({"space": {"taps": {"int": [1, 3]}}}, "space.taps.int: field 'taps' is not numeric"),
    ],
)
def test_bad_top_level_values_are_named_with_what_is_accepted(tmp_path, changes, fragment):
    """A sampler's trials and population, a study name that would leave `runs/` or hide in
    it, a number where only names go, and a range on a field of tuples."""
    sampler = {"name": "random", "trials": 2} if "space" in changes else {"name": "grid"}
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, _minimal(sampler=sampler) | changes))
    assert fragment in str(caught.value)


def test_a_missing_key_is_named_without_the_whole_spec(tmp_path):
    data = _minimal()
    del data["objectives"]
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, data))
    assert caught.value.problems == ["objectives: Field required"]


def test_defaults_retry_twice_and_zero_retries_are_allowed(tmp_path):
    assert load_spec(_write(tmp_path, _minimal())).max_retries == 2
    assert load_spec(_write(tmp_path, _minimal(max_retries=0))).max_retries == 0
    assert load_spec(_write(tmp_path, _minimal())).seeds == [0]


def test_a_cycle_is_named_by_the_parameters_on_it(tmp_path):
    space = {
        "filter": {"choices": ["binomial", "box"], "when": {"padding": "zeros"}},
        "padding": {"choices": ["zeros", "reflect"], "when": {"filter": "box"}},
    }
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, _minimal(space=space)))
    assert caught.value.problems == ["space: conditions form a cycle: filter -> padding -> filter"]


def test_a_constraint_may_pin_a_metric_to_one_value_and_holds_at_its_bounds():
    """min == max is a bound some trial meets; a value at a bound meets it; NaN and the
    infinities meet none; Optuna's values are <= 0 exactly when a bound holds."""
    from ablate.spec import Constraint

    both = Constraint(metric="accuracy", min=50, max=50)
    assert both.holds(50.0) and not both.holds(49.0) and not both.holds(51.0)
    low = Constraint(metric="accuracy", min=10)
    assert low.holds(10.0) and not low.holds(9.0)
    assert not low.holds(math.inf) and not low.holds(math.nan)
    assert not Constraint(metric="peak_memory_mb", max=5).holds(-math.inf)
    between = Constraint(metric="accuracy", min=10, max=20)
    assert not between.holds(25.0) and not between.holds(5.0)
    assert between.violations(12.0) == {"accuracy>=10": -2.0, "accuracy<=20": -8.0}
    assert between.violations(25.0) == {"accuracy>=10": -15.0, "accuracy<=20": 5.0}


def test_value_parameters_are_not_grid_axes(tmp_path):
    """A `value:` parameter is filled in by `fixed_values`, never a key of a grid point."""
    space = {
        "filter": {"choices": ["binomial", "gaussian"]},
        "sigma": {"value": 1.0, "when": {"filter": "gaussian"}},
    }
    spec = load_spec(_write(tmp_path, _minimal(space=space)))
    assert spec.grid_points() == [{"filter": "binomial"}, {"filter": "gaussian"}]
    assert spec.fixed_values({"filter": "gaussian"}) == {"sigma": 1.0}


def test_a_sampled_space_is_checked_in_combinations_no_single_axis_reaches(tmp_path):
    """crop_pad 4 is valid beside shift 4 and shift 8 beside crop_pad 8; only their other
    combination is invalid, and a small sampled space builds every combination."""
    space = {"crop_pad": {"choices": [8, 4]}, "shift": {"choices": [4, 8]}}
    data = _minimal(base={"diagonal": 0}, space=space, sampler={"name": "random", "trials": 2})
    with pytest.raises(SpecError, match=r"crop_pad=4, shift=8 is invalid: .*crop_pad=4 must be"):
        load_spec(_write(tmp_path, data))


def test_at_most_three_invalid_trials_are_listed_and_the_rest_counted(tmp_path):
    space = {"crop_pad": {"choices": [0, 1, 2, 3, 4, 5]}}
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, _minimal(space=space)))
    problems = caught.value.problems
    assert len(problems) == 4 and problems[-1] == "space: ... and 3 more invalid trials"


def test_a_parameter_behind_a_chain_of_conditions_is_checked_under_every_link(tmp_path):
    """Past MAX_CHECKED_POINTS each parameter is tried under every value of the parameters
    its conditions name, also through another conditional parameter."""
    space = {
        "placement": {"choices": ["paper", "blur_before_max"]},
        "antialias_stem": {"choices": [True, False], "when": {"placement": "blur_before_max"}},
        "subsample": {"choices": ["fixed", "aps"], "when": {"antialias_stem": False}},
        **MANY_BATCH_SIZES,
    }
    path = _write(tmp_path, _minimal(space=space, sampler={"name": "random", "trials": 4}))
    with pytest.raises(SpecError, match=r"placement='blur_before_max'.*subsample='aps'"):
        load_spec(path)


def test_data_sources_take_the_most_images_over_every_conditional_choice(tmp_path):
    from ablate.spec import data_sources

    space = {
        "augment": {"choices": [False, True]},
        "train_size": {"choices": [], "when": {"augment": True}},
        "test_size": {"choices": [50, 200]},
    }
    for train_sizes in ([8000, 6000], [6000, 8000]):  # above the default 5000
        space["train_size"]["choices"] = train_sizes
        spec = load_spec(_write(tmp_path, _minimal(space=space)))
        assert data_sources(spec) == {("synthetic", None): (8000, 200)}


def test_a_null_written_in_base_is_still_checked_when_other_fields_are_overridden(tmp_path):
    """Only an override of None removes a key; `width: null` in the file stays an error."""
    path = _write(tmp_path, _minimal(base={"width": None}))
    with pytest.raises(SpecError, match=r"base\.width: None is not allowed"):
        load_spec(path, {"epochs": 2})
