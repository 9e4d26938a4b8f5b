"""The study spec: the YAML file that describes a design space, its schema and its loader.

A spec names the fixed part of every trial (`base:`), the axes to vary (`space:`), what to
optimise (`objectives:`), how often to repeat each design point (`seeds:`), how to pick points
(`sampler:`) and where the study lives (`storage:`). `base:` and `space:` keys are the fields of
`ablate.variant_config.VariantConfig`, so every key and value is checked against it before a
single trial runs. `tests/data/specs/example.yaml` is a commented example.

Top-level keys
--------------
name         study name (letters, digits, `_ . -`); the Optuna study name and the default
             output folder `runs/<name>/`.
base         mapping of VariantConfig fields fixed for every trial (dataset, model, budget, ...).
space        mapping of VariantConfig field -> parameter (below). May be empty.
objectives   list of `{metric, direction}`; `metric` is a scalar metric of `run_variant`
             (SCALAR_METRICS), `direction` is `maximize` or `minimize`.
constraints  optional list of `{metric, min, max}` (at least one bound); a trial outside them is
             infeasible and left off the Pareto front. A trial with a seed that did not learn
             (accuracy not above chance, `ablate.chance`) is always infeasible.
seeds        list of training seeds (default `[0]`): every design point runs once per seed, its
             objective values are the means over seeds, each seed's metrics are kept.
sampler      `{name, trials, seed, population}`: `grid` runs every point of the space exactly
             once (no `trials`); `tpe`, `nsga2`, `random` need `trials` (design points in total,
             over all workers); `population` is NSGA-II's population size.
storage      null (a journal file `journal.log` in the output folder), a journal file path, or
             an RDB URL: `sqlite:///study.db` (one worker) or `postgresql://user@host/db`
             (several machines).
max_retries  how many times a failed trial (exception, NaN, killed worker) is run again (2);
             one that cannot be built is run again only on a resume.

Parameters (the values of `space:`), exactly one of
-------------------------------------------------
`{choices: [a, b, ...]}`          categorical; values are null, booleans, numbers or strings.
`{int: [lo, hi], step: 1, log: false}`   integers lo..hi (inclusive).
`{float: [lo, hi], log: false, step: null}`   floats in [lo, hi].
`{value: x}`                      a fixed value (useful with `when:`; otherwise use `base:`).
Any parameter may add `when: {other: value}` or `when: {other: [v1, v2]}`: it is set only in
trials where every named parameter (a `choices` or `value` parameter of `space:`) takes one of
the listed values; otherwise the field keeps its `base:`/default value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import typing
from collections.abc import Hashable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from ablate.variant_config import Int, Seed, VariantConfig

Scalar = bool | int | float | str | None

#: Metrics of `run_variant` that are single numbers, so they can be objectives or constraints.
SCALAR_METRICS: tuple[str, ...] = (
    "accuracy",
    "consistency_circular",
    "consistency_crop",
    "adversarial_circular",
    "adversarial_crop",
    "filter_tv_mean",
    "train_images_per_s",
    "infer_images_per_s",
    "peak_memory_mb",
    "forward_mflops",
    "train_seconds",
    "final_train_loss",
    "last_quarter_gain",
    "params",
    "n_test",
    "n_eval",
)
_PERCENT = (0.0, 100.0)
_NON_NEGATIVE = (0.0, math.inf)
#: The range a metric's values, and so their mean and its interval, lie in.
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "accuracy": _PERCENT,
    "consistency_circular": _PERCENT,
    "consistency_crop": _PERCENT,
    "adversarial_circular": _PERCENT,
    "adversarial_crop": _PERCENT,
    "last_quarter_gain": (-100.0, 100.0),  # points of accuracy
    "filter_tv_mean": _NON_NEGATIVE,
    "train_images_per_s": _NON_NEGATIVE,
    "infer_images_per_s": _NON_NEGATIVE,
    "peak_memory_mb": _NON_NEGATIVE,
    "train_seconds": _NON_NEGATIVE,
    "final_train_loss": _NON_NEGATIVE,  # cross-entropy
}
#: Metrics every run of a configuration measures alike, whatever its seed: one run gives them
#: exactly, and runs that tie are not luck.
DETERMINISTIC_METRICS = ("forward_mflops", "params", "n_test", "n_eval")
#: Metrics measured on CUDA only (NaN on the CPU, where no honest figure exists).
CUDA_ONLY_METRICS = ("peak_memory_mb",)
ScalarMetric = Literal[SCALAR_METRICS]  # type: ignore[valid-type]
SamplerName = Literal["grid", "tpe", "nsga2", "random"]
#: VariantConfig fields a spec may not set: seeds come from `seeds:`, the device from the runner.
RESERVED_FIELDS: dict[str, str] = {
    "seed": "list training seeds under the top-level `seeds:` key",
    "device": "the runner picks the device (see `--device`)",
}
PARAMETER_KINDS: tuple[str, ...] = ("choices", "int", "float", "value")


class SpecError(ValueError):
    """A spec file that cannot be run; `problems` holds one line per problem, each with its key."""

    def __init__(self, file: str | Path, problems: list[str]) -> None:
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(f"{self.file}: {problem}" for problem in problems))


class _Strict(BaseModel):
    """Rejects unknown keys with the list of allowed ones (pydantic's own message lists none)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = [info.alias or name for name, info in cls.model_fields.items()]
            unknown = [key for key in data if key not in allowed and key not in cls.model_fields]
            if unknown:
                raise ValueError(
                    f"unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), allowed)}; "
                    f"allowed keys: {', '.join(allowed)}"
                )
        return data


class Parameter(_Strict):
    """One axis of the space: exactly one of choices / int / float / value, maybe conditional."""

    choices: list[Scalar] | None = Field(None, min_length=1)
    int_range: tuple[int, int] | None = Field(None, alias="int")
    float_range: tuple[float, float] | None = Field(None, alias="float")
    value: Any = None
    step: float | None = Field(None, gt=0)
    log: bool = False
    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _is_mapping(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError(
                f"got {data!r}; a parameter is a mapping such as {{choices: [a, b]}}, "
                "{int: [lo, hi]}, {float: [lo, hi]} or {value: x}; "
                "values fixed for every trial belong under base:"
            )
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        kinds = [kind for kind in PARAMETER_KINDS if self._given(kind)]
        if len(kinds) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(PARAMETER_KINDS)} (got {kinds or 'none'})"
            )
        if self.kind in ("int", "float"):
            low, high = self.int_range or self.float_range  # type: ignore[misc]
            if low > high:
                raise ValueError(f"range [{low}, {high}] has low > high")
            if self.log and low <= 0:
                raise ValueError(f"log: true needs a positive range, got [{low}, {high}]")
            if self.log and self.step is not None and not (self.kind == "int" and self.step == 1):
                raise ValueError("log: true cannot be combined with a step")
            if self.kind == "int" and self.step is not None and self.step != int(self.step):
                raise ValueError(f"step of an int range must be a whole number, got {self.step}")
        elif self.step is not None or self.log:
            raise ValueError("step and log apply only to int and float ranges")
        choices = self.choices or []
        for i, later in enumerate(choices):
            # Optuna finds a choice by ==, so 2 and 2.0, or 1 and true, would be one point twice.
            equal = [earlier for earlier in choices[:i] if earlier == later]
            if equal:
                raise ValueError(
                    f"choices {choices} repeat a value: {equal[0]!r} and {later!r} are equal"
                )
        return self

    def _given(self, kind: str) -> bool:
        field = {"int": "int_range", "float": "float_range"}.get(kind, kind)
        given = field in self.model_fields_set
        return given and (kind == "value" or getattr(self, field) is not None)

    @property
    def kind(self) -> str:
        """'choices', 'int', 'float' or 'value'."""
        return next(kind for kind in PARAMETER_KINDS if self._given(kind))

    @property
    def finite_values(self) -> list[Scalar] | None:
        """Every value this parameter can take, or None for a float range."""
        if self.kind == "choices":
            return list(self.choices or [])
        if self.kind == "value":
            return [self.value]
        if self.kind == "int":
            low, high = self.int_range  # type: ignore[misc]
            return list(range(low, high + 1, int(self.step or 1)))
        return None

    @property
    def first_value(self) -> Any:
        """The first choice, the fixed value, or the low end of a range (not listed)."""
        if self.kind in ("int", "float"):
            return (self.int_range or self.float_range)[0]  # type: ignore[index]
        return self.finite_values[0]  # type: ignore[index]

    def conditions(self) -> dict[str, list[Scalar]]:
        """`when:` with every right-hand side as a list of accepted values."""
        return {k: v if isinstance(v, list) else [v] for k, v in self.when.items()}

    def is_active(self, values: Mapping[str, Any]) -> bool:
        """Whether every `when:` condition holds for the parameter values chosen so far."""
        return all(values.get(k, _INACTIVE) in v for k, v in self.conditions().items())


