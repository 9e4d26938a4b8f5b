"""Which finished runs a grown study or a retry takes instead of training them (ablate.reuse)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from ablate.reuse import earlier_attempt_runs, finished_runs, run_key, runs_taken_from
from ablate.variant_config import VariantConfig

MADE_BY = {"device": "cpu", "code": "c0de", "commit": "abc", "torch": "2.13.0"}
CONFIG = VariantConfig(steps=5).model_dump(mode="json", exclude={"seed"})


def record(seed: int, **made: str) -> dict[str, Any]:
    """One seed's metrics, made as MADE_BY makes runs unless `made` says otherwise."""
    return {"seed": seed, "accuracy": 50.0 + seed, **MADE_BY, **made}


def study_of(*trials: tuple[TrialState, list[dict], dict]) -> optuna.Study:
    """A study of trials (state, seed records, other user attrs) with CONFIG."""
    study = optuna.create_study()
    for state, seeds, attrs in trials:
        values = [1.0] if state == TrialState.COMPLETE else None
        user_attrs = {"config": CONFIG, "seeds": seeds, **attrs}
        study.add_trial(create_trial(state=state, values=values, user_attrs=user_attrs))
    return study


def key(seed: int) -> str:
    return run_key({**CONFIG, "seed": seed})


@pytest.mark.parametrize("other", [{"device": "NVIDIA H100"}, {"code": "0ther"}, {"torch": "2.9"}])
def test_a_run_made_otherwise_is_not_taken(other: dict[str, str]) -> None:
    """Another device measured other speeds; other code or torch may compute otherwise. The
    commit alone does not count: the code fingerprint says whether the sources differ."""
    study = study_of((TrialState.COMPLETE, [record(0), record(1, **other)], {}))
    taken = finished_runs(study, {**MADE_BY, "commit": "def"})
    assert list(taken) == [key(0)]
    assert taken[key(0)] == ({"accuracy": 50.0, **MADE_BY}, f"study {study.study_name!r}, trial 0")


def test_only_complete_trials_offer_their_runs_to_another_study() -> None:
    study = study_of((TrialState.FAIL, [record(0)], {}), (TrialState.COMPLETE, [record(1)], {}))
    assert list(finished_runs(study, MADE_BY)) == [key(1)]


def test_a_retry_takes_the_runs_of_every_earlier_attempt_made_alike() -> None:
    """Trial 2 retries trial 1, which retried trial 0: the seeds both finished are taken, not
    those made by other code."""
    study = study_of(
        (TrialState.FAIL, [record(0), record(2, code="0ther")], {}),
        (TrialState.FAIL, [record(1)], {"retry_of": 0}),
    )
    taken = earlier_attempt_runs(study, 1, MADE_BY)
    assert sorted(taken) == sorted([key(0), key(1)])
    assert taken[key(0)][1] == "trial 0 (an earlier attempt)"
    assert earlier_attempt_runs(study, None, MADE_BY) == {}


def test_runs_taken_count_only_the_named_study() -> None:
    """A study named 'old' is not 'old2', though one name starts the other."""
    reused = {"0": "study 'old', trial 3", "1": "study 'old2', trial 4"}
    study = study_of((TrialState.COMPLETE, [record(0), record(1)], {"reused": reused}))
    assert runs_taken_from(study, "old") == 1


def test_a_run_whose_config_this_code_no_longer_accepts_is_left_out() -> None:
    """An old study's run of a value since removed is no run this code makes: not taken."""
    study = study_of(
        (TrialState.COMPLETE, [record(0)], {"config": {**CONFIG, "padding": "mirror"}}),
        (TrialState.COMPLETE, [record(1)], {}),
    )
    assert list(finished_runs(study, MADE_BY)) == [key(1)]
