"""A worker process: claim a trial, run its design point once per seed, record it, repeat.

Each worker is a separate process (spawned, so CUDA starts fresh in it) that the runner pins to
one GPU through CUDA_VISIBLE_DEVICES. A trial's failure (an exception, a diverged run, CUDA out
of memory, a NaN objective) is recorded as FAIL with its `fail_reason` and retried up to the
spec's `max_retries`; the worker goes on with the next trial. A failure that recurs on every
run until something changes (an exception whose `deterministic` is true: a design point that
cannot be built, `ablate.variant.UnbuildableVariant`) is retried only on the next resume.
While a trial runs, a thread refreshes its `heartbeat`, so other processes can tell a live
worker from a dead one. A trial with a seed that did not learn (`ablate.chance`) completes but
is infeasible.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from pydantic import ValidationError

from ablate.chance import AT_CHANCE_CONSTRAINT
from ablate.reuse import (
    FinishedRun,
    drawn_before_runs,
    earlier_attempt_runs,
    finished_runs,
    run_key,
)
from ablate.spec import Parameter, StudySpec, describe_validation_error
from ablate.storage import (
    StorageLocation,
    open_storage,
    open_study,
)
from ablate.trial_queue import (
    HEARTBEAT_S,
    INTERRUPTED,
    STALE_AFTER_S,
    claim_next,
    fail_and_retry,
    owner_record,
    planned_slots,
    queue_status,
    reap_dead_trials,
)
from ablate.variant_config import VariantConfig
from kernels.json_values import json_values

#: What a trial calls per seed: a config in, its metrics out (`ablate.variant.run_variant`).
ObjectiveFunction = Callable[[VariantConfig], Mapping[str, Any]]
log = logging.getLogger("ablate.study")
#: A worker's exit code when the user stopped it (as a shell reports SIGINT).
STOPPED_EXIT = 130
FAILURE_NAMES = {
    "TrainingDiverged": "diverged",
    "OutOfMemoryError": "out of memory",
    "UnbuildableVariant": "cannot be built",
    "InvalidDesignPoint": "invalid design point",
}


class BadMetrics(ValueError):
    """The objective returned metrics that cannot be an objective value (missing or not finite)."""


class InvalidDesignPoint(ValueError):
    """The sampler drew a combination of values that no VariantConfig accepts (one the spec's
    check did not build): it fails the same way every time, so it is retried only on a resume,
    after the spec may be fixed."""

    deterministic = True


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs; picklable, so it crosses the spawn boundary."""

    spec: StudySpec
    storage: StorageLocation
    index: int
    device: str = "auto"
    objective: ObjectiveFunction | None = None
    heartbeat_s: float = HEARTBEAT_S
    stale_after_s: float = STALE_AFTER_S
    poll_s: float = 2.0
    log_file: str | None = None
    reuse: str | None = None  # the study whose finished runs this one takes (`ablate.reuse`)


def plan(spec: StudySpec, trials: int | None = None) -> list[dict[str, Any]]:
    """The slots of a study: every grid point, or `trials` empty slots for a sampler to fill."""
    if spec.sampler.name == "grid":
        return spec.grid_points()
    return [{} for _ in range(trials or spec.sampler.trials or 0)]


def make_sampler(spec: StudySpec, first_trial: int = 0) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of the spec, seeded from the spec's seed and the number of the first
    trial the worker claims: trial numbers are unique across processes, so workers, runners
    started at once and resumes draw different points, while one worker's draws repeat."""
    seed = spec.sampler.seed
    if seed is not None:
        seed = int(np.random.SeedSequence([seed, first_trial]).generate_state(1)[0])
    name = spec.sampler.name
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=spec.sampler.population or 50
        )
    # grid: every parameter comes from the enqueued slot, so this sampler never draws
    return optuna.samplers.RandomSampler(seed=seed)