class Objective(_Strict):
    """A metric to optimise and its direction."""

    metric: ScalarMetric
    direction: Literal["maximize", "minimize"]


class Constraint(_Strict):
    """Bounds a trial's mean metric must respect to be feasible."""

    metric: ScalarMetric
    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _has_a_bound(self) -> Constraint:
        if self.min is None and self.max is None:
            raise ValueError(f"constraint on {self.metric!r} needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"constraint on {self.metric!r}: min={self.min:g} > max={self.max:g}, which no "
                "trial meets; give min <= max"
            )
        return self

    def holds(self, value: float) -> bool:
        """Whether a configuration's mean `value` meets the bounds (NaN does not)."""
        if not math.isfinite(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        """'min ≤ metric ≤ max', each bound where given."""
        bounds = (f"{self.min:g}" if self.min is not None else None, self.metric,
                  f"{self.max:g}" if self.max is not None else None)  # fmt: skip
        return " ≤ ".join(part for part in bounds if part is not None)

    def violations(self, value: float) -> dict[str, float]:
        """Optuna constraint values (<= 0 when satisfied), keyed by a readable name."""
        out = {}
        if self.min is not None:
            out[f"{self.metric}>={self.min:g}"] = self.min - value
        if self.max is not None:
            out[f"{self.metric}<={self.max:g}"] = value - self.max
        return out


class SamplerSpec(_Strict):
    """Which Optuna sampler picks design points, and how many (not for grid)."""

    name: SamplerName
    trials: Int | None = Field(None, ge=1)
    seed: Seed | None = None
    population: Int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _trials_match_sampler(self) -> SamplerSpec:
        if self.name == "grid" and self.trials is not None:
            raise ValueError("grid runs every point exactly once: remove trials")
        if self.name != "grid" and self.trials is None:
            raise ValueError(f"sampler {self.name!r} needs trials: N (design points in total)")
        if self.population is not None and self.name != "nsga2":
            raise ValueError("population applies only to the nsga2 sampler")
        return self


class StudySpec(_Strict):
    """A whole study; build it with `load_spec` so it is also checked against VariantConfig."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    base: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Parameter] = Field(default_factory=dict)
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    sampler: SamplerSpec
    storage: str | None = None
    max_retries: Int = Field(2, ge=0)

    @model_validator(mode="after")
    def _unique_lists(self) -> StudySpec:
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"objectives repeat a metric: {metrics}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat a value: {self.seeds}")
        return self

    @property
    def metric_names(self) -> list[str]:
        """The objectives' metric names, in order (Optuna's metric names)."""
        return [o.metric for o in self.objectives]

    def parameter_order(self) -> list[str]:
        """Space keys with every parameter after the ones its `when:` names (checked acyclic)."""
        order: list[str] = []

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if name in order:
                return
            for parent in self.space[name].when:
                if parent in trail:
                    raise ValueError(f"conditions form a cycle: {' -> '.join((*trail, parent))}")
                visit(parent, (*trail, parent))
            order.append(name)

        for name in self.space:
            visit(name, (name,))
        return order

    def resolve(self, pick: typing.Callable[[str, Parameter], Any]) -> dict[str, Any]:
        """Walk the space in dependency order; `pick(name, parameter)` gives each active value."""
        values: dict[str, Any] = {}
        for name in self.parameter_order():
            parameter = self.space[name]
            if parameter.is_active(values):
                is_fixed = parameter.kind == "value"
                values[name] = parameter.value if is_fixed else pick(name, parameter)
        return values

    def grid_points(
        self, values_of: typing.Callable[[str, Parameter], list[Scalar] | None] | None = None
    ) -> list[dict[str, Any]]:
        """Every active-parameter assignment of a finite space, each once (fixed values omitted);
        `values_of(name, parameter)` gives the values tried (default: every value it takes)."""
        points: list[dict[str, Any]] = [{}]
        for name in self.parameter_order():
            parameter = self.space[name]
            grown = []
            for point in points:
                active = parameter.is_active({**point, **self.fixed_values(point)})
                if not active or parameter.kind == "value":
                    grown.append(point)
                    continue
                values = (
                    parameter.finite_values if values_of is None else values_of(name, parameter)
                )
                if values is None:
                    raise ValueError(f"space.{name} is a float range: a grid needs finite values")
                grown.extend({**point, name: value} for value in values)
            points = grown
        return points

    def first_point(self) -> dict[str, Any]:
        """The active values when every parameter takes its first choice or low end."""
        return self.resolve(lambda _name, parameter: parameter.first_value)

    def fixed_values(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The `value:` parameters active given `point` (they are not Optuna parameters)."""
        return {
            name: value
            for name, value in self.resolve(lambda n, _p: point.get(n, _INACTIVE)).items()
            if self.space[name].kind == "value"
        }

    def config(self, values: Mapping[str, Any], seed: int, device: str = "auto") -> VariantConfig:
        """The VariantConfig of one trial: base, then the active space values, then seed/device."""
        return VariantConfig(**{**self.base, **values, "seed": seed, "device": device})

    def point_config(
        self, point: Mapping[str, Any], seed: int, device: str = "auto"
    ) -> VariantConfig:
        """The VariantConfig of a grid point (`grid_points`, which leaves its fixed values out)."""
        return self.config({**point, **self.fixed_values(point)}, seed, device)

    def identity(self) -> dict[str, Any]:
        """What defines the study's trials (not the trial count, storage or retries), as JSON."""
        identity = self.model_dump(mode="json", by_alias=True, exclude={"storage", "max_retries"})
        identity["sampler"].pop("trials")
        return identity

    def fingerprint(self) -> str:
        """Hash of :meth:`identity`."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def as_yaml(self) -> str:
        """The spec as run (defaults filled in, overrides applied), for `spec.yaml`."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["space"] = {
            name: parameter.model_dump(
                mode="json", by_alias=True, include=parameter.model_fields_set
            )
            for name, parameter in self.space.items()
        }
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


