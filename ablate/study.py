"""python -m ablate.study --space studies/filters.yaml: run a multi-objective ablation study.

The runner validates the spec, opens (or resumes) the Optuna study in its storage, enqueues the
study's design points once, starts worker processes (one per GPU by default, each pinned to its
GPU), shows progress, rewrites `results.csv` after each finished trial and writes the report at
the end. Stopping it loses nothing: running the same command again resumes the study.

Output folder (`runs/<name>/` by default): `spec.yaml` (the spec as run), `meta.json`,
`journal.log` (the default storage), `results.csv`, `logs/worker-<k>-runner-<pid>.log`, the
report files.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from tqdm import tqdm

from ablate.data import find_data
from ablate.estimate import describe_plan, estimate_time, reuse_line
from ablate.results import write_results
from ablate.reuse import runs_taken_from
from ablate.spec import CUDA_ONLY_METRICS, SpecError, StudySpec, data_sources, load_spec
from ablate.storage import (
    StorageLocation,
    check_can_be_made,
    check_stored_spec,
    existing_storage,
    locate_storage,
    open_storage,
    open_study,
    recorded_location,
    stored_study,
)
from ablate.trial_queue import (
    HEARTBEAT_S,
    PLAN_LOCK_MARK,
    STALE_AFTER_S,
    QueueStatus,
    finished_slots,
    plan_slots,
    planned_slots,
    queue_status,
    reap_dead_trials,
    requeue_lost_retries,
)
from ablate.worker_pool import WorkerPool, stop_workers, worker_threads
from ablate.workers import (
    ObjectiveFunction,
    WorkerJob,
    make_sampler,
    plan,
    stop_on_sigterm,
)
from kernels.cli_types import positive
from kernels.files import atomic_write_text, read_json

DEVICES = ("auto", "cpu", "cuda")
FAILURES_SHOWN = 3  # the most common failure reasons printed at the end of a run

EPILOG = """\
examples:
  python -m ablate.study --space studies/quick.yaml --dry-run
      check the spec, list the planned trials and estimate the time; runs nothing
  python -m ablate.study --space studies/filters.yaml
      run (or resume) the study into runs/<name>/, one worker per visible GPU
  python -m ablate.study --space studies/filters.yaml --per-gpu 4 --epochs 1
      four small trials share each GPU; every trial trains for one epoch
  python -m ablate.study --space studies/filters.yaml \\
      --storage postgresql://user:password@dbhost:5432/studies
      run this same command on several machines: they share one study