def run_worker(job: WorkerJob) -> None:
    """Claim and run trials until no trial is waiting or running anywhere in the study."""
    logging.basicConfig(
        filename=job.log_file,
        level=logging.INFO,
        format="%(asctime)s [%(process)d] %(message)s",
        force=True,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop_once_on_signals()
    stop_when_orphaned()
    try:
        _claim_and_run(job)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: no traceback (its trial is requeued)
        log.info("worker %d stopped (Ctrl-C or SIGTERM)", job.index)
        raise SystemExit(STOPPED_EXIT) from None


def stop_on_sigterm() -> None:
    """Make SIGTERM (`kill`, `timeout`, a scheduler ending a job) stop this process as Ctrl-C
    does: its trials are requeued without using a retry, and the results are written."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def stop_once_on_signals() -> None:
    """A worker's stop: its first SIGINT or SIGTERM stops it as Ctrl-C does, and it ignores
    those that follow (a Ctrl-C at a terminal reaches it and its runner, which then passes the
    stop on), which would cut short the requeueing of its trial. SIGKILL still ends it. Those
    that follow go to a handler that does nothing, not to SIG_IGN: one already pending when
    the first is handled (a Ctrl-C and the runner's SIGTERM at once) would find SIG_IGN and
    raise "OSError: Signal 15 ignored due to race condition" in the requeue."""

    def passed_over(signum: int, frame: object) -> None:
        pass

    def interrupt(signum: int, frame: object) -> None:
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, passed_over)
        raise KeyboardInterrupt

    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, interrupt)


def stop_when_orphaned(poll_s: float = 1.0) -> None:
    """SIGTERM this process once its parent is gone: a runner killed outright (`kill -9`, the
    OOM killer) would otherwise leave its workers training on, unseen, until the study ends."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        log.warning("the runner (process %d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


def _claim_and_run(job: WorkerJob) -> None:
    objective = job.objective or default_objective()
    storage = open_storage(job.storage)
    study = open_study(storage, job.spec)
    from ablate.variant import made_by, resolve_device  # the training stack: in workers only

    try:
        making = made_by(resolve_device(job.device))
    except ValueError:  # a device this machine lacks: each trial records why it cannot run
        making = None
    earlier = {}
    if job.reuse and making is not None:
        reused = optuna.load_study(study_name=job.reuse, storage=storage)
        earlier = finished_runs(reused, making)
    seeded = False

    def seed_the_sampler(number: int) -> None:
        nonlocal seeded
        if not seeded:
            study.sampler, seeded = make_sampler(job.spec, number), True

    slots = plan(job.spec, planned_slots(study))
    # the device by the name each run records (`cpu AVX2 (N threads)`, the GPU's), else as asked for
    owner = owner_record(making["device"] if making else job.device)
    while True:
        reap_dead_trials(study, storage, slots, job.spec.max_retries, job.stale_after_s)
        trial = claim_next(study, storage, owner, seed_the_sampler)
        if trial is not None:
            run_trial(study, storage, trial, job, objective, slots,
                      {**_own_runs(study, trial, job.spec, making), **earlier})  # fmt: skip
        elif queue_status(study, job.spec.max_retries).done:
            return
        else:
            time.sleep(job.poll_s)


def _own_runs(
    study: optuna.Study, trial: optuna.Trial, spec: StudySpec, making: dict[str, str] | None
) -> dict[str, FinishedRun]:
    """The runs of this study a claimed trial may take: those its earlier attempts finished,
    and, under a sampler that may draw a point again (not the grid, whose points are planned
    once), those of its finished trials."""
    if making is None:
        return {}
    drawn = {} if spec.sampler.name == "grid" else drawn_before_runs(study, making)
    return {**drawn, **earlier_attempt_runs(study, trial.user_attrs.get("retry_of"), making)}


def default_objective() -> ObjectiveFunction:
    """`ablate.variant.run_variant`, imported on first use."""
    from ablate.variant import run_variant  # the training stack: in workers only

    return run_variant


def run_trial(
    study: optuna.Study,
    storage: BaseStorage,
    trial: optuna.Trial,
    job: WorkerJob,
    objective: ObjectiveFunction,
    slots: Sequence[dict[str, Any]],
    earlier: Mapping[str, FinishedRun] | None = None,
) -> None:
    """Run one claimed trial: every seed, then its objective means, or a FAIL with its reason.
    A seed whose run `earlier` holds (an earlier attempt's, or a reused study's: `ablate.reuse`)
    takes its metrics instead."""
    spec = job.spec
    with Heartbeat(trial, job.heartbeat_s):
        try:
            values = spec.resolve(lambda name, parameter: suggest(trial, name, parameter))
            try:
                config = spec.config(values, seed=spec.seeds[0], device=job.device)
            except ValidationError as error:
                raise InvalidDesignPoint(describe_validation_error(error)) from error
            trial.set_user_attr("config", config.model_dump(mode="json", exclude={"seed"}))
            records: list[dict[str, Any]] = []
            reused: dict[str, str] = {}
            for seed in spec.seeds:
                seeded = config.model_copy(update={"seed": seed})
                taken = (earlier or {}).get(run_key(seeded.model_dump(mode="json")))
                if taken is not None and _has_metrics(spec, taken[0]):
                    metrics, reused[str(seed)] = taken
                    trial.set_user_attr("reused", reused)
                else:
                    metrics = json_values(dict(objective(seeded)))
                records.append({"seed": seed, **metrics})
                trial.set_user_attr("seeds", records)
                _check_metrics(spec, metrics, seed)
            means = {m: math.fsum(r[m] for r in records) / len(records) for m in _needed(spec)}
            for constraint in spec.constraints:
                for key, value in constraint.violations(means[constraint.metric]).items():
                    trial.set_constraint(key, value)
            at_chance = sum(record.get("learned") is False for record in records)
            trial.set_constraint(AT_CHANCE_CONSTRAINT, float(at_chance))
            study.tell(trial, [means[m] for m in spec.metric_names])
            log.info("trial %d complete: %s", trial.number, _brief(means))
            if at_chance:
                log.warning(
                    "trial %d: %d of %d seeds did not learn (accuracy not above chance): "
                    "infeasible, its consistency means nothing",
                    trial.number,
                    at_chance,
                    len(records),
                )
            return
        except UpdateFinishedTrialError:
            log.warning("trial %d was failed by another process meanwhile", trial.number)
            return
        except KeyboardInterrupt:
            _requeue_unfinished(study, storage, trial, INTERRUPTED, slots, spec.max_retries, False)
            raise
        except Exception as error:  # any failure of one trial must not stop the study
            reason = describe_failure(error)
            retry_now = not getattr(error, "deterministic", False)
            out_of_memory = type(error).__name__ == "OutOfMemoryError"
            log.warning("trial %d failed: %s\n%s", trial.number, reason, traceback.format_exc())
    if out_of_memory:  # here, where the exception and the run's frames it held are gone
        free_cuda_cache()
    _requeue_unfinished(study, storage, trial, reason, slots, spec.max_retries, True, retry_now)


def _requeue_unfinished(
    study: optuna.Study,
    storage: BaseStorage,
    trial: optuna.Trial,
    reason: str,
    slots: Sequence[dict[str, Any]],
    max_retries: int,
    counts_as_retry: bool,
    retry_now: bool = True,
) -> None:
    frozen = study.get_trials(deepcopy=False)[trial.number]
    if frozen.state == TrialState.RUNNING:
        fail_and_retry(
            study, storage, frozen, reason, slots, max_retries, counts_as_retry, retry_now
        )


def suggest(trial: optuna.Trial, name: str, parameter: Parameter) -> Any:
    """Ask Optuna for one parameter's value (an enqueued slot's fixed value if it has one)."""
    if parameter.kind == "choices":
        return trial.suggest_categorical(name, parameter.choices)  # type: ignore[arg-type]
    if parameter.kind == "int":
        low, high = parameter.int_range  # type: ignore[misc]
        step = int(parameter.step or 1)
        return trial.suggest_int(name, low, high, step=step, log=parameter.log)
    low, high = parameter.float_range  # type: ignore[misc]
    return trial.suggest_float(name, low, high, step=parameter.step, log=parameter.log)


def describe_failure(error: BaseException) -> str:
    """A one-line `fail_reason`: the kind of failure by name, and its message."""
    kind = type(error).__name__
    text = " ".join(str(error).split())
    return f"{FAILURE_NAMES.get(kind, kind)}: {text}"[:500]


def free_cuda_cache() -> None:
    """Give the memory a failed run held back to the GPU, for the other workers on it: called
    once the exception is dropped, since its traceback holds the run's frames and their
    tensors, which no emptying of the cache can free while they are referenced. The collection
    first frees what reference cycles hold (as `ablate.speed` does before a peak)."""
    if "torch" in sys.modules:
        gc.collect()
        sys.modules["torch"].cuda.empty_cache()


def _needed(spec: StudySpec) -> set[str]:
    return {*spec.metric_names, *(c.metric for c in spec.constraints)}


def _has_metrics(spec: StudySpec, metrics: Mapping[str, Any]) -> bool:
    """Whether `metrics` hold every metric the study needs, as numbers it can use."""
    try:
        _check_metrics(spec, metrics, seed=0)
    except BadMetrics:
        return False
    return True


def _check_metrics(spec: StudySpec, metrics: Mapping[str, Any], seed: int) -> None:
    for metric in sorted(_needed(spec)):
        value = metrics.get(metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BadMetrics(
                f"seed {seed}: metric {metric!r} is missing or not a number: {value!r}"
            )
        if not math.isfinite(value):
            raise BadMetrics(f"seed {seed}: metric {metric!r} is {value}")


def _brief(means: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(means.items()))


class Heartbeat:
    """Refreshes a trial's `heartbeat` user attr every `interval_s` while the block runs."""

    def __init__(self, trial: optuna.Trial, interval_s: float) -> None:
        self._trial = trial
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._trial.set_user_attr("heartbeat", time.time())
            except UpdateFinishedTrialError:
                return
            except Exception as error:  # a storage hiccup must not end the beats: the trial
                # would then look dead and be run again while this one goes on
                log.warning("trial %d: heartbeat not recorded: %r", self._trial.number, error)