class _Inactive:
    """Marks a parameter that a condition names but that is itself inactive in this trial."""

    def __repr__(self) -> str:
        return "<inactive>"


_INACTIVE = _Inactive()


def load_spec(path: str | Path, base_overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """Read, validate and cross-check a spec file; `base_overrides` replace `base:` values.

    An override of None removes the key, so the field takes its default.

    Raises SpecError (a ValueError) listing every problem with its file and key path.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(path, [f"cannot read the spec: {err.strerror or err}"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpecError(path, [f"broken YAML: {where}{problem}"]) from None
    if not isinstance(data, dict):
        raise SpecError(path, [f"expected a mapping of keys at the top, got {type(data).__name__}"])
    base = data.get("base") or {}
    if base_overrides and isinstance(base, Mapping):  # else validation reports base's type
        merged = {**base, **base_overrides}
        data["base"] = {k: v for k, v in merged.items() if v is not None or k not in base_overrides}
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(path, [_describe(e) for e in err.errors()]) from None
    problems = check_against_variant_config(spec)
    if problems:
        raise SpecError(path, problems)
    return spec


def check_against_variant_config(spec: StudySpec) -> list[str]:
    """Every base/space key and value, every condition and reachable config checked; problems."""
    problems = [*_check_base(spec), *_check_space(spec)]
    if problems:
        return problems
    try:
        spec.parameter_order()
    except ValueError as err:
        return [f"space: {err}"]
    return _check_whole_configs(spec)


def _check_base(spec: StudySpec) -> Iterator[str]:
    for key, value in spec.base.items():
        problem = _field_problem(key, value)
        if problem:
            yield f"base.{key}: {problem}"
        elif key in spec.space:
            yield f"base.{key}: also varied under space.{key}; keep it in one place"


def _check_space(spec: StudySpec) -> Iterator[str]:
    for name, parameter in spec.space.items():
        where = f"space.{name}"
        unknown = _field_problem(name, None, check_value=False)
        if unknown:
            yield f"{where}: {unknown}"
            continue
        if parameter.kind == "choices":
            for i, choice in enumerate(parameter.choices or []):
                problem = _field_problem(name, choice)
                if problem:
                    yield f"{where}.choices[{i}]: {problem}"
        elif parameter.kind == "value":
            problem = _field_problem(name, parameter.value)
            if problem:
                yield f"{where}.value: {problem}"
        else:
            yield from _check_range(name, parameter)
        yield from _check_conditions(spec, name, parameter)
        if spec.sampler.name == "grid" and parameter.kind == "float":
            yield (
                f"{where}: the grid sampler needs finite values (choices, value or an int "
                "range); use choices, or sampler tpe/nsga2/random for a float range"
            )
        grid = spec.sampler.name == "grid"
        if grid and parameter.kind == "int" and _range_count(parameter) > MAX_RANGE_VALUES:
            yield (
                f"{where}.int: {parameter.int_range} holds {_range_count(parameter)} values, more "
                f"than the {MAX_RANGE_VALUES} a grid can run; give a step, a narrower range, or "
                "sampler tpe/nsga2/random"
            )


def _range_count(parameter: Parameter) -> int:
    low, high = parameter.int_range  # type: ignore[misc]
    return max(0, (high - low) // int(parameter.step or 1) + 1)


def _check_range(name: str, parameter: Parameter) -> Iterator[str]:
    where = f"space.{name}.{parameter.kind}"
    accepted = _python_types(VariantConfig.model_fields[name].annotation)
    if parameter.kind == "float" and float not in accepted:
        yield f"{where}: field {name!r} does not take fractional numbers; use int: or choices:"
        return
    if parameter.kind == "int" and not accepted & {int, float}:
        yield f"{where}: field {name!r} is not numeric; use choices:"
        return
    for i, end in enumerate(parameter.int_range or parameter.float_range or ()):
        problem = _field_problem(name, end)
        if problem:
            yield f"{where}[{i}]: {problem}"


def _check_conditions(spec: StudySpec, name: str, parameter: Parameter) -> Iterator[str]:
    for parent, accepted in parameter.conditions().items():
        where = f"space.{name}.when.{parent}"
        if parent not in spec.space or parent == name:
            others = [n for n in spec.space if n != name]
            if parent == name:
                named = f"space.{name} cannot be conditioned on its own value"
            elif parent in spec.base:
                named = (
                    f"{parent!r} is set in base, so a condition on it always holds or never does"
                )
            else:
                named = f"condition on unknown parameter {parent!r}{did_you_mean(parent, others)}"
            may = (
                f"conditions may name the other space parameters: {', '.join(others)}"
                if others
                else "the space has no other parameter a condition could name"
            )
            yield f"{where}: {named}; {may}"
            continue
        values = spec.space[parent].finite_values
        if spec.space[parent].kind not in ("choices", "value") or values is None:
            yield f"{where}: conditions may name only choices or value parameters"
            continue
        if not accepted:
            yield (
                f"{where}: [] accepts no value, so space.{name} is never set; list the values "
                f"of space.{parent} it applies under (it takes {values})"
            )
        for value in accepted:
            if value not in values:
                yield f"{where}: {value!r} is never taken by space.{parent} (it takes {values})"


def identity_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two :meth:`StudySpec.identity`, as :func:`comparable_identity`
    writes them, by the path to each differing value (``base.epochs: 6 → 8``)."""
    return _differences("", comparable_identity(old), comparable_identity(new))


#: How a difference names a key one side lacks.
_ABSENT = "(absent)"


def _differences(path: str, before: Any, after: Any) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            difference
            for key in sorted(before.keys() | after.keys())
            for difference in _differences(
                f"{path}.{key}" if path else key, before.get(key, _ABSENT), after.get(key, _ABSENT)
            )
        ]
    return [] if before == after else [_difference(path, before, after)]