Stopping (Ctrl-C, a killed process) loses nothing: run the same command again to resume.
Unfinished trials of dead workers are marked failed and retried (max_retries in the spec);
a design point that cannot be built fails once and runs again on a resume, after a fix.
The spec format is described in ablate/spec.py and tests/data/specs/example.yaml.
"""


@dataclass(frozen=True)
class RunOptions:
    """How to run a study, beyond the spec itself."""

    storage: str | None = None
    workers: int | None = None
    per_gpu: int = 1
    device: str = "auto"
    objective: ObjectiveFunction | None = None
    report: bool = True
    progress: bool = True
    heartbeat_s: float = HEARTBEAT_S
    stale_after_s: float = STALE_AFTER_S
    poll_s: float = 2.0
    stop_wait_s: float = 10.0
    """After a Ctrl-C, how long each worker may take to requeue its trial before it is ended."""
    reuse: str | None = None
    """A study in the same storage whose finished runs this one takes (`ablate.reuse`)."""


def run_study(spec: StudySpec, out_dir: Path, options: RunOptions = RunOptions()) -> QueueStatus:
    """Run or resume `spec` into `out_dir` until no trial is left; the final queue status.

    `options.objective` replaces `ablate.variant.run_variant` (it must be picklable: a function
    defined at module level).
    """
    out_dir = Path(out_dir)
    location, pins, existing = check_destination(spec, out_dir, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = existing or open_storage(location)
    study = open_study(storage, spec, make_sampler(spec))
    options = dataclasses.replace(options, reuse=_reuse_of(study, storage, options.reuse))
    plan_slots(study, storage, plan(spec), options.stale_after_s)
    slots = plan(spec, planned_slots(study))
    write_study_files(out_dir, spec, location)
    reap_dead_trials(study, storage, slots, spec.max_retries, options.stale_after_s)
    requeue_lost_retries(study, slots, spec.max_retries)
    stopped = False
    try:
        if not queue_status(study, spec.max_retries).done:
            _run_workers(study, storage, slots, spec, out_dir, location, pins, options)
    except KeyboardInterrupt:
        stopped = True  # the workers this runner ended leave their trials to be requeued
        raise
    finally:  # also after Ctrl-C: trials of dead workers are failed, results.csv is current
        reap_dead_trials(study, storage, slots, spec.max_retries, options.stale_after_s, stopped)
        write_results(study, spec, out_dir)
    status = queue_status(study, spec.max_retries)
    if options.reuse is not None:
        taken = runs_taken_from(study, options.reuse)
        print(f"runs taken from study {options.reuse!r}: {taken}", file=sys.stderr)
    if options.report and status.finished:  # (all failed: the report says why)
        _write_report(out_dir, location.url if location.is_rdb else None)
    return status


def _reuse_of(study: optuna.Study, storage: BaseStorage, asked: str | None) -> str | None:
    """The study whose runs this one takes: as asked the first time (`check_destination`
    checked it), and remembered, so that a resume takes them too; None, with a note, once
    that study is gone from the storage."""
    if asked is not None and "reuse" not in study.user_attrs:
        study.set_user_attr("reuse", asked)
    name, old = _reused_study(storage, study, asked)
    if name is not None and old is None:
        print(_reused_study_gone(name), file=sys.stderr)
        return None
    return name


def _reused_study(
    storage: BaseStorage | None, study: optuna.Study | None, asked: str | None
) -> tuple[str | None, optuna.Study | None]:
    """The name of the study whose runs `study` takes, as asked, else as it remembers
    (`_reuse_of`), and that study: None where it is gone from the storage since."""
    name = asked or (study.user_attrs.get("reuse") if study is not None else None)
    return name, (stored_study(storage, name) if name is not None else None)


def _reused_study_gone(name: str) -> str:
    return (
        f"study {name!r}, whose finished runs this study takes, is gone from the storage: the "
        "runs left are trained"
    )


def check_destination(
    spec: StudySpec, out_dir: Path, options: RunOptions
) -> tuple[StorageLocation, list[str | None], BaseStorage | None]:
    """The study's storage, its workers' CUDA_VISIBLE_DEVICES and the storage opened if it
    exists (`existing_storage`), once checked before anything runs: the output folder is not
    a file, the data folders are there, the storage can be opened by the workers asked for, and
    a study of this name in it was made from this spec."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {str(out_dir)!r} is a file: give a folder (made if missing)")
    check_can_be_made(out_dir.absolute(), "--out", folder=True)
    meta_path = out_dir / "meta.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    other = meta.get("study_name", spec.name)
    if other != spec.name:
        raise ValueError(
            f"--out {str(out_dir)!r} holds the files of study {other!r}: give study "
            f"{spec.name!r} a folder of its own (--storage names a storage to share)"
        )
    for (dataset, data_dir), (train_size, test_size) in sorted(data_sources(spec).items(), key=str):
        try:
            find_data(dataset, data_dir, train_size=train_size, test_size=test_size)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(f"dataset {dataset!r}: {error}") from None
    location = locate_storage(options.storage or spec.storage, out_dir)
    pins = worker_pins(options)
    wanted = {m.metric for m in (*spec.objectives, *spec.constraints)}
    cuda_only = sorted(wanted & set(CUDA_ONLY_METRICS))
    if cuda_only and (options.device == "cpu" or not any(pins)):
        raise ValueError(
            f"{', '.join(cuda_only)}: measured on CUDA only (NaN on the CPU), and this study runs "
            "on the CPU: optimise or constrain another metric, or run on a GPU"
        )
    if location.is_sqlite and len(pins) > 1:
        raise ValueError(
            f"storage={location.url!r}: SQLite is for one worker (got {len(pins)} workers); "
            "use the default journal file or postgresql:// for several"
        )
    storage = existing_storage(location)
    stored = stored_study(storage, spec.name)
    if stored is not None:
        check_stored_spec(stored, spec)
    elif "storage" in meta and (own := _recorded_identity(meta["storage"], out_dir)) != (
        location.identity
    ):
        raise ValueError(
            f"--out {str(out_dir)!r} holds study {spec.name!r} of storage {meta['storage']!r}, "
            f"and storage {location.recorded!r} has no study of that name: give --storage "
            f"{own!r} to resume it, or another --out to start it anew"
        )
    remembered = stored.user_attrs.get("reuse") if stored is not None else None
    if options.reuse is not None and remembered not in (None, options.reuse):
        raise ValueError(
            f"--reuse {options.reuse!r}: study {spec.name!r} takes its runs from {remembered!r}; "
            "leave --reuse out or name that study"
        )
    if options.reuse not in (None, remembered) and (
        options.reuse == spec.name
        or PLAN_LOCK_MARK in options.reuse
        or stored_study(storage, options.reuse) is None
    ):  # (a remembered one since deleted: the run notes it and trains what is left)
        raise ValueError(
            f"--reuse {options.reuse!r}: name another study of this storage "
            f"({location.recorded}) to take finished runs from"
        )
    return location, pins, storage


