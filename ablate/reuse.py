"""Runs a grown study takes from an earlier study in its storage instead of training them again.

A study's design points and seeds are fixed when it is made (a resume may change only the trial
count, `max_retries` and the storage). To add seeds or points, name a new study, give it its own
`--out` and the old study's storage (`--storage runs/OLD/journal.log`), and pass `--reuse OLD`:
each run of the new study that one of OLD's finished runs made (its network, data, budget and
seed: every config field but the device, unused fields blanked:
`ablate.variant_config.run_identity`), on a device of the same name (a CPU's names its thread
count, which its numbers depend on), by the same code (a fingerprint of the sources) and
torch, and with every metric the new study needs, takes that run's metrics. Reuse is asked
for, never implied; the study remembers it for its resumes, and each trial records which of
its seeds it took, and from where (`reused`).

Within a study, a retry takes the runs its earlier attempts finished, and a sampler that draws
again a point (or one that makes the same runs) takes the runs its finished trials made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from ablate.variant_config import VariantConfig, run_identity

#: What a taken run must have been made with, as this process makes its runs.
MADE_ALIKE = ("device", "code", "torch")
#: One finished run: its metrics and where they were measured ("study 'old', trial 3").
FinishedRun = tuple[dict[str, Any], str]


def run_key(config: Mapping[str, Any]) -> str:
    """What makes two runs the same run: the network, data, budget, evaluation and seed (a
    config as JSON, `seed` included), wherever they ran."""
    return run_identity({name: value for name, value in config.items() if name != "device"})


def finished_runs(
    study: optuna.Study, made_by: Mapping[str, str] | None = None
) -> dict[str, FinishedRun]:
    """The finished runs of `study`, by `run_key` of their config as this code reads it (fields
    added since take their defaults; a config it no longer accepts is left out); with
    `made_by` (`ablate.variant.made_by`), only those it made too: the same device name (others
    are no measure of speed there), code and torch (others may compute otherwise)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return _runs_of(trials, made_by, _from_study(study.study_name) + "{}")


def runs_taken_from(study: optuna.Study, source: str) -> int:
    """How many runs the trials of `study` took from the study named `source`."""
    return sum(
        where.startswith(_from_study(source))
        for trial in study.get_trials(deepcopy=False)
        for where in trial.user_attrs.get("reused", {}).values()
    )


def _from_study(name: str) -> str:
    """The start of `reused`'s record of a run taken from study `name` (its trial follows)."""
    return f"study {name!r}, trial "


def earlier_attempt_runs(
    study: optuna.Study, retry_of: int | None, made_by: Mapping[str, str]
) -> dict[str, FinishedRun]:
    """The runs that earlier attempts at a point finished (the trial a retry retries, the
    one that one retries, ...) before they failed or were stopped, made as `made_by` makes
    them: the retry takes them instead of training them again."""
    if retry_of is None:
        return {}
    trials = study.get_trials(deepcopy=False)
    attempts = []
    number = retry_of
    while number is not None and 0 <= number < len(trials):
        attempts.append(trials[number])
        number = trials[number].user_attrs.get("retry_of")
    return _runs_of(attempts, made_by, "trial {} (an earlier attempt)")


def drawn_before_runs(study: optuna.Study, made_by: Mapping[str, str]) -> dict[str, FinishedRun]:
    """The runs finished trials of `study` made, made as `made_by` makes them: a sampler
    (random, TPE) that draws a point again takes them instead of training the same runs again,
    which would add no sample of the spread over seeds (the report counts a run once)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return _runs_of(trials, made_by, "trial {} (the same run, drawn before)")


def made_alike(metrics: Mapping[str, Any], made_by: Mapping[str, str]) -> bool:
    """Whether a run's `metrics` record that it was made as `made_by` makes runs."""
    return all(metrics.get(key) == made_by[key] for key in MADE_ALIKE)


def _runs_of(
    trials: Sequence[FrozenTrial], made_by: Mapping[str, str] | None, where: str
) -> dict[str, FinishedRun]:
    """The seeds' runs `trials` recorded, by `run_key`; `where` formats a trial's number."""
    runs: dict[str, FinishedRun] = {}
    for trial in trials:
        config = trial.user_attrs.get("config")
        for record in trial.user_attrs.get("seeds") or [] if config else []:
            try:
                read = VariantConfig.model_validate({**config, "seed": record["seed"]})
            except ValidationError:
                continue
            metrics = {name: value for name, value in record.items() if name != "seed"}
            if made_by is not None and not made_alike(metrics, made_by):
                continue
            runs.setdefault(
                run_key(read.model_dump(mode="json")), (metrics, where.format(trial.number))
            )
    return runs