def _difference(key: str, before: Any, after: Any) -> str:
    def text(value: Any) -> str:
        return value if value is _ABSENT else json.dumps(value, default=str)

    return f"{key}: {text(before)} → {text(after)}"


def comparable_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """An identity (:meth:`StudySpec.identity`, as any version stored it) with what does not
    change the study's trials written one way: every `base` field, its default where not given;
    each `when:` right-hand side as a list; the seeds in order. (Choices keep their order:
    a sampler's distributions, which Optuna compares, list them in it.)"""
    comparable = json.loads(json.dumps(identity, default=str))  # a deep copy
    defaults = VariantConfig.model_construct().model_dump(mode="json")
    comparable["base"] = {**defaults, **comparable.get("base", {})}
    for parameter in comparable.get("space", {}).values():
        when = parameter.get("when") or {}
        parameter["when"] = {k: v if isinstance(v, list) else [v] for k, v in when.items()}
    if isinstance(comparable.get("seeds"), list):
        comparable["seeds"] = sorted(comparable["seeds"])
    return comparable


#: The most values an int range of a grid may hold: it runs each.
MAX_RANGE_VALUES = 10_000
#: The most configurations a sampled (non-grid) space's check builds.
MAX_CHECKED_POINTS = 4096


def _tried_values(_name: str, parameter: Parameter) -> list[Scalar]:
    """Every choice, or both ends of a range: the values a sampled space's check tries."""
    if parameter.kind in ("int", "float"):
        return list(parameter.int_range or parameter.float_range)  # type: ignore[arg-type]
    return parameter.finite_values  # type: ignore[return-value]


