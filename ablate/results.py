"""`results.csv`: one row per trial and seed, readable without Optuna, never half-written.

Columns: `trial, slot, attempt, state, seed`, the space's parameters (a waiting trial's as
enqueued; blank where a condition left one unset, or a sampler has yet to draw it), every
scalar metric (the known ones first), then `duration_s` (the trial's wall time, all its
seeds), `device, fail_reason, retry_of`. A trial with no finished seed (waiting, running,
failed early) has one row with an empty `seed`. The file is written to a temporary name and
renamed over the old one, so a reader never sees a partial file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ablate.spec import SCALAR_METRICS, StudySpec
from kernels.files import atomic_write_text

RESULTS_CSV = "results.csv"
LEADING = ("trial", "slot", "attempt", "state", "seed")
TRAILING = ("duration_s", "device", "fail_reason", "retry_of")


def result_rows(study: optuna.Study, spec: StudySpec) -> list[dict[str, Any]]:
    """The rows of `results.csv`, in trial then seed order."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        common = _trial_columns(trial, spec)
        seeds = trial.user_attrs.get("seeds") or [{}]
        for record in seeds:
            scalars = {k: v for k, v in record.items() if _is_scalar(v) and k != "device"}
            device = record.get("device") or (trial.user_attrs.get("worker") or {}).get("device")
            rows.append({**common, **scalars, "seed": record.get("seed"), "device": device})
    return rows


def _trial_columns(trial: FrozenTrial, spec: StudySpec) -> dict[str, Any]:
    # a trial not yet claimed holds its design point as the parameters it was enqueued with
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    params.update(spec.fixed_values(params))
    return {
        "trial": trial.number,
        "slot": trial.user_attrs.get("slot"),
        "attempt": trial.user_attrs.get("attempt"),
        "state": trial.state.name,
        **{name: params.get(name) for name in spec.space},
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "fail_reason": trial.user_attrs.get("fail_reason"),
        "retry_of": trial.user_attrs.get("retry_of"),
    }


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def columns(rows: list[dict[str, Any]], spec: StudySpec) -> list[str]:
    """Column order: bookkeeping, parameters, known metrics, other scalars, trailing fields."""
    fixed = [*LEADING, *spec.space, *TRAILING]
    present = {key for row in rows for key in row}
    metrics = [m for m in SCALAR_METRICS if m in present]
    others = sorted(present - set(fixed) - set(metrics))
    return [*LEADING, *spec.space, *metrics, *others, *TRAILING]


def write_results(study: optuna.Study, spec: StudySpec, out_dir: Path) -> Path:
    """Rewrite `out_dir/results.csv` atomically."""
    rows = result_rows(study, spec)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns(rows, spec), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(Path(out_dir) / RESULTS_CSV, text.getvalue())
