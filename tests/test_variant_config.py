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