def _condition_parents(spec: StudySpec, name: str) -> set[str]:
    """The parameters whose values decide, through `when:` (transitively), whether `name` is set."""
    parents = set(spec.space[name].when)
    return parents.union(*(_condition_parents(spec, parent) for parent in parents))


def _varying_one(spec: StudySpec, varied: str) -> typing.Callable[[str, Parameter], list[Scalar]]:
    """`grid_points` values that try each value of `varied` under every combination of the
    parameters its conditions name, with every other parameter at its first value."""
    parents = _condition_parents(spec, varied)

    def values_of(name: str, parameter: Parameter) -> list[Scalar]:
        if name == varied or name in parents:
            return _tried_values(name, parameter)
        return [parameter.first_value]

    return values_of


#: The fields that say which data a trial reads, and how many of its images.
DATA_FIELDS = ("dataset", "data_dir", "train_size", "test_size")


def data_sources(spec: StudySpec) -> dict[tuple[str, str | None], tuple[int, int]]:
    """Each (dataset, data_dir) the study's trials read, with the most training and test
    images a trial takes from it, so a run can look for them first: every choice (or range
    end) of DATA_FIELDS tried together, under the parameters their conditions name."""
    varied = {name for name in DATA_FIELDS if name in spec.space}
    tried = varied.union(*(_condition_parents(spec, name) for name in varied))

    def values_of(name: str, parameter: Parameter) -> list[Scalar]:
        return _tried_values(name, parameter) if name in tried else [parameter.first_value]

    sources: dict[tuple[str, str | None], tuple[int, int]] = {}
    for point in spec.grid_points(values_of):
        config = spec.point_config(point, seed=spec.seeds[0])
        most = sources.get((config.dataset, config.data_dir), (0, 0))
        sources[config.dataset, config.data_dir] = (
            max(most[0], config.train_size), max(most[1], config.test_size)
        )  # fmt: skip
    return sources


