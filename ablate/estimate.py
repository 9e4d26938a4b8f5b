"""What a study would do, and how long it would take: its trials listed, the runs it would take
from another study, and a time estimate from short probe runs (`--dry-run`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from ablate.reuse import finished_runs, run_key
from ablate.spec import StudySpec
from ablate.train import budget_steps
from ablate.variant_config import UNUSED_FIELDS_TEXT, VariantConfig, run_identity
from ablate.workers import ObjectiveFunction, default_objective

PROBE_STEPS = 2


def describe_plan(spec: StudySpec, slots: Sequence[dict[str, Any]], limit: int = 20) -> list[str]:
    """Human-readable lines: the planned trials (grid points) or the sampler's plan."""
    runs, seeds = len(slots) * len(spec.seeds), len(spec.seeds)
    lines = [
        f"study {spec.name!r}: {len(slots)} trials x {seeds} seed{'s' * (seeds != 1)} = {runs} "
        f"runs, sampler {spec.sampler.name}",
        "objectives: " + ", ".join(f"{o.metric} ({o.direction})" for o in spec.objectives),
    ]
    if spec.constraints:
        lines.append("constraints: " + ", ".join(map(str, spec.constraints)))
    lines.append("base: " + (", ".join(f"{k}={v!r}" for k, v in spec.base.items()) or "defaults"))
    if spec.sampler.name == "grid":
        for index, point in enumerate(slots[:limit]):
            values = {**point, **spec.fixed_values(point)}
            lines.append(
                f"  trial {index:>4}: "
                + (", ".join(f"{k}={v!r}" for k, v in values.items()) or "(base only)")
            )
        if len(slots) > limit:
            lines.append(f"  ... and {len(slots) - limit} more")
        repeats = _repeated_runs(spec, slots)
        if repeats:
            lines.append(
                f"note: {repeats} of these trials make the run an earlier one makes (they differ "
                f"in a field the others leave unused: {UNUSED_FIELDS_TEXT}): they run it again, "
                "and the report counts each of its seeds once; a `when:` condition leaves them out"
            )
    else:
        for name, parameter in spec.space.items():
            shown = parameter.model_dump(
                mode="json", by_alias=True, include=parameter.model_fields_set
            )
            lines.append(f"  {name}: {shown}")
    return lines


def _repeated_runs(spec: StudySpec, slots: Sequence[dict[str, Any]]) -> int:
    """How many grid points make the run of an earlier point (`run_identity`)."""
    keys = [run_identity(spec.point_config(point, seed=0).model_dump()) for point in slots]
    return len(keys) - len(set(keys))


def estimate_time(
    spec: StudySpec,
    slots: Sequence[dict[str, Any]],
    workers: int,
    device: str,
    objective: ObjectiveFunction | None,
    probe: bool,
) -> list[str]:
    """Lines estimating the study's duration, saying how the estimate was made."""
    points = slots if spec.sampler.name == "grid" else [spec.first_point()]
    configs = [spec.point_config(p, seed=s, device=device) for p in points for s in spec.seeds]
    images = sum(budget_steps(c, c.train_size) * min(c.batch_size, c.train_size) for c in configs)
    if spec.sampler.name != "grid":
        images *= len(slots)
    lines = [f"budget: {images:,.0f} training images in all (from the spec's epochs/steps)"]
    if not probe:
        return lines
    probed = []
    for which, point in _probed_points(spec, points):
        run = _probe(spec.point_config(point, seed=spec.seeds[0], device=device), which, objective)
        if isinstance(run, str):
            return [*lines, run]
        probed.append(run)
    # the trials between are taken to run at the probes' mean time per image and per run
    per_s = len(probed) / sum(1 / run.images_per_s for run in probed)
    overhead = sum(run.overhead_s for run in probed) / len(probed)
    total = overhead * len(configs) * (1 if spec.sampler.name == "grid" else len(slots))
    total += images / per_s
    which = " and ".join(run.which for run in probed)
    probes = (
        f"{PROBE_STEPS}-step probes of the {which} trials"
        if len(probed) > 1
        else f"a {PROBE_STEPS}-step probe of the {which} trial"
    )
    speeds = ", ".join(f"{run.images_per_s:,.0f} train images/s ({run.which})" for run in probed)
    # A trial runs its seeds one after another, in one worker; on the CPU the workers split
    # the cores the probe had to itself, so they run no faster together than it alone.
    on_cpu = probed[0].device.startswith("cpu")  # "cpu AVX2 (N threads)"
    parallel = 1 if on_cpu else min(workers, len(slots))
    shared = " (they share the CPU's cores)" if on_cpu and workers > 1 else ""
    return [
        *lines,
        f"estimate: {_duration(total / parallel)} with {workers} worker(s){shared}, from "
        f"{probes} on {probed[0].device}: {speeds}, "
        f"and {overhead:.1f} s of set-up + evaluation per run (assumes the other trials run at "
        "the probes' mean speed)",
    ]