def _recorded_identity(recorded: str, out_dir: Path) -> str:
    """The identity of the storage `meta.json` records (`recorded_location`), or the record
    itself where that storage cannot be opened now (its drive unmounted, its folder gone)."""
    try:
        return recorded_location(recorded, out_dir).identity
    except ValueError:
        return recorded


def worker_pins(options: RunOptions) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES of each worker (None: left as it is, the CPU case)."""
    if options.per_gpu < 1:
        raise ValueError(f"--per-gpu {options.per_gpu}: give a number of workers per GPU >= 1")
    if options.workers is not None and options.workers < 1:
        raise ValueError(f"--workers {options.workers}: give a number of workers >= 1")
    gpus = [] if options.device == "cpu" else visible_gpus()
    count = options.workers or max(1, len(gpus) * options.per_gpu)
    return [gpus[k % len(gpus)] if gpus else None for k in range(count)]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries: those before the first
    `-1`, as CUDA reads the list (it hides every device after an invalid one)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
        return list(itertools.takewhile(lambda gpu: gpu != "-1", entries))
    return [str(k) for k in range(torch.cuda.device_count())]


def write_study_files(out_dir: Path, spec: StudySpec, location: StorageLocation) -> None:
    """`spec.yaml` (the spec as run) and `meta.json` (what the report needs to find the study)."""
    meta_path = out_dir / "meta.json"
    created = None
    if meta_path.is_file():
        created = read_json(meta_path).get("created")
    meta = {
        "study_name": spec.name,
        "storage": location.recorded,
        "objectives": [o.model_dump() for o in spec.objectives],
        "constraints": [c.model_dump(exclude_none=True) for c in spec.constraints],
        "seeds": spec.seeds,
        "sampler": spec.sampler.model_dump(exclude_none=True),
        "max_retries": spec.max_retries,
        "space": list(spec.space),
        "spec": "spec.yaml",
        "spec_fingerprint": spec.fingerprint(),
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(out_dir / "spec.yaml", spec.as_yaml())
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")


def _run_workers(
    study: optuna.Study,
    storage: BaseStorage,
    slots: Sequence[dict[str, Any]],
    spec: StudySpec,
    out_dir: Path,
    location: StorageLocation,
    pins: list[str | None],
    options: RunOptions,
) -> None:
    """Start the workers and follow the study until they have exited."""
    (out_dir / "logs").mkdir(exist_ok=True)
    template = WorkerJob(
        spec=spec,
        storage=location,
        index=0,
        device=options.device,
        objective=options.objective,
        heartbeat_s=options.heartbeat_s,
        stale_after_s=options.stale_after_s,
        poll_s=options.poll_s,
        reuse=options.reuse,
    )
    pool = WorkerPool(study, storage, slots, template, pins, out_dir / "logs")
    pool.start()
    where = f"GPUs {', '.join(p for p in pins if p)}" if any(pins) else "CPU"
    print(f"{len(pins)} worker(s) on {where}; logs in {out_dir / 'logs'}", file=sys.stderr)
    try:
        _follow(study, spec, out_dir, options, pool.poll)
    except KeyboardInterrupt:
        print("interrupted: stopping workers; run the same command to resume", file=sys.stderr)
        stop_workers(pool.processes, options.stop_wait_s)
        raise
    pool.join()


def _follow(
    study: optuna.Study,
    spec: StudySpec,
    out_dir: Path,
    options: RunOptions,
    poll_workers: Callable[[], bool],
) -> None:
    """Progress bar and `results.csv` refreshes until `poll_workers` (run at every poll; it
    may replace workers) says that no worker runs."""
    seeds = len(spec.seeds)
    status = queue_status(study, spec.max_retries)
    bar = tqdm(  # counts training runs (a trial runs every seed): it moves once per seed
        total=status.planned * seeds,
        initial=status.runs_done(seeds),
        unit="run",
        desc=spec.name,
        disable=not options.progress,
        mininterval=1 if sys.stderr.isatty() else 30,
        # The mean rate since the start, not a moving average of the last few runs: runs take
        # alike, and the first ones, which also compile, would otherwise swing the estimate.
        smoothing=0,
    )
    with bar:
        running = True
        while running:
            time.sleep(options.poll_s)
            running = poll_workers()
            now = queue_status(study, spec.max_retries)
            if now.finished_trials != status.finished_trials:
                write_results(study, spec, out_dir)
            front = len(study.best_trials) if now.complete else 0
            bar.set_postfix(
                front=front, running_trials=now.running, failed_trials=now.failed, refresh=False
            )
            # Redraws (postfix included) at most every `mininterval`: a log file gets a line
            # every 30 s, not one per poll. A trial that fails after some seeds takes them back.
            bar.update(now.runs_done(seeds) - status.runs_done(seeds))
            status = now


def _write_report(out_dir: Path, storage: str | None) -> None:
    """Call `ablate.report.write_report` (`storage`: a database URL with the password
    `meta.json` leaves out); a failure is a note."""
    from ablate.report import read_first, write_report

    again = f"python -m ablate.report {out_dir}" + (" --storage URL" if storage else "")
    try:
        written = write_report(out_dir, storage)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while writing: the files may be partial
        print(f"report interrupted; the study is done: write it with {again}", file=sys.stderr)
        raise
    except Exception as error:  # the study's results are safe; the report can be redone
        print(f"report failed ({type(error).__name__}: {error}); rerun it with {again}",
              file=sys.stderr)  # fmt: skip
        return
    print(f"report: {len(written)} files in {out_dir}; {read_first(out_dir)}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ablate.study",
        description=(
            "Run a multi-objective ablation study of blur-pool design choices: train one short "
            "run per design point and seed, measure accuracy, shift consistency and speed, and "
            "keep everything in an Optuna storage you can stop, resume and share."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--space",
        required=True,
        type=Path,
        metavar="SPEC.yaml",
        help="the study spec (YAML): base config, space, objectives, sampler",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: runs/<study name>/)"
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="journal file path, sqlite:///file.db or postgresql://... "
        "(default: the spec's storage, else DIR/journal.log)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: one per visible GPU x --per-gpu; 1 on CPU); several "
        "split the CPU cores unless OMP_NUM_THREADS is set",
    )
    parser.add_argument(
        "--per-gpu",
        type=int,
        default=1,
        metavar="K",
        help="workers sharing each GPU, for small models (default 1)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="design points for tpe/nsga2/random (overrides sampler.trials)",
    )
    parser.add_argument(
        "--epochs",
        type=positive(float),
        help="training epochs of every trial (overrides base, and the spec's steps unless --steps "
        "is given too)",
    )
    parser.add_argument(
        "--steps", type=positive(int), help="training steps of every trial (overrides base)"
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where trials run (default auto: the GPUs if any, else the CPU)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, list the planned trials and estimate the time; run nothing",
    )
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="with --dry-run: skip the short timing runs of the first and last trials",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="do not write the report at the end"
    )
    parser.add_argument(
        "--reuse",
        metavar="STUDY",
        help="take the finished runs this study shares (same network, data, budget and seed) "
        "from STUDY, a study of the same storage: how a study grows by seeds or points",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; exit codes: 0 the study is done, 1 trials are left, failed points
    would run again on a resume, or none completed, 2 bad input, 130 stopped (Ctrl-C,
    SIGTERM)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device; use auto or cpu")
    if args.storage == "":
        parser.error("--storage '': give a journal file's path or a database URL, or leave it out")
    if args.no_probe and not args.dry_run:
        parser.error("--no-probe goes with --dry-run (a run has no timing probe to skip)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says what happens
    try:
        spec = _spec_of(args)
        out_dir = args.out or Path("runs") / spec.name
        options = RunOptions(
            storage=args.storage,
            workers=args.workers,
            per_gpu=args.per_gpu,
            device=args.device,
            report=not args.no_report,
            reuse=args.reuse,
        )
        if args.dry_run:
            print("\n".join(_dry_run_lines(spec, out_dir, options, probe=not args.no_probe)))
            return 0
        stop_on_sigterm()
        status = run_study(spec, out_dir, options)
    except (SpecError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return _report_outcome(spec, status, out_dir)


def _spec_of(args: argparse.Namespace) -> StudySpec:
    """The spec file with the command line's --epochs, --steps and --trials applied."""
    overrides = {k: v for k, v in (("epochs", args.epochs), ("steps", args.steps)) if v is not None}
    varied = [k for k in ("epochs", "steps") if overrides and k in load_spec(args.space).space]
    if varied:
        flags = " and ".join(f"--{k}" for k in overrides)
        given = " ".join(f"--{k} {v:g}" for k, v in overrides.items())
        raise ValueError(
            f"{given}: sets the training budget of every trial, which the spec varies "
            f"(space.{varied[0]}); drop {flags}, or take {varied[0]} out of the space"
        )
    if args.epochs is not None and args.steps is None:
        overrides["steps"] = None  # a spec's `steps:` would otherwise win over --epochs
    spec = load_spec(args.space, overrides)
    if args.trials is None:
        return spec
    if spec.sampler.name == "grid":
        raise ValueError(
            f"--trials {args.trials}: the spec's sampler is grid, which runs every point "
            "once; --trials sets the trial count of tpe, nsga2 and random"
        )
    if args.trials < 1:
        raise ValueError(f"--trials {args.trials}: give a trial count >= 1")
    sampler = spec.sampler.model_copy(update={"trials": args.trials})
    return spec.model_copy(update={"sampler": sampler})