def _check_whole_configs(spec: StudySpec) -> list[str]:
    """Build full VariantConfigs: every grid point; for a sampled space every combination of
    its choices and range ends (its conditions followed), else, past MAX_CHECKED_POINTS, each
    value or end of each parameter under every combination of the parameters its conditions
    name, the others at their first."""
    if spec.sampler.name == "grid":
        points = spec.grid_points()
    elif math.prod(len(_tried_values(n, p)) for n, p in spec.space.items()) <= MAX_CHECKED_POINTS:
        points = spec.grid_points(_tried_values)
    else:
        points = [
            point for name in spec.space for point in spec.grid_points(_varying_one(spec, name))
        ]
    problems = [
        f"space.{name}: never set, as its `when:` conditions never hold together; drop them or "
        "the parameter"
        for name in spec.space
        if not any(name in {**point, **spec.fixed_values(point)} for point in points)
    ]
    for point in points:
        try:
            spec.point_config(point, seed=spec.seeds[0])
        except ValidationError as err:
            reason = "; ".join(_describe(e, with_loc=False) for e in err.errors())
            trial = {**point, **spec.fixed_values(point)}  # `value:` parameters are no points'
            where = f"space: the trial with {_short(trial)} is invalid" if trial else "base"
            problems.append(f"{where}: {reason}")
    if len(problems) > 3:
        problems = [*problems[:3], f"space: ... and {len(problems) - 3} more invalid trials"]
    return problems