@dataclass(frozen=True)
class ProbeRun:
    """What a short run of one trial says of the study's speed."""

    which: str  # the trial probed: "first" or "last"
    images_per_s: float  # training
    overhead_s: float  # set-up and evaluation: the run's time outside training
    device: str


def _probe(
    config: VariantConfig, which: str, objective: ObjectiveFunction | None
) -> ProbeRun | str:
    """A PROBE_STEPS-step run of `config`, or why there is no estimate; a ValueError where the
    trial fails so every time (bad input)."""
    start = time.perf_counter()
    try:
        metrics = (objective or default_objective())(
            config.model_copy(update={"steps": PROBE_STEPS})
        )
    except Exception as error:  # an estimate is optional; say why there is none
        if getattr(error, "deterministic", False):
            raise ValueError(f"the {which} trial cannot be built: {error}") from error
        return f"no time estimate: the probe run failed ({type(error).__name__}: {error})"
    seconds = time.perf_counter() - start
    per_s = float(metrics.get("train_images_per_s") or 0.0)
    if per_s <= 0:
        return f"probe run took {seconds:.1f} s but reported no train_images_per_s"
    overhead = max(0.0, seconds - float(metrics.get("train_seconds") or 0.0))
    return ProbeRun(which, per_s, overhead, str(metrics.get("device", config.device)))


def _probed_points(
    spec: StudySpec, points: Sequence[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """The first point and, where it makes another network, the last: a grid's first point is
    often the fastest (no blur) and its last the slowest (the largest filter)."""
    first, last = points[0], points[-1]

    def identity(point: dict[str, Any]) -> str:
        return run_identity(spec.point_config(point, seed=spec.seeds[0]).model_dump())

    if len(points) == 1 or identity(first) == identity(last):
        return [("first", first)]
    return [("first", first), ("last", last)]


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def reuse_line(
    spec: StudySpec,
    slots: Sequence[dict[str, Any]],
    old: optuna.Study,
    device: str,
    threads: int | None = None,
) -> str:
    """How many of a grid's runs the study it reuses has finished, and how many of those it
    made as `device` would make them, in workers of `threads` CPU threads (None: this
    process's count; a sampled study's points are not known before they are drawn)."""
    from ablate.variant import made_by, resolve_device  # the training stack: only here

    name = f"--reuse {old.study_name!r}"
    if spec.sampler.name != "grid":
        return f"{name}: a sampled study takes the runs it shares as it draws its points"
    keys = [
        run_key(spec.point_config(point, seed).model_dump(mode="json"))
        for point in slots
        for seed in spec.seeds
    ]
    finished = finished_runs(old)
    # (another run of a key may be)
    alike = finished_runs(old, made_by(resolve_device(device), threads))
    taken, elsewhere = sum(k in alike for k in keys), sum(k in finished for k in keys)
    otherwise = (
        f"; {elsewhere - taken} more it finished on another device (on a CPU: at another "
        "thread count), or with other code or torch, are run again"
        if elsewhere > taken
        else ""
    )
    return (
        f"{name}: {taken} of the {len(keys)} runs are taken from it{otherwise} (the budget "
        "below counts every run)"
    )