def _dry_run_lines(spec: StudySpec, out_dir: Path, options: RunOptions, probe: bool) -> list[str]:
    """What a run would do, checked as a run checks it, and how long it would take."""
    _, pins, existing = check_destination(spec, out_dir, options)
    slots = plan(spec)
    lines = describe_plan(spec, slots)
    stored = stored_study(existing, spec.name)
    # (one the study remembers and is gone since passes `check_destination`: the run then
    # trains what is left, and so says the dry run)
    reuse, old = _reused_study(existing, stored, options.reuse)
    if reuse is not None:
        lines.append(
            reuse_line(spec, slots, old, options.device, worker_threads(len(pins)))
            if old is not None
            else _reused_study_gone(reuse)
        )
    done = finished_slots(stored, spec.max_retries) if stored else set()
    left = [slot for index, slot in enumerate(slots) if index not in done]
    if done:
        lines.append(
            f"resume: {len(done)} of these {len(slots)} trials are finished in its storage "
            f"(complete, or failed with no retry left); a run trains the other {len(left)}, "
            "which the budget and estimate count"
        )
    if not left:
        return lines
    return lines + estimate_time(spec, left, len(pins), options.device, options.objective, probe)


def _report_outcome(spec: StudySpec, status: QueueStatus, out_dir: Path) -> int:
    """Print what the run left and what to do next; the exit code :func:`main` documents."""
    print(
        f"{spec.name}: {status.complete} of {status.planned} trials complete, "
        f"{status.failed} failed; results in {out_dir / 'results.csv'}"
    )
    for reason, count in status.failure_reasons[:FAILURES_SHOWN]:
        print(f"  failed ({count} design point(s)): {reason}")
    if len(status.failure_reasons) > FAILURES_SHOWN:
        others = len(status.failure_reasons) - FAILURES_SHOWN
        print(f"  ... and {others} other reason{'s' if others > 1 else ''}: see fail_reason in "
              "results.csv")  # fmt: skip
    if status.complete_at_chance:
        none_learned = status.complete_at_chance == status.complete
        print(
            f"{status.complete_at_chance} of the {status.complete} complete trials have runs that "
            "did not learn (accuracy not above chance): infeasible, off the Pareto front"
            + ("; the study has no front: train longer (epochs, steps)" if none_learned else "")
        )
    if not status.done:
        print(f"{status.waiting + status.running} trials left: run the same command to resume")
        return 1
    if status.retry_on_resume:
        print(
            f"{status.retry_on_resume} failed design point(s) have retries left: see fail_reason "
            "in results.csv; where it lies outside the spec (memory, a driver, the data), fix "
            "it and run the same command to run them again (a changed spec is a new study: a "
            "new name and --out, with --reuse taking the runs the two share)"
        )
    return 0 if status.complete and not status.retry_on_resume else 1


if __name__ == "__main__":
    sys.exit(main())