@cache
def _field_adapter(name: str) -> TypeAdapter:
    info = VariantConfig.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, info])


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last,
    so a repeated `filter_size:` silently replaced the first), and reading `5e-4` as the
    number YAML 1.2 and every user reads (YAML 1.1 wants `5.0e-4`, and made it a string)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`, which keys override
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # refused below, with its place
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _field_problem(name: str, value: Any, check_value: bool = True) -> str | None:
    """Why `name: value` is not a valid VariantConfig setting, or None."""
    if name in RESERVED_FIELDS:
        return f"{name!r} cannot be set here: {RESERVED_FIELDS[name]}"
    fields = [f for f in VariantConfig.model_fields if f not in RESERVED_FIELDS]
    if name not in fields:
        return (
            f"unknown field {name!r}{did_you_mean(name, fields)}; valid fields: {', '.join(fields)}"
        )
    if not check_value:
        return None
    try:
        _field_adapter(name).validate_python(value)
    except ValidationError as err:
        error = err.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{value!r} is not allowed: {message}{_literal_hint(error)}"
    accepted = _python_types(VariantConfig.model_fields[name].annotation)
    if isinstance(value, str) and str not in accepted:
        kinds = " or ".join(sorted(t.__name__ for t in accepted if t is not type(None)))
        return f"{value!r} is a string, but {name} takes {kinds}: write it without quotes"
    return None


def _python_types(annotation: Any) -> set[type]:
    """The plain Python types a field annotation accepts (Literal values count as their types)."""
    if typing.get_origin(annotation) is Literal:
        return {type(v) for v in typing.get_args(annotation)}
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) is not tuple:
        return set().union(*(_python_types(a) for a in args))
    return {annotation} if isinstance(annotation, type) else set()


def describe_validation_error(error: ValidationError) -> str:
    """Pydantic's errors as 'key.path: message (got value)', joined by '; '."""
    return "; ".join(_describe(e) for e in error.errors())


def _describe(error: Mapping[str, Any], with_loc: bool = True) -> str:
    """One pydantic error as 'key.path: message (got value)'."""
    message = str(error["msg"]).removeprefix("Value error, ")
    got = "" if error["type"] in ("value_error", "missing") else f" (got {error['input']!r})"
    got += _literal_hint(error)
    if not with_loc:
        return message + got
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    return f"{loc or 'top level'}: {message}{got}"


def _literal_hint(error: Mapping[str, Any]) -> str:
    """' (did you mean 'reflect'?)' for a misspelt choice of a fixed set, else ''."""
    if error["type"] != "literal_error" or not isinstance(error["input"], str):
        return ""
    return did_you_mean(error["input"], re.findall(r"'([^']*)'", error["ctx"]["expected"]))


def did_you_mean(word: str, options: list[str]) -> str:
    """' (did you mean 'filter_size'?)' where `word` is close to one of `options`, else ''."""
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in point.items())
