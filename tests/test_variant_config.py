"""What a run's config reads (ablate.variant_config) and how metrics are stored (json_values)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ablate.variant_config import BLUR_FIELDS, VariantConfig, run_identity, unused_fields
from kernels.json_values import json_values


def test_metrics_become_json_types_inside_every_container() -> None:
    """numpy and torch scalars as numbers, tuples as lists, keys as text; with `finite`,
    NaN and infinities as None at any depth (strict JSON has no such numbers)."""
    value = {
        "a": np.float32(0.5),
        "b": (torch.tensor(3), np.int64(4)),
        (1, 2): [math.nan, {"c": math.inf}],
        "d": torch.device("cpu"),
    }
    stored = json_values(value, finite=True)
    assert stored == {"a": 0.5, "b": [3, 4], "(1, 2)": [None, {"c": None}], "d": "cpu"}
    assert type(stored["b"][0]) is int and type(stored["a"]) is float
    json.dumps(stored, allow_nan=False)
    assert math.isnan(json_values([math.nan])[0])


def test_without_blur_every_blur_field_is_unused() -> None:
    """Runs without blur that differ only in how they would have blurred are one run."""
    for config in ({"placement": "none"}, {"placement": "paper", "sites": 0}):
        assert set(unused_fields(config)) >= set(BLUR_FIELDS)
    baseline = VariantConfig(placement="none").model_dump(mode="json")
    other = {**baseline, "backend": "torch", "antialias_stem": False, "subsample": "aps"}
    assert run_identity(other) == run_identity(baseline)


@pytest.mark.parametrize(("steps", "epochs_unused"), [(10, True), (None, False), (math.nan, False)])
def test_epochs_are_unused_only_when_steps_are_set(steps: float | None, epochs_unused: bool):
    """A report table's missing `steps` is NaN: the epochs still set the budget then."""
    assert ("epochs" in unused_fields({"steps": steps, "epochs": 3})) == epochs_unused


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("seed", 2**63, "Input should be less than"),
        ("seed", "3", "a seed is an int, got '3'"),
        ("weight_decay", math.inf, "finite number"),
        # (it had been capped without a word)
        ("eval_size", 1001, "is larger than test_size=1000: the shift metrics take"),
    ],
)
def test_values_a_run_would_fail_on_are_refused(field: str, value: object, fragment: str):
    with pytest.raises(ValueError, match=field) as caught:
        VariantConfig(**{field: value})
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"placement": "blur_before_max", "subsample": "lps"}, "subsample 'lps' needs placement"),
        ({"filter": "custom"}, "filter 'custom' needs taps"),
        ({"placement": "blur_before_relu", "filter": "custom", "taps": (1, -1)}, "sum to 0"),
        ({"sigma": 0.0, "filter": "gaussian"}, "sigma\n  Input should be greater than 0"),
        ({"sites": False}, "expected a whole number, got the boolean False"),
        ({"shift": 4, "diagonal": 8, "crop_pad": 4}, "crop_pad=4 must be >= max(shift, diag"),
        ({"momentum": 1.0}, "momentum\n  Input should be less than 1"),
    ],
)
def test_configs_a_run_could_not_make_are_refused_with_the_reason(changes: dict, fragment: str):
    """Every subsampling but the fixed grid under blur_before_max, a custom filter without
    taps, a filter no placement could build (not only under 'paper'), a zero sigma, YAML's
    `false` as a count, crop shifts larger than the padding, a momentum of 1."""
    with pytest.raises(ValueError) as caught:
        VariantConfig(**changes)
    assert fragment in str(caught.value)


def test_edge_values_a_run_can_make_are_accepted() -> None:
    """All the test images as eval_size, no converted site, a padding just wide enough, and
    custom taps whatever the (unused) filter_size says."""
    VariantConfig(eval_size=1000, test_size=1000)
    VariantConfig(sites=0)
    VariantConfig(shift=8, diagonal=8, crop_pad=8)
    assert VariantConfig(filter="custom", taps=(1, 2, 1), filter_size=4).taps == (1, 2, 1)


def test_a_field_the_model_does_not_take_is_named_first_in_alphabetical_order(user_nets):
    with pytest.raises(ValueError, match="conv_padding='circular' is set, but model"):
        VariantConfig(model=f"{user_nets}:with_dropout", width=8, conv_padding="circular")


def test_unused_fields_follow_what_the_network_reads() -> None:
    """One tap on the fixed grid reads neither the filter nor the padding, but under APS or LPS
    the padding still wraps the dense max; custom taps make filter_size unused; a config that
    does not name its optimizer trains with SGD, which reads the momentum."""
    one_tap = {"placement": "paper", "filter": "binomial", "filter_size": 1}
    assert set(unused_fields({**one_tap, "subsample": "fixed"})) >= {"padding", "filter"}
    assert "padding" not in unused_fields({**one_tap, "subsample": "aps"})
    assert "padding" not in unused_fields({**one_tap, "filter_size": 3})
    custom = {"placement": "paper", "filter": "custom", "taps": [1, 2, 1], "filter_size": 1}
    assert set(unused_fields({**custom, "dataset": "cifar10"})) == {"filter_size"}
    assert "filter_size" not in unused_fields({"placement": "paper", "filter_size": 3})
    assert "momentum" not in unused_fields({})
    assert "momentum" in unused_fields({"optimizer": "adamw"})
