"""The study runner: exactly-once grids over several processes, failures, kills and resumes.

Engine mechanics use `fake_objective`, a fast stand-in honouring `run_variant`'s contract (the
metric names of DEVELOPERS.md); one end-to-end test runs the real `run_variant` on a tiny config.
Environment variables steer the fake inside the spawned workers: every call is appended to
ABLATE_TEST_CALLS, and the trial named by ABLATE_TEST_HANG writes its pid and hangs once (in
seed ABLATE_TEST_HANG_SEED, 0 by default).
"""

from __future__ import annotations

import _thread
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import random
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.storages import BaseStorage

from ablate import trial_queue
from ablate.estimate import describe_plan, estimate_time, reuse_line
from ablate.results import result_rows
from ablate.reuse import finished_runs, run_key
from ablate.spec import SCALAR_METRICS, StudySpec, load_spec
from ablate.storage import (
    locate_storage,
    open_storage,
    open_study,
)
from ablate.study import RunOptions, main, run_study, write_study_files
from ablate.trial_queue import (
    DUPLICATE_RETRY,
    INTERRUPTED,
    JOB_STOPPED,
    JOB_STOPPED_AGAIN,
    PLAN_LOCK_MARK,
    QueueStatus,
    claim_next,
    death_reason,
    finished_slots,
    owner_record,
    plan_slots,
    queue_status,
    reap_dead_trials,
)
from ablate.variant import UnbuildableVariant, made_by
from ablate.variant_config import VariantConfig
from ablate.worker_pool import WorkerPool, stop_workers, worker_threads
from ablate.workers import (
    Heartbeat,
    WorkerJob,
    plan,
    stop_on_sigterm,
    stop_once_on_signals,
    stop_when_orphaned,
)
from kernels.files import atomic_write_text

NAN_LR = 0.0625  # a learning rate that makes the fake "return" a NaN accuracy
DIVERGING_LR = 0.125  # ... and one that makes it raise TrainingDiverged
UNBUILDABLE_LR = 0.25  # ... and one that makes it raise UnbuildableVariant
CPU_DEVICE = re.compile(r"cpu \w+ \(\d+ threads?\)")  # a CPU run's device: ISA, thread count


def fake_objective(config: VariantConfig) -> dict[str, Any]:
    """Deterministic pseudo-metrics of a config, with every metric name of the contract."""
    calls = os.environ.get("ABLATE_TEST_CALLS")
    if calls:
        with open(calls, "a") as log:
            log.write(json.dumps(config.model_dump(mode="json"), sort_keys=True) + "\n")
    threads = os.environ.get("ABLATE_TEST_THREADS")
    if threads:
        with open(threads, "a") as log:
            log.write(f"{os.environ.get('OMP_NUM_THREADS')}\n")
    hang = os.environ.get("ABLATE_TEST_HANG")
    hang_seed = int(os.environ.get("ABLATE_TEST_HANG_SEED", "0"))
    if hang and config.filter_size == 3 and config.seed == hang_seed and not Path(hang).exists():
        # whole or not at all: a reader that found the file empty had never signalled
        atomic_write_text(Path(hang), str(os.getpid()))
        time.sleep(600)
    if config.lr == DIVERGING_LR:
        from ablate.train import TrainingDiverged  # the real exception, imported where needed

        raise TrainingDiverged("loss is nan at step 3 of 10")
    if config.lr == UNBUILDABLE_LR:
        from ablate.variant import UnbuildableVariant

        raise UnbuildableVariant("model 'mynets:build' returns tuple in training mode")
    rng = random.Random(json.dumps(config.model_dump(mode="json"), sort_keys=True))
    metrics: dict[str, Any] = {name: rng.uniform(0, 100) for name in SCALAR_METRICS}
    metrics["accuracy"] = math.nan if config.lr == NAN_LR else 10.0 * config.filter_size
    metrics["learned"] = not (config.filter_size == 2 and config.seed == 1)  # one stuck run
    for kind in ("circular", "crop"):
        metrics[f"accuracy_vs_shift_{kind}"] = [rng.uniform(0, 100) for _ in range(3)]
        metrics[f"true_prob_vs_shift_{kind}"] = [rng.random() for _ in range(3)]
    metrics["filter_tv"] = {"features.0": rng.random()}
    metrics.update(made_by(torch.device("cpu")))
    time.sleep(0.02)
    return metrics


#: A process id no process has (past Linux's largest, 2**22).
GONE_PID = 2**22 + 1


def opened_study(tmp_path: Path, spec: StudySpec) -> tuple[BaseStorage, optuna.Study, list]:
    """`spec`'s study in a journal under `tmp_path / "out"`, and its slots, not yet enqueued."""
    storage = open_storage(locate_storage(None, tmp_path / "out"))
    return storage, open_study(storage, spec), plan(spec)


def make_spec(tmp_path: Path, **changes: Any) -> StudySpec:
    data = {
        "name": "mechanics",
        "base": {"dataset": "synthetic", "model": "vgg", "epochs": 1},
        "space": {
            "filter_size": {"choices": [1, 2, 3]},
            "padding": {"choices": ["zeros", "reflect"]},
        },
        "objectives": [
            {"metric": "accuracy", "direction": "maximize"},
            {"metric": "consistency_circular", "direction": "maximize"},
        ],
        "seeds": [0, 1],
        "sampler": {"name": "grid"},
        "max_retries": 1,
    } | changes
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def options(**changes: Any) -> RunOptions:
    base = {"device": "cpu", "objective": fake_objective, "report": False, "progress": False}
    return RunOptions(**{"poll_s": 0.2, **base, **changes})


def load(out: Path, name: str = "mechanics") -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "journal.log"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def calls(path: Path) -> Counter[tuple]:
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(
        (c["filter_size"], c["padding"], c["lr"], c["seed"]) for c in map(json.loads, lines)
    )


@pytest.fixture
def call_log(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("ABLATE_TEST_CALLS", str(path))
    return path


def test_grid_on_two_workers_runs_each_point_once_and_records_everything(tmp_path, call_log):
    spec = make_spec(tmp_path, constraints=[{"metric": "accuracy", "min": 15}])
    out = tmp_path / "out"
    status = run_study(spec, out, options(workers=2))

    assert status.done and status.complete == status.planned == 6
    assert calls(call_log) == Counter(
        {(f, p, 0.05, s): 1 for f in (1, 2, 3) for p in ("zeros", "reflect") for s in (0, 1)}
    )
    study = load(out)
    trials = study.get_trials()
    assert len(trials) == 6 and sorted(t.user_attrs["slot"] for t in trials) == list(range(6))
    assert study.metric_names == ["accuracy", "consistency_circular"]
    workers = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(workers) <= 2
    for trial in trials:
        config = trial.user_attrs["config"]
        assert "seed" not in config
        assert VariantConfig(**config).filter_size == trial.params["filter_size"]
        seeds = trial.user_attrs["seeds"]
        assert [r["seed"] for r in seeds] == [0, 1]
        assert isinstance(seeds[0]["accuracy_vs_shift_crop"], list)
        for value, metric in zip(trial.values, spec.metric_names, strict=True):
            assert value == pytest.approx(sum(r[metric] for r in seeds) / 2)
        stuck = trial.params["filter_size"] == 2  # its seed 1 did not learn
        assert trial.constraints["seeds_at_chance<=0"] == float(stuck)
        feasible = trial.params["filter_size"] * 10.0 >= 15 and not stuck
        assert all(v <= 0 for v in trial.constraints.values()) == feasible
    assert all(t.params["filter_size"] == 3 for t in study.best_trials)

    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    header = list(rows[0])
    assert header[:7] == ["trial", "slot", "attempt", "state", "seed", "filter_size", "padding"]
    assert {"accuracy", "consistency_crop", "duration_s", "device", "fail_reason"} <= set(header)
    assert "accuracy_vs_shift_crop" not in header
    assert {r["state"] for r in rows} == {"COMPLETE"}
    row = next(r for r in rows if r["filter_size"] == "2" and r["seed"] == "1")
    assert float(row["accuracy"]) == 20.0 and row["learned"] == "False"
    assert CPU_DEVICE.fullmatch(row["device"])
    assert not list(out.glob(".*.tmp"))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["study_name"] == "mechanics" and meta["storage"] == "journal.log"
    assert meta["objectives"][0] == {"metric": "accuracy", "direction": "maximize"}
    assert load_spec(out / "spec.yaml").fingerprint() == spec.fingerprint()


def test_rerun_resumes_without_running_finished_trials(tmp_path, call_log):
    spec = make_spec(tmp_path, seeds=[0])
    out = tmp_path / "out"
    run_study(spec, out, options())
    first = call_log.read_text()
    status = run_study(spec, out, options())
    assert status.complete == 6 and call_log.read_text() == first
    assert len(load(out).get_trials()) == 6


def test_nan_and_diverged_trials_fail_with_their_reason_and_the_study_completes(
    tmp_path, call_log, monkeypatch
):
    space = {"lr": {"choices": [0.05, NAN_LR, DIVERGING_LR]}, "filter_size": {"value": 2}}
    spec = make_spec(tmp_path, space=space, seeds=[0], max_retries=1)
    out = tmp_path / "out"
    # no GPU (hidden where there is one: "auto" would run the workers on it, and a trial that
    # recorded no run would name it): the runs name "cpu (N …)"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    status = run_study(spec, out, options(device="auto"))

    assert status.done and (status.complete, status.failed) == (1, 2)
    trials = load(out).get_trials()
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 4  # two slots, each run once and retried once
    by_lr = Counter(t.params["lr"] for t in failed)
    assert by_lr == {NAN_LR: 2, DIVERGING_LR: 2}
    for trial in failed:
        reason = trial.user_attrs["fail_reason"]
        if trial.params["lr"] == NAN_LR:
            assert "'accuracy' is nan" in reason
        else:
            assert reason == "diverged: loss is nan at step 3 of 10"
    retries = [t for t in failed if t.user_attrs["attempt"] == 1]
    assert {t.user_attrs["retry_of"] for t in retries} == {
        t.number for t in failed if t.user_attrs["attempt"] == 0
    }
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(r["state"] == "FAIL" and "diverged" in r["fail_reason"] for r in rows) == 2
    assert all(CPU_DEVICE.fullmatch(r["device"]) for r in rows)  # as each run names it


def _signal_when_hung(
    marker: Path, signalled: list[int], signum: signal.Signals = signal.SIGKILL
) -> None:
    """Send `signum` to the worker once it hangs in a trial (SIGINT is Ctrl-C at a terminal)."""
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    pid = int(marker.read_text())
    os.kill(pid, signum)
    signalled.append(pid)


class _FakeWorker:
    """A worker process as the runner's pool sees it."""

    def __init__(self, pid: int) -> None:
        self.pid, self.name, self.exitcode = pid, f"fake-worker-{pid}", None

    def is_alive(self) -> bool:
        return self.exitcode is None


def test_a_worker_killed_just_after_a_poll_is_replaced_at_the_next(tmp_path, monkeypatch):
    """The runner follows its workers while a poll says one runs. A worker killed just after a
    poll read it as running is replaced at the next poll (the runner had stopped following
    when it read the workers' state after the replacements, leaving the study short)."""
    import ablate.worker_pool as worker_pool

    started: list[_FakeWorker] = []

    def start(pool: WorkerPool, index: int) -> _FakeWorker:
        started.append(_FakeWorker(1000 + len(started)))
        return started[-1]

    monkeypatch.setattr(WorkerPool, "_start", start)
    monkeypatch.setattr(worker_pool, "reap_dead_trials", lambda *args: [4])
    trials_left = QueueStatus(planned=1, complete=0, failed=0, running=0, waiting=1,
                              finished_trials=0, retry_on_resume=0, seeds_in_progress=0)
    monkeypatch.setattr(worker_pool, "queue_status", lambda *args: trials_left)
    template = WorkerJob(spec=make_spec(tmp_path, seeds=[0]), storage=None, index=0, device="cpu")
    pool = WorkerPool(None, None, [], template, [None], tmp_path)
    pool.start()
    assert pool.poll()
    started[0].exitcode = -9  # killed just after the poll
    assert pool.poll() and len(started) == 2 and pool.processes == [started[1]]
    assert pool.poll() and len(started) == 2
    started[1].exitcode = 0
    assert not pool.poll() and len(started) == 2


def test_sigkilled_worker_trial_is_failed_and_retried_by_a_new_worker(
    tmp_path, call_log, monkeypatch, capsys
):
    """The one worker is killed running a point (the OOM killer, a segfault): its trial fails
    with the reason and is retried, a new worker runs it and the other points."""
    spec = make_spec(tmp_path, seeds=[0])
    out = tmp_path / "out"
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv("ABLATE_TEST_HANG", str(marker))
    killed: list[int] = []
    killer = threading.Thread(target=_signal_when_hung, args=(marker, killed))
    killer.start()
    status = run_study(spec, out, options(workers=1))
    killer.join()

    assert killed and status.done and status.complete == 6 and status.failed == 0
    trials = load(out).get_trials()
    dead = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(dead) == 1 and dead[0].params["filter_size"] == 3 and len(trials) == 7
    assert f"worker process {killed[0]} " in dead[0].user_attrs["fail_reason"]
    assert "died" in dead[0].user_attrs["fail_reason"]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == dead[0].number)
    assert retry.state.name == "COMPLETE" and retry.params == dead[0].params
    runs = calls(call_log)
    hung_point = (3, dead[0].params["padding"], 0.05, 0)
    assert runs[hung_point] == 2 and all(n == 1 for k, n in runs.items() if k != hung_point)
    assert "ablate-worker-0 died (exit code -9) running trial" in capsys.readouterr().err


def test_a_killed_worker_whose_trial_another_reaped_is_replaced(
    tmp_path, call_log, monkeypatch, capsys
):
    """Whoever reaps a dead worker's trial first, the runner replaces the worker: where
    another worker had reaped it (they reap at every claim), the runner had found nothing to
    reap and left the study one worker short (with one worker, unfinished)."""
    spec = make_spec(tmp_path, seeds=[0])
    out = tmp_path / "out"
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv("ABLATE_TEST_HANG", str(marker))
    monkeypatch.setattr("ablate.worker_pool.reap_dead_trials", lambda *args, **kwargs: [])
    killer = threading.Thread(target=_signal_when_hung, args=(marker, []))
    killer.start()
    status = run_study(spec, out, options(workers=1))
    killer.join()
    assert status.done and status.complete == 6
    assert "ablate-worker-0 died (exit code -9); a new worker takes its place" in (
        capsys.readouterr().err
    )


def test_dead_worker_check_trusts_the_process_table_on_this_host(tmp_path):
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("heartbeat", time.time() - 1000)  # far older than the limit
    owners = {
        "alive": owner_record("cpu"),
        "reused pid": {**owner_record("cpu"), "started": "-1"},
        "pid reused by another user": {**owner_record("cpu"), "pid": 1, "started": "-1"},
        "other host": {**owner_record("cpu"), "host": "another-host.invalid"},
        # a container sharing this hostname, with its own pid namespace: our pid 1 is not its
        "other process table": {**owner_record("cpu"), "pid": 1, "process_table": "other"},
        # a record from before owners named their table (a plan lock has no heartbeat to wait
        # for): this host's, as it was then
        "no process table": {
            **{k: v for k, v in owner_record("cpu").items() if k != "process_table"},
            "pid": GONE_PID,
        },
    }
    reasons = {}
    for case, owner in owners.items():
        trial.set_user_attr("worker", owner)
        reasons[case] = death_reason(study.get_trials()[0], stale_after_s=300)
    assert reasons["alive"] is None  # a slow heartbeat does not fail a live local process
    assert "died" in reasons["reused pid"] and "died" in reasons["pid reused by another user"]
    assert "no heartbeat from worker process" in reasons["other host"]
    assert "no heartbeat from worker process 1" in reasons["other process table"]
    assert "died" in reasons["no process table"]


class _FlakyTrial:
    """A trial whose first heartbeat write fails the way a dropped database connection does."""

    number = 7

    def __init__(self) -> None:
        self.beats: list[float] = []
        self.failed = False

    def set_user_attr(self, key: str, value: float) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("server closed the connection unexpectedly")
        self.beats.append(value)


def test_heartbeat_goes_on_after_a_storage_error():
    trial = _FlakyTrial()
    with Heartbeat(trial, interval_s=0.01):  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while len(trial.beats) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert trial.failed and len(trial.beats) >= 2


def test_a_point_a_sampler_draws_again_takes_the_runs_it_made(tmp_path, call_log):
    """Random sampling of two points in five trials draws them again: the same runs would add
    nothing (the report counts a run once), so each repeat takes them and says from where."""
    space = {"filter_size": {"choices": [1, 3]}}
    sampler = {"name": "random", "trials": 5, "seed": 0}
    status = run_study(make_spec(tmp_path, space=space, sampler=sampler), tmp_path / "out",
                       options(workers=1))  # fmt: skip
    assert status.done and status.complete == 5
    assert calls(call_log) == Counter({(k, "reflect", 0.05, s): 1 for k in (1, 3) for s in (0, 1)})
    first: dict[int, optuna.trial.FrozenTrial] = {}
    for trial in load(tmp_path / "out").get_trials():
        size = trial.params["filter_size"]
        if size not in first:
            first[size] = trial
            assert "reused" not in trial.user_attrs
            continue
        source = f"trial {first[size].number} (the same run, drawn before)"
        assert trial.user_attrs["reused"] == {"0": source, "1": source}
        assert trial.user_attrs["seeds"] == first[size].user_attrs["seeds"]
        assert trial.values == first[size].values


def test_sampler_study_runs_the_asked_trial_count_and_grows_on_resume(tmp_path, call_log):
    space = {"lr": {"float": [0.01, 0.2], "log": True}, "filter_size": {"int": [1, 4]}}
    sampler = {"name": "random", "trials": 4, "seed": 3}
    spec = make_spec(tmp_path, space=space, sampler=sampler, seeds=[0])
    out = tmp_path / "out"
    status = run_study(spec, out, options(workers=2))
    assert status.done and status.complete == status.planned == 4
    grown = spec.model_copy(update={"sampler": spec.sampler.model_copy(update={"trials": 6})})
    status = run_study(grown, out, options(workers=1))
    assert status.complete == status.planned == 6
    trials = load(out).get_trials()
    assert len(trials) == 6 and sum(calls(call_log).values()) == 6
    assert all(0.01 <= t.params["lr"] <= 0.2 and 1 <= t.params["filter_size"] <= 4 for t in trials)


def test_a_stored_study_refuses_a_different_spec(tmp_path, call_log, capsys):
    """Refused by a run and by a dry run, naming what changed."""
    out = tmp_path / "out"
    run_study(make_spec(tmp_path, seeds=[0]), out, options())
    grown = make_spec(tmp_path, seeds=[0, 1])
    changed = "different spec (stored → now: seeds: [0] → [0, 1];"
    with pytest.raises(ValueError, match=re.escape(changed)):
        run_study(grown, out, options())
    path = tmp_path / "grown.yaml"
    path.write_text(grown.as_yaml())
    assert main(["--space", str(path), "--out", str(out), "--dry-run", "--no-probe"]) == 2
    assert changed in capsys.readouterr().err
    # the same values written otherwise are the same spec (`--epochs 1` gives base 1.0)
    path.write_text(make_spec(tmp_path, seeds=[0]).as_yaml())
    assert main(["--space", str(path), "--out", str(out), "--dry-run", "--no-probe",
                 "--epochs", "1"]) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (["--out", "{tmp}/a_file"], "is a file: give a folder"),
        (["--storage", "ftp://host/study"], "unsupported scheme 'ftp'"),
        # one slash: had made a folder 'sqlite:' with a journal in it, and run there
        (["--storage", "sqlite:/study.db"], "'sqlite:/study.db' is not a database URL"),
        (["--storage", "sqlite://study.db"], "'sqlite://study.db' is not a database URL"),
        (["--storage", "sqlite:///:memory:"], "in-memory database, which the workers cannot"),
        (["--storage", "sqlite:///{tmp}/a_file/x.db"], "a_file' is a file, not a folder"),
        (["--storage", "sqlite:///{tmp}"], "names a folder: give a database file in it"),
    ],
)
def test_a_dry_run_refuses_a_destination_the_run_could_not_use(tmp_path, capsys, where, message):
    path = tmp_path / "spec.yaml"
    path.write_text(make_spec(tmp_path).as_yaml())
    (tmp_path / "a_file").write_text("")
    where = [arg.format(tmp=tmp_path) for arg in where]
    assert main(["--space", str(path), *where, "--dry-run", "--no-probe"]) == 2
    assert message in capsys.readouterr().err


def test_a_dry_run_refuses_a_data_folder_that_is_not_there(tmp_path, capsys):
    """Checked before anything trains, with no probe too: each trial would have failed on it.
    Every dataset a space's choices read is looked for, not only the first."""
    cifar, images, nowhere = tmp_path / "cifar", tmp_path / "images", tmp_path / "nowhere"
    (cifar / "cifar-10-batches-py").mkdir(parents=True)
    batches = tmp_path / "batches"  # each file there (what they hold is read later)
    batches.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (batches / name).write_bytes(b"")
    for split, label in [("train", "a"), ("train", "b"), ("test", "a")]:
        (images / split / label).mkdir(parents=True, exist_ok=True)
        (images / split / label / "0.png").write_bytes(b"")  # listed, not read
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "test").mkdir()
    either = {"dataset": {"choices": ["cifar10", "folder"]}}
    path = tmp_path / "spec.yaml"
    cli = ["--space", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--no-probe"]
    for base, space, refusal in [
        ({"dataset": "cifar10", "data_dir": nowhere}, None, f"{str(nowhere)!r} is not a folder"),
        ({"dataset": "folder", "data_dir": cifar}, None, f"{str(cifar)!r} has no train/ folder"),
        ({"dataset": "folder", "data_dir": empty}, None, "train' holds no class folders"),
        ({"dataset": "cifar10", "data_dir": cifar}, None, "data_batch_1' is missing"),
        ({"data_dir": batches}, either, f"{str(batches)!r} has no train/ folder"),
        ({"data_dir": images}, either, f"no CIFAR-10 batches in {str(images)!r}"),
    ]:
        data = make_spec(tmp_path).model_dump(mode="json", by_alias=True, exclude_none=True)
        data["base"] = {"model": "vgg", "epochs": 1, "train_size": 2, "test_size": 1} | {
            k: str(v) for k, v in base.items()
        }
        data["space"] = space or data["space"]
        path.write_text(yaml.safe_dump(data))
        assert main(cli) == 2
        assert refusal in capsys.readouterr().err
    data["space"] = {"dataset": {"choices": ["folder", "cifar10"]}}
    path.write_text(yaml.safe_dump(data))
    assert main(cli) == 2, "a choice after the first is looked for too"
    data["space"] = {"dataset": {"choices": ["folder"]}}
    path.write_text(yaml.safe_dump(data))
    assert main(cli) == 0, "a folder of the right layout passes (its images are read later)"


def test_a_dry_run_refuses_more_images_than_a_data_folder_holds(tmp_path, image_folder, capsys):
    """The default train_size (5000) and test_size (1000) exceed a small folder of one's own:
    each run would fail on it, and the spec, once fixed, would be another study. The most any
    trial asks is checked, a range's end or a choice after the first too."""
    images = image_folder({"a": (3, 2), "b": (3, 1)})  # 6 training, 3 test images
    path = tmp_path / "spec.yaml"
    cli = ["--space", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--no-probe"]
    data = make_spec(tmp_path).model_dump(mode="json", by_alias=True, exclude_none=True)
    for sizes, space, refusal in [
        ({}, {}, "train_size=5000 exceeds the 6 training images"),
        ({"train_size": 6}, {}, "test_size=1000 exceeds the 3 test images"),
        ({"test_size": 3}, {"train_size": {"int": [2, 7]}}, "train_size=7 exceeds the 6"),
        ({"train_size": 6}, {"test_size": {"choices": [2, 4]}}, "use test_size <= 3"),
        ({"test_size": 3}, {"train_size": {"choices": [2, 6]}}, None),
    ]:
        base = {"model": "vgg", "epochs": 1, "dataset": "folder", "data_dir": str(images)}
        data["base"], data["space"] = base | sizes, space
        path.write_text(yaml.safe_dump(data))
        assert main(cli) == (0 if refusal is None else 2)
        assert refusal is None or refusal in capsys.readouterr().err


def test_a_journal_record_cut_short_is_moved_aside_and_the_study_resumes(tmp_path, monkeypatch):
    """A full disk or a kill mid-write leaves half a record; the next record would have been
    glued to it and the study lost. It is cut off (kept beside the journal) on the next open."""
    out = tmp_path / "out"
    spec = make_spec(tmp_path, seeds=[0])
    assert run_study(spec, out, options()).complete == 6
    journal = out / "journal.log"
    live = optuna.load_study(
        study_name="mechanics", storage=open_storage(locate_storage(None, out))
    )
    whole = journal.read_bytes()
    torn = b'{"op_code": 4, "worker_id": "' + b"x" * 40  # longer than the look-back below
    journal.write_bytes(whole + torn)
    monkeypatch.setattr("ablate.storage.TAIL_BYTES", 16)
    live.set_user_attr("note", "written after another process's write was cut short")
    assert journal.read_bytes().startswith(whole) and load(out).user_attrs["note"]
    (kept,) = out.glob("journal.log.torn-*")
    assert kept.read_bytes() == torn
    journal.write_bytes(journal.read_bytes() + torn)  # and a new process, on a resume
    status = run_study(spec, out, options())
    assert status.done and status.complete == 6 and len(list(out.glob("journal.log.torn-*"))) >= 1


def test_a_sqlite_file_in_the_new_output_folder_is_made_by_the_run_not_the_dry_run(
    tmp_path, call_log
):
    out = tmp_path / "new"
    database = out / "study.db"
    spec = make_spec(tmp_path, space={"filter_size": {"value": 3}}, seeds=[0])
    path = tmp_path / "spec.yaml"
    path.write_text(spec.as_yaml())
    storage = f"sqlite:///{database}"
    cli = ["--space", str(path), "--out", str(out), "--storage", storage]
    assert main([*cli, "--dry-run", "--no-probe"]) == 0 and not database.exists()
    status = run_study(spec, out, options(storage=storage))
    assert status.done and status.complete == 1 and database.is_file()
    # a database in a folder not made yet, outside the output folder: made as a journal's is
    # (SQLite makes no folder: the dry run passed, and the run failed to open it)
    elsewhere = tmp_path / "db" / "deeper" / "study.db"
    status = run_study(spec, tmp_path / "other", options(storage=f"sqlite:///{elsewhere}"))
    assert status.done and status.complete == 1 and elsewhere.is_file()


def test_cli_rejects_a_bad_spec_without_a_traceback(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: x\nspace: {padding: {choices: [mirror]}}\nsampler: {name: grid}\n"
        "objectives: [{metric: accuracy, direction: maximize}]\n"
    )
    assert main(["--space", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "space.padding.choices[0]: 'mirror' is not allowed" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--no-probe"], "--no-probe goes with --dry-run"),
        (["--storage", ""], "--storage '': give a journal file's path or a database URL"),
        pytest.param(["--device", "cuda"], "--device cuda: this machine has no CUDA device",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
    ],
)
def test_cli_refuses_flags_this_run_cannot_honour(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--space", str(tmp_path / "unread.yaml"), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_help_explains_itself(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--dry-run" in text and "examples:" in text and "resume" in text


def _on_a_gpu(config: VariantConfig) -> dict[str, Any]:
    return {**fake_objective(config), "device": "NVIDIA H100 80GB HBM3", "train_seconds": 0.0,
            "train_images_per_s": 100.0}  # fmt: skip


def _estimated_s(line: str) -> int:
    minutes, seconds = re.match(r"estimate: (\d+) min (\d+) s", line).groups()
    return 60 * int(minutes) + int(seconds)


def test_dry_run_plans_the_grid_and_estimates_time_from_a_probe(tmp_path, capsys):
    spec = make_spec(tmp_path)
    slots = plan(spec)
    lines = describe_plan(spec, slots, limit=4)
    assert lines[0] == "study 'mechanics': 6 trials x 2 seeds = 12 runs, sampler grid"
    assert "  trial    3: filter_size=2, padding='reflect'" in lines
    assert lines[-2] == "  ... and 2 more"
    # filter size 1 reads no padding: its reflect point builds its zeros point's network
    assert lines[-1].startswith("note: 1 of these trials make the run an earlier one makes")
    budget, estimate = estimate_time(spec, slots, 2, "cpu", fake_objective, probe=True)
    # 6 points x 2 seeds x 1 epoch of 5000 training images (VariantConfig's default train_size)
    # in whole batches of 128, as training takes them: 40 steps
    assert budget == "budget: 61,440 training images in all (from the spec's epochs/steps)"
    assert estimate.startswith("estimate: ") and "with 2 worker(s)" in estimate
    assert "2-step probe" in estimate and "train images/s" in estimate
    # On the CPU workers share its cores: two are no faster than one (the estimate had
    # halved); on GPUs the workers run trials side by side, at most one a trial.
    assert "(they share the CPU's cores)" in estimate
    one_worker = estimate_time(spec, slots, 1, "cpu", fake_objective, probe=True)[1]
    assert _estimated_s(one_worker) == pytest.approx(_estimated_s(estimate), abs=1)
    on_gpus = [estimate_time(spec, slots, n, "cuda", _on_a_gpu, probe=True)[1] for n in (1, 3, 9)]
    one, three, nine = map(_estimated_s, on_gpus)
    assert three == pytest.approx(one / 3, abs=1) and nine == pytest.approx(one / 6, abs=1)
    assert estimate_time(spec, slots, 2, "cpu", fake_objective, probe=False) == [budget]


def test_the_time_estimate_probes_the_first_and_the_last_trial(tmp_path):
    """A grid's first point is often its fastest (no blur) and its last its slowest: the
    estimate takes their mean time per image, so a slow last point is not left out of it."""
    spec = make_spec(tmp_path, base={"dataset": "synthetic", "model": "vgg", "steps": 10})
    slots = plan(spec)  # filter sizes 1, 2, 3 x zeros, reflect; batches of 128
    probed = []

    def speed_by_filter(config: VariantConfig) -> dict:
        probed.append(config.filter_size)
        return {"train_images_per_s": 1280.0 / config.filter_size, "train_seconds": 0.0}

    _, estimate = estimate_time(spec, slots, 1, "cpu", speed_by_filter, probe=True)
    assert probed == [1, 3]
    # 12 runs x 10 steps x 128 images at (1 + 3) / 2 / 1280 s per image: 24 s (12 s from the
    # first point alone)
    assert estimate.startswith("estimate: 0 min 24 s"), estimate
    assert "probes of the first and last trials" in estimate
    assert "1,280 train images/s (first), 427 train images/s (last)" in estimate
    probed.clear()
    # a filter of one tap reads no padding: both points make one network, probed once
    one = make_spec(
        tmp_path,
        base={"dataset": "synthetic", "filter_size": 1, "steps": 10},
        space={"padding": {"choices": ["zeros", "reflect"]}},
    )
    _, estimate = estimate_time(one, plan(one), 1, "cpu", speed_by_filter, probe=True)
    assert probed == [1] and "a 2-step probe of the first trial" in estimate


def test_a_dry_run_refuses_a_first_trial_that_cannot_be_built(tmp_path):
    """A probe that fails the same way every time (an image too small for the network) is
    bad input; any other failure of the probe leaves the estimate out."""
    spec = make_spec(tmp_path)
    slots = plan(spec)

    def unbuildable(_config: VariantConfig) -> dict:
        raise UnbuildableVariant("model 'vgg' fails on a batch of 3×3×3 images")

    def flaky(_config: VariantConfig) -> dict:
        raise RuntimeError("CUDA error: unspecified launch failure")

    with pytest.raises(ValueError, match="first trial cannot be built: model 'vgg' fails"):
        estimate_time(spec, slots, 1, "cpu", unbuildable, probe=True)
    lines = estimate_time(spec, slots, 1, "cpu", flaky, probe=True)
    assert lines[-1].startswith("no time estimate: the probe run failed (RuntimeError: CUDA")


def test_cli_epochs_override_replaces_the_specs_steps(tmp_path, capsys):
    base = {"dataset": "synthetic", "train_size": 128, "batch_size": 32, "steps": 2}
    path = tmp_path / "steps.yaml"
    spec = {
        "name": "steps",
        "base": base,
        "objectives": [{"metric": "accuracy", "direction": "maximize"}],
        "sampler": {"name": "grid"},
    }
    path.write_text(yaml.safe_dump(spec))
    cli = ["--space", str(path), "--device", "cpu", "--dry-run", "--no-probe"]
    assert main([*cli, "--epochs", "3"]) == 0
    assert "budget: 384 training images" in capsys.readouterr().out  # 3 x 128, not 2 x 32
    assert main([*cli, "--epochs", "3", "--steps", "5"]) == 0
    assert "budget: 160 training images" in capsys.readouterr().out  # --steps wins


def test_finished_slots_are_complete_or_out_of_retries():
    """What no resume trains again: slot 0 complete, slot 1 failed on its last retry; not slot
    2, failed with a retry left, nor slot 3, waiting."""
    study = optuna.create_study()
    for slot, attempt, state in ((0, 0, "COMPLETE"), (1, 1, "FAIL"), (2, 0, "FAIL"),
                                 (3, 0, "WAITING")):  # fmt: skip
        study.enqueue_trial({}, user_attrs={"slot": slot, "attempt": attempt})
        if state != "WAITING":
            trial = study.ask()
            study.tell(trial, 1.0 if state == "COMPLETE" else None,
                       state=optuna.trial.TrialState[state])  # fmt: skip
    assert finished_slots(study, max_retries=1) == {0, 1}


def test_a_dry_run_of_a_started_study_budgets_what_is_left(tmp_path, call_log, capsys):
    """A dry run of a study that has run before counts only the trials a run would still
    train, and says so (it had budgeted every trial, as if none were done)."""
    sampler = {"name": "random", "trials": 3, "seed": 0}
    base = {"dataset": "synthetic", "train_size": 64, "batch_size": 32, "steps": 2}
    spec = make_spec(tmp_path, seeds=[0], sampler=sampler, base=base)
    out = tmp_path / "out"
    assert run_study(spec, out, options(workers=1)).complete == 3
    cli = ["--space", str(tmp_path / "spec.yaml"), "--out", str(out), "--device", "cpu",
           "--dry-run", "--no-probe"]  # fmt: skip
    assert main([*cli, "--trials", "5"]) == 0
    printed = capsys.readouterr().out
    assert (
        "resume: 3 of these 5 trials are finished in its storage (complete, or failed with no "
        "retry left); a run trains the other 2"
    ) in printed
    assert "budget: 128 training images in all" in printed  # 2 trials x 2 steps x 32
    assert main(cli) == 0
    assert "budget:" not in capsys.readouterr().out  # nothing left to train


@pytest.mark.parametrize(("varied", "flag"), [("epochs", "--epochs"), ("steps", "--epochs"),
                                              ("epochs", "--steps")])  # fmt: skip
def test_cli_budget_override_of_a_spec_that_varies_the_budget_says_why_not(
    tmp_path, capsys, varied, flag
):
    """A spec whose space varies epochs or steps: an override of the budget for every trial
    contradicts it, and the error names the flag (it had blamed a `base.epochs` the user never
    wrote, or, for --epochs against varied steps, said nothing and left --epochs unused)."""
    spec = {
        "name": "budgets",
        "base": {"dataset": "synthetic", "train_size": 128, "batch_size": 32},
        "space": {varied: {"choices": [1, 2]}},
        "objectives": [{"metric": "accuracy", "direction": "maximize"}],
        "sampler": {"name": "grid"},
    }
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump(spec))
    cli = ["--space", str(path), "--device", "cpu", "--dry-run", "--no-probe", flag, "3"]
    assert main(cli) == 2
    assert capsys.readouterr().err == (
        f"error: {flag} 3: sets the training budget of every trial, which the spec varies "
        f"(space.{varied}); drop {flag}, or take {varied} out of the space\n"
    )


def test_end_to_end_tiny_study_with_the_real_run_variant(tmp_path, capsys, user_nets):
    """Through the CLI, in a spawned worker: a baseline, a network of the user's own, and one
    that cannot be built, which fails at once and is left for a resume."""
    spec = {
        "name": "tiny",
        "base": {
            "dataset": "synthetic",
            "width": 4,
            "train_size": 128,
            "test_size": 32,
            "eval_size": 32,
            "steps": 4,
            "batch_size": 32,
            "throughput_batch": 8,
            "backend": "torch",
            "shift": 1,
            "diagonal": 1,
            "crop_pad": 1,
        },
        "space": {
            "model": {"choices": ["vgg", f"{user_nets}:small_cnn", f"{user_nets}:AuxiliaryOutput"]}
        },
        "objectives": [
            {"metric": "accuracy", "direction": "maximize"},
            {"metric": "consistency_circular", "direction": "maximize"},
            {"metric": "train_images_per_s", "direction": "maximize"},
        ],
        "seeds": [0],
        "sampler": {"name": "grid"},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs" / "tiny"
    cli = ["--space", str(path), "--out", str(out), "--device", "cpu"]
    assert main([*cli, "--dry-run", "--no-probe"]) == 0
    assert "3 trials x 1 seed = 3 runs" in capsys.readouterr().out

    assert main([*cli, "--steps", "3"]) == 1  # a failed point is left for a resume
    assert (out / "summary.md").is_file()  # the report, written at the end
    printed = capsys.readouterr().out.splitlines()
    # why each failed point failed, at once (a missing data folder had said nothing)
    assert printed.pop(1).startswith(
        "  failed (1 design point(s)): cannot be built: model 'user_nets:AuxiliaryOutput'"
    )
    assert printed == [
        f"tiny: 2 of 3 trials complete, 1 failed; results in {out / 'results.csv'}",
        # three steps teach nothing: the summary line had read as a success
        "2 of the 2 complete trials have runs that did not learn (accuracy not above chance): "
        "infeasible, off the Pareto front; the study has no front: train longer (epochs, steps)",
        "1 failed design point(s) have retries left: see fail_reason in results.csv; where it "
        "lies outside the spec (memory, a driver, the data), fix it and run the same command to "
        "run them again (a changed spec is a new study: a new name and --out, with --reuse "
        "taking the runs the two share)",
    ]
    trials = load(out, "tiny").get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert {t.user_attrs["config"]["steps"] for t in trials} == {3}
    for trial in trials[:2]:
        metrics = trial.user_attrs["seeds"][0]
        assert 0 <= metrics["accuracy"] <= 100 and metrics["train_images_per_s"] > 0
        assert len(metrics["accuracy_vs_shift_circular"]) == 2  # d = 0..diagonal
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["vgg", "user_nets:small_cnn", "user_nets:AuxiliaryOutput"]
    assert all(CPU_DEVICE.fullmatch(r["device"]) and float(r["params"]) > 0 for r in rows[:2])
    assert rows[2]["fail_reason"].startswith("cannot be built: model 'user_nets:AuxiliaryOutput'")


def test_interrupted_trial_is_requeued_without_using_a_retry(
    tmp_path, call_log, monkeypatch, capfd
):
    spec = make_spec(tmp_path, seeds=[0], max_retries=0)
    out = tmp_path / "out"
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv("ABLATE_TEST_HANG", str(marker))
    interrupted: list[int] = []
    stopper = threading.Thread(target=_signal_when_hung, args=(marker, interrupted, signal.SIGINT))
    stopper.start()
    first = run_study(spec, out, options(workers=1))
    stopper.join()

    assert interrupted and not first.done
    assert "Traceback" not in capfd.readouterr().err  # the worker stops quietly
    stopped = [t for t in load(out).get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert len(stopped) == 1 and "interrupted" in stopped[0].user_attrs["fail_reason"]

    # max_retries is 0, yet the stopped point runs again on resume, with the same attempt.
    second = run_study(spec, out, options(workers=1))
    assert second.done and second.complete == 6
    retry = next(t for t in load(out).get_trials() if t.user_attrs.get("retry_of") is not None)
    assert retry.state.name == "COMPLETE" and retry.params == stopped[0].params
    assert retry.user_attrs["attempt"] == stopped[0].user_attrs["attempt"] == 0


def test_progress_counts_the_seeds_a_running_trial_has_finished(tmp_path, monkeypatch):
    """A trial runs every seed; the bar moves per seed, not per trial, so long trials show
    progress."""
    spec = make_spec(tmp_path, seeds=[0, 1])
    out = tmp_path / "out"
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv("ABLATE_TEST_HANG", str(marker))
    monkeypatch.setenv("ABLATE_TEST_HANG_SEED", "1")
    seen = []

    def look_then_stop() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(queue_status(load(out), spec.max_retries))
        os.kill(int(marker.read_text()), signal.SIGINT)

    looker = threading.Thread(target=look_then_stop)
    looker.start()
    run_study(spec, out, options(workers=1))
    looker.join()
    (hung,) = seen
    assert (hung.running, hung.seeds_in_progress) == (1, 1)
    assert hung.runs_done(2) == 2 * hung.finished + 1


def test_a_plan_cut_short_leaves_no_lock_behind(tmp_path, call_log, monkeypatch):
    """Ctrl-C while the trials are enqueued, or a planner killed then: the next run enqueues
    the rest (every resume used to wait for the dead planner and fail)."""
    spec = make_spec(tmp_path, seeds=[0])
    out = tmp_path / "out"
    storage = open_storage(locate_storage(None, out))
    study = open_study(storage, spec)
    enqueue = optuna.Study.enqueue_trial
    enqueued = []

    def interrupted(self, *args, **kwargs):
        if len(enqueued) == 2:
            raise KeyboardInterrupt
        enqueued.append(enqueue(self, *args, **kwargs))

    monkeypatch.setattr(optuna.Study, "enqueue_trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plan_slots(study, storage, plan(spec))
    monkeypatch.undo()
    assert run_study(spec, out, options(workers=1)).complete == 6
    # a planner killed halfway: its lock names a process of this host that is gone
    spec = make_spec(tmp_path, name="killed", seeds=[0])
    study = open_study(storage, spec)
    lock = optuna.create_study(study_name="killed:plan-lock", storage=storage)
    lock.set_user_attr("owner", {**owner_record(), "pid": GONE_PID})
    plan_slots(study, storage, plan(spec), stale_after_s=600)
    assert len(study.get_trials()) == 6
    # a waiter whose planner was stopped (its lock deleted) plans at once
    spec = make_spec(tmp_path, name="stopped", seeds=[0])
    study = open_study(storage, spec)
    lock = "stopped:plan-lock"
    optuna.create_study(study_name=lock, storage=storage)
    threading.Timer(
        0.3, optuna.delete_study, kwargs={"study_name": lock, "storage": storage}
    ).start()
    began = time.monotonic()
    plan_slots(study, storage, plan(spec), stale_after_s=600)
    assert len(study.get_trials()) == 6 and time.monotonic() - began < 30
    # a planner on another host that stopped enqueueing: its lock is taken over once nothing
    # has been enqueued for stale_after_s (it had blocked every later run)
    spec = make_spec(tmp_path, name="elsewhere", seeds=[0])
    study = open_study(storage, spec)
    lock = optuna.create_study(study_name="elsewhere:plan-lock", storage=storage)
    lock.set_user_attr("owner", {**owner_record(), "host": "another-host.invalid"})
    study.enqueue_trial(dict(plan(spec)[0]), user_attrs={"slot": 0, "attempt": 0})
    plan_slots(study, storage, plan(spec), stale_after_s=1)
    assert sorted(t.user_attrs["slot"] for t in study.get_trials()) == list(range(6))
    assert "elsewhere:plan-lock" not in {s.study_name for s in storage.get_all_studies()}


def test_two_waiters_take_over_a_dead_planners_lock_once(tmp_path, monkeypatch):
    """A waiter that finds the planner dead deletes that lock, not the one another waiter
    took over with meanwhile (both used to plan: every slot enqueued twice)."""
    spec = make_spec(tmp_path, seeds=[0])
    storage, study, slots = opened_study(tmp_path, spec)
    name = f"{spec.name}:plan-lock"
    lock = optuna.create_study(study_name=name, storage=storage)
    lock.set_user_attr("owner", {**owner_record(), "pid": GONE_PID})
    read_owner = storage.get_study_user_attrs

    def the_other_waiter_plans():  # what plan_slots does while holding the lock
        for index, params in enumerate(slots):
            study.enqueue_trial(dict(params), user_attrs={"slot": index, "attempt": 0})
        study.set_user_attr("planned_slots", len(slots))

    def the_other_waiter_takes_over(study_id):
        attrs = read_owner(study_id)
        if study_id == lock._study_id:  # between this waiter's read and its delete
            optuna.delete_study(study_name=name, storage=storage)
            optuna.create_study(study_name=name, storage=storage).set_user_attr(
                "owner", owner_record()
            )
            other.start()
        return attrs

    other = threading.Timer(0.3, the_other_waiter_plans)
    monkeypatch.setattr(storage, "get_study_user_attrs", the_other_waiter_takes_over)
    plan_slots(study, storage, slots, stale_after_s=600)
    other.join()
    assert sorted(t.user_attrs["slot"] for t in study.get_trials()) == list(range(len(slots)))


def test_planners_of_different_sizes_at_once_enqueue_each_slot_once(tmp_path):
    """Two runners started together with different `--trials`: one lock for the study, so
    the second enqueues only what the first did not (each had held a lock of its own size
    and both enqueued the shared slots)."""
    spec = make_spec(tmp_path, seeds=[0])
    storage, study, slots = opened_study(tmp_path, spec)
    planners = [threading.Thread(target=plan_slots, args=(study, storage, slots[:n]))
                for n in (3, len(slots))]  # fmt: skip
    for planner in planners:
        planner.start()
    for planner in planners:
        planner.join()
    assert sorted(t.user_attrs["slot"] for t in study.get_trials()) == list(range(len(slots)))
    assert study.user_attrs["planned_slots"] == len(slots)
    assert not [s for s in storage.get_all_studies() if PLAN_LOCK_MARK in s.study_name]


def test_a_stop_that_uses_no_retry_is_not_lost_with_its_requeue(tmp_path):
    """A reaper that died between failing an interrupted trial and enqueueing its retry: a
    resume enqueues it at the same attempt, even with `max_retries: 0` (the point was lost)."""
    from ablate.trial_queue import requeue_lost_retries

    spec = make_spec(tmp_path, seeds=[0], max_retries=0)
    storage, study, slots = opened_study(tmp_path, spec)
    plan_slots(study, storage, slots)
    trial = claim_next(study, storage, owner_record("cpu"))
    storage.set_trial_user_attr(trial._trial_id, "fail_reason", INTERRUPTED)
    storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
    assert requeue_lost_retries(study, slots, spec.max_retries) == [trial.number]
    (retry,) = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == trial.number]
    assert retry.user_attrs["attempt"] == 0


def test_a_stopped_runner_counts_as_interrupted_only_its_own_workers_trials(tmp_path):
    """Another runner's worker on this host that died is judged as ever (its death uses a
    retry); the stopped runner's own workers' trials use none."""
    spec = make_spec(tmp_path, seeds=[0], max_retries=1)
    storage, study, slots = opened_study(tmp_path, spec)
    plan_slots(study, storage, slots)
    gone = {"pid": GONE_PID, "started": None}
    ours = {**owner_record("cpu"), **gone, "runner": {"pid": os.getpid(), "started": None}}
    other_runner = {"pid": os.getppid(), "started": None}  # alive, not this process
    theirs = {**owner_record("cpu"), **gone, "runner": other_runner}
    mine, other = (claim_next(study, storage, owner) for owner in (ours, theirs))
    reap_dead_trials(study, storage, slots, spec.max_retries, stopped_here=True)
    reasons = {t.number: t.user_attrs.get("fail_reason") for t in study.get_trials()}
    assert reasons[mine.number] == INTERRUPTED
    assert "died while running the trial" in reasons[other.number]


def test_a_plan_lock_is_deleted_only_while_it_records_the_owner_judged(tmp_path):
    """SQLite gives a new lock the id of one just deleted: a planner releasing, or a waiter
    taking over, deletes the lock only if it still records the owner it knew (a takeover had
    deleted the lock another waiter had just taken, and both planned)."""
    from ablate.trial_queue import _delete_lock, _lock_owner

    storage = open_storage(locate_storage(f"sqlite:///{tmp_path}/locks.db", tmp_path))
    name = "s:plan-lock"
    lock = optuna.create_study(study_name=name, storage=storage)
    theirs = {**owner_record(), "token": "theirs"}
    lock.set_user_attr("owner", theirs)
    _delete_lock(storage, name, lock._study_id, {**owner_record(), "token": "mine"})
    _delete_lock(storage, name, lock._study_id, {})  # one that never recorded itself
    assert _lock_owner(storage, name) == (lock._study_id, theirs)
    _delete_lock(storage, name, lock._study_id, theirs)
    assert _lock_owner(storage, name) is None


def test_a_trial_whose_whole_job_was_killed_uses_no_retry(tmp_path):
    """A worker gone with its runner (`kill -9` of the job, a restart) was not failed by its
    trial: requeued as after Ctrl-C. A worker that died under a live runner uses a retry."""
    spec = make_spec(tmp_path, seeds=[0], max_retries=0)
    storage, study, slots = opened_study(tmp_path, spec)
    plan_slots(study, storage, slots)
    gone = {"pid": GONE_PID, "started": None}
    crashed = {**owner_record("cpu"), **gone}  # its runner: this process, alive
    killed = {**crashed, "runner": {"pid": GONE_PID + 1, "started": None}}
    for owner in (crashed, killed):
        assert claim_next(study, storage, owner) is not None
    reap_dead_trials(study, storage, slots, spec.max_retries)
    trials = study.get_trials()
    first, second = trials[0], trials[1]
    assert "died while running the trial" in first.user_attrs["fail_reason"]
    assert second.user_attrs["fail_reason"] == JOB_STOPPED
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    assert [(t.user_attrs["retry_of"], t.user_attrs["attempt"]) for t in retries] == [(1, 0)]
    # the same point's job stopped again: perhaps the point stops it (an out-of-memory kill of
    # the whole group), so this time it uses a retry, and max_retries bounds the loop
    while claim_next(study, storage, killed).number != retries[0].number:  # the slots before
        pass
    reap_dead_trials(study, storage, slots, spec.max_retries)
    again = study.get_trials()[retries[0].number]
    assert again.user_attrs["fail_reason"] == JOB_STOPPED_AGAIN
    assert not [t for t in study.get_trials() if t.user_attrs.get("retry_of") == again.number]


def _deaf_to_interrupts() -> None:  # a worker stuck where no signal but SIGKILL ends it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)


def test_stuck_workers_are_stopped_within_one_grace_period_however_many(tmp_path):
    """SIGTERM, then SIGKILL: each step waits once for all workers, not once per worker (four
    stuck workers took four times as long to stop)."""
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_deaf_to_interrupts) for _ in range(4)]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    stop_workers(workers, wait_s=1.0)
    assert not any(w.is_alive() for w in workers) and time.monotonic() - began < 2 * 1.0 + 2


def _stops_once(marker: Path) -> None:  # a worker whose requeue outlasts a second signal
    stop_once_on_signals()
    try:  # (a stop that lands while it says so is handled as one during the sleep)
        marker.write_text("listening")
        time.sleep(120)
    except KeyboardInterrupt:
        marker.write_text("stopping")
        time.sleep(1.0)  # the requeue, during which the runner's SIGTERM arrives
        marker.write_text("requeued")


STOPPED_BY_BOTH_AT_ONCE = """
import signal, sys, threading, time
from ablate.workers import stop_once_on_signals
stop_once_on_signals()
stops = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, stops)
for stop in stops:  # both pending on this thread (blocked) before Python handles either
    signal.pthread_kill(threading.get_ident(), stop)
try:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    time.sleep(60)
except KeyboardInterrupt:
    sum(range(10**6))  # the requeue, while Python handles the other signal
    print("requeued", file=sys.stderr)
"""


def test_two_stops_pending_at_once_stop_a_worker_once():
    """A Ctrl-C and the runner's SIGTERM can both be pending when the worker's Python handles
    the first: the second is passed over quietly (it had raised "OSError: Signal 15 ignored
    due to race condition" inside the requeue, a traceback after the runner's message)."""
    done = subprocess.run([sys.executable, "-c", STOPPED_BY_BOTH_AT_ONCE], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).parents[1])  # fmt: skip
    assert done.returncode == 0 and done.stderr == "requeued\n", done.stderr


def test_a_second_stop_does_not_cut_short_a_workers_requeue(tmp_path):
    """A Ctrl-C at a terminal reaches the workers and their runner, which passes it on: the
    second signal must not interrupt the requeue the first one started."""
    marker = tmp_path / "state"
    worker = multiprocessing.get_context("fork").Process(target=_stops_once, args=(marker,))
    worker.start()
    deadline = time.monotonic() + 30
    # Its handlers are in place once it has said so: the file's existence alone is not enough
    # (the stop could land while it is being written, before the worker listens).
    while not (marker.exists() and marker.read_text() == "listening"):
        assert time.monotonic() < deadline, "the worker never listened"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGINT)
    while marker.read_text() != "stopping" and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.terminate()
    worker.join(timeout=30)
    assert marker.read_text() == "requeued" and worker.exitcode == 0


def _worker_left_behind(marker: Path) -> None:  # a worker: stops as on SIGTERM, says so
    stop_on_sigterm()
    stop_when_orphaned(poll_s=0.1)
    try:
        time.sleep(120)
    except KeyboardInterrupt:
        marker.write_text("stopped")


def _runner_that_is_killed(marker: Path) -> None:
    multiprocessing.get_context("fork").Process(target=_worker_left_behind, args=(marker,)).start()
    time.sleep(120)


def test_a_worker_whose_runner_is_killed_outright_stops(tmp_path):
    """`kill -9` of the runner: its workers had gone on training, unseen, to the study's end."""
    marker = tmp_path / "stopped"
    runner = multiprocessing.get_context("fork").Process(
        target=_runner_that_is_killed, args=(marker,)
    )
    runner.start()
    time.sleep(1.0)  # the worker is watching
    os.kill(runner.pid, signal.SIGKILL)
    runner.join()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "stopped"


def test_workers_share_the_cores(tmp_path, monkeypatch):
    """Two workers on four cores get two threads each (each had taken all four, and every run
    and its throughput slowed); an OMP_NUM_THREADS the user set is left as it is."""
    seen = tmp_path / "threads"
    monkeypatch.setenv("ABLATE_TEST_THREADS", str(seen))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    spec = make_spec(tmp_path, seeds=[0])
    assert run_study(spec, tmp_path / "a", options(workers=2)).complete == 6
    assert set(seen.read_text().split()) == {"2"} and "OMP_NUM_THREADS" not in os.environ
    seen.unlink()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert run_study(spec, tmp_path / "b", options(workers=2)).complete == 6
    assert set(seen.read_text().split()) == {"3"}


def test_a_metric_the_cpu_cannot_measure_is_refused_as_an_objective_on_the_cpu(tmp_path):
    """Peak memory is NaN on the CPU: every trial would have failed, and been retried."""
    objectives = [{"metric": "peak_memory_mb", "direction": "minimize"}]
    spec = make_spec(tmp_path, objectives=objectives)
    with pytest.raises(ValueError, match="peak_memory_mb: measured on CUDA only"):
        run_study(spec, tmp_path / "out", options())
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_each_trials_to_report(tmp_path, call_log):
    """The worker does not die on it before claiming a trial (the objective says why)."""
    status = run_study(make_spec(tmp_path, seeds=[0]), tmp_path / "out", options(device="cuda"))
    assert status.done and status.complete == 6


def test_a_resume_on_another_storage_is_refused(tmp_path, call_log):
    """The folder's study lives in its own journal: another storage without that study would
    have started it over and overwritten its results."""
    out = tmp_path / "out"
    spec = make_spec(tmp_path, seeds=[0])
    assert run_study(spec, out, options()).complete == 6
    elsewhere = str(tmp_path / "elsewhere" / "journal.log")
    refusal = r"holds study 'mechanics' of storage 'journal\.log', and"
    with pytest.raises(ValueError, match=refusal) as refused:
        run_study(spec, out, options(storage=elsewhere))
    assert sum(calls(call_log).values()) == 6 and run_study(spec, out, options()).complete == 6
    # the storage its hint names resumes it from any folder (the record's path is the folder's)
    hint = re.search(r"give --storage '([^']+)' to resume it", str(refused.value)).group(1)
    assert hint == str((out / "journal.log").resolve())
    assert run_study(spec, out, options(storage=hint)).complete == 6


def test_a_recorded_storage_that_cannot_be_opened_now_is_named_as_recorded(tmp_path):
    """A journal on a drive not mounted now: the refusal still says which storage holds the
    folder's study, not that it cannot be made."""
    out, gone = tmp_path / "out", tmp_path / "a_file" / "journal.log"
    out.mkdir()
    (tmp_path / "a_file").write_text("")
    (out / "meta.json").write_text(json.dumps({"study_name": "mechanics", "storage": str(gone)}))
    with pytest.raises(ValueError, match=f"give --storage {re.escape(repr(str(gone)))} to resume"):
        run_study(make_spec(tmp_path, seeds=[0]), out, options())


def test_a_moved_folder_names_the_journal_it_holds(tmp_path, call_log):
    """A journal given by its absolute path is recorded so; once the folder moves, that path is
    gone, and the refusal names the journal as the folder now holds it (as the report finds
    it), which resumes the study."""
    spec = make_spec(tmp_path, seeds=[0])
    out = tmp_path / "out"
    run_study(spec, out, options(storage=str(out / "study.log")))
    moved = out.rename(tmp_path / "moved")
    with pytest.raises(ValueError, match=r"give --storage '[^']+' to resume it") as refused:
        run_study(spec, moved, options())
    hint = re.search(r"give --storage '([^']+)' to resume it", str(refused.value)).group(1)
    assert hint == str((moved / "study.log").resolve())
    assert run_study(spec, moved, options(storage=hint)).complete == 6
    assert sum(calls(call_log).values()) == 6


def test_a_retry_queued_twice_runs_once(tmp_path, call_log):
    """Two runners starting on one storage can both requeue the retry of one failure (one
    between the other's FAIL and its enqueue): the second copy is failed as such, not run."""
    spec = make_spec(tmp_path, space={"filter_size": {"value": 3}}, seeds=[0])
    out = tmp_path / "out"
    storage = open_storage(locate_storage(None, out))
    study = open_study(storage, spec)
    plan_slots(study, storage, plan(spec))
    failed = claim_next(study, storage, owner_record("cpu"))
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    for _ in range(2):  # as each runner's requeue_lost_retries would
        study.enqueue_trial({}, user_attrs={"slot": 0, "attempt": 1, "retry_of": failed.number})
    assert run_study(spec, out, options(workers=1)).complete == 1
    assert sum(calls(call_log).values()) == 1
    trials = load(out).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "FAIL"]
    assert trials[2].user_attrs["fail_reason"] == DUPLICATE_RETRY


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_of_the_runner_alone_uses_up_no_retry(
    tmp_path, call_log, monkeypatch, request, stop
):
    """A Ctrl-C or a SIGTERM (`kill`, `timeout`, a scheduler) that reaches the runner but not
    its workers: the runner ends its workers at once, not after its grace period (meanwhile
    they had gone on claiming trials), and their trials are requeued as interrupted."""
    spec = make_spec(tmp_path, seeds=[0], max_retries=0)
    out = tmp_path / "out"
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv("ABLATE_TEST_HANG", str(marker))
    if stop == "SIGTERM":  # as `python -m ablate.study` has it
        previous = signal.getsignal(signal.SIGTERM)
        request.addfinalizer(lambda: signal.signal(signal.SIGTERM, previous))
        stop_on_sigterm()

    interrupted_at: list[float] = []

    def interrupt_the_runner() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        interrupted_at.append(time.monotonic())
        worker = int(marker.read_text())
        # Python drops a KeyboardInterrupt raised in a finalizer (one that runs in the
        # runner's main thread as the signal lands), as a second Ctrl-C then stops it: once
        # more if the hung worker is still there well after its runner should have ended it.
        for _ in range(3):
            if stop == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                _thread.interrupt_main()
            if _gone_within(worker, 20.0):
                return

    interrupter = threading.Thread(target=interrupt_the_runner)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, out, options(workers=1, stop_wait_s=60))
    stopped_after = time.monotonic()
    interrupter.join()
    assert stopped_after - interrupted_at[0] < 30  # within the grace period, not after it
    (stopped,) = [t for t in load(out).get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert stopped.user_attrs["fail_reason"] == INTERRUPTED
    assert run_study(spec, out, options(workers=1)).complete == 6  # max_retries is 0


def _gone_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` ends (and is reaped) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_retry_takes_the_seeds_its_stopped_attempt_finished(tmp_path, call_log, monkeypatch):
    """Stopped in its second seed, a trial is run again from there: the first seed's run is
    taken from the stopped attempt, not trained again."""
    spec = make_spec(tmp_path, seeds=[0, 1], space={"filter_size": {"value": 3}})
    out = tmp_path / "out"
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv("ABLATE_TEST_HANG", str(marker))
    monkeypatch.setenv("ABLATE_TEST_HANG_SEED", "1")
    interrupter = threading.Thread(target=_signal_when_hung, args=(marker, [], signal.SIGINT))
    interrupter.start()
    assert not run_study(spec, out, options(workers=1)).done  # Ctrl-C stopped its one worker
    interrupter.join()
    assert run_study(spec, out, options(workers=1)).complete == 1
    stopped, retry = load(out).get_trials()
    assert [r["seed"] for r in stopped.user_attrs["seeds"]] == [0]
    assert retry.user_attrs["reused"] == {"0": f"trial {stopped.number} (an earlier attempt)"}
    assert retry.user_attrs["seeds"][0] == stopped.user_attrs["seeds"][0]
    assert sorted(seed for *_, seed in calls(call_log).elements()) == [0, 1, 1]


def test_a_damaged_journal_record_is_named_by_file_and_line(tmp_path):
    """A record damaged inside the journal (not a torn last one, which is cut off) cannot be
    skipped: the error names the file and the line and what to do, not only json's
    'Expecting property name' of no file."""
    location = locate_storage(None, tmp_path)
    study = optuna.create_study(study_name="s", storage=open_storage(location))
    for _ in range(3):
        study.tell(study.ask(), 1.0)
    journal = Path(location.url)
    lines = journal.read_text().splitlines(keepends=True)
    lines[4] = '{"op_code": 5, damaged\n'
    journal.write_text("".join(lines))
    with pytest.raises(ValueError, match=(
        rf"the journal {re.escape(str(journal))} cannot be read: its record on line 5 is "
        r"damaged \(Expecting property name.*head -n 4 journal.log > kept.log"
    )):  # fmt: skip
        optuna.load_study(study_name="s", storage=open_storage(location)).get_trials()


def test_results_name_the_design_point_of_each_waiting_trial(tmp_path):
    """A study stopped before its end: each waiting trial's row names the point it will run
    (its parameters are the enqueued ones until a worker claims it), not blanks."""
    spec = make_spec(tmp_path, seeds=[0])
    study = optuna.create_study(storage=None)
    slots = plan(spec)
    for index, slot in enumerate(slots):
        study.enqueue_trial(dict(slot), user_attrs={"slot": index, "attempt": 0})
    rows = result_rows(study, spec)
    assert [(r["state"], r["filter_size"], r["padding"]) for r in rows] == [
        ("WAITING", slot["filter_size"], slot["padding"]) for slot in slots
    ]


def test_atomic_write_replaces_whole_files_readable_by_others(tmp_path):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left behind


def test_a_failed_point_whose_retry_was_never_enqueued_is_retried_on_resume(tmp_path, call_log):
    """The state a crash between FAIL and enqueue leaves (also reached by raising max_retries)."""
    space = {"lr": {"choices": [0.05, NAN_LR]}, "filter_size": {"value": 2}}
    out = tmp_path / "out"
    first = run_study(make_spec(tmp_path, space=space, seeds=[0], max_retries=0), out, options())
    assert (first.complete, first.failed) == (1, 1)
    assert len(load(out).get_trials()) == 2  # no retry left, none enqueued

    second = run_study(make_spec(tmp_path, space=space, seeds=[0], max_retries=1), out, options())
    assert second.done and (second.complete, second.failed) == (1, 1)
    failed = [t for t in load(out).get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert sorted(t.user_attrs["attempt"] for t in failed) == [0, 1]
    assert calls(call_log)[(2, "reflect", NAN_LR, 0)] == 2
    third = run_study(make_spec(tmp_path, space=space, seeds=[0], max_retries=1), out, options())
    assert len(load(out).get_trials()) == 3 and third.done  # retries spent: nothing more runs


def test_a_point_that_cannot_be_built_is_retried_on_resume_only(tmp_path, call_log):
    """It would fail the same way at once; after a resume the user may have fixed it."""
    space = {"lr": {"choices": [0.05, UNBUILDABLE_LR]}, "filter_size": {"value": 2}}
    spec = make_spec(tmp_path, space=space, seeds=[0], max_retries=2)
    out = tmp_path / "out"
    first = run_study(spec, out, options())
    assert first.done and (first.complete, first.failed, first.retry_on_resume) == (1, 1, 1)
    (failed,) = [t for t in load(out).get_trials() if t.state == optuna.trial.TrialState.FAIL]
    assert failed.user_attrs["fail_reason"] == (
        "cannot be built: model 'mynets:build' returns tuple in training mode"
    )
    assert (
        len(load(out).get_trials()) == 2 and calls(call_log)[(2, "reflect", UNBUILDABLE_LR, 0)] == 1
    )
    assert run_study(spec, out, options()).retry_on_resume == 1
    attempts = [t.user_attrs["attempt"] for t in load(out).get_trials() if t.params["lr"] != 0.05]
    assert attempts == [0, 1] and calls(call_log)[(2, "reflect", UNBUILDABLE_LR, 0)] == 2
    assert run_study(spec, out, options()).retry_on_resume == 0  # max_retries=2 used up


def test_a_drawn_point_no_config_accepts_fails_once_and_the_study_goes_on(tmp_path, monkeypatch):
    """A space too large for the spec's check of every combination can still draw an invalid
    one (here two values each valid with the other's first): it is recorded with its reason
    and, failing the same way every time, not retried now."""
    monkeypatch.setattr("ablate.spec.MAX_CHECKED_POINTS", 1)
    space = {
        "placement": {"choices": ["none", "blur_before_max"]},
        "subsample": {"choices": ["fixed", "aps"]},
    }
    sampler = {"name": "random", "trials": 8, "seed": 0}
    spec = make_spec(tmp_path, space=space, sampler=sampler, seeds=[0])
    status = run_study(spec, tmp_path / "out", options(workers=1))
    failed = [t for t in load(tmp_path / "out").get_trials() if t.state.name == "FAIL"]
    assert status.done and status.complete + status.failed == 8
    assert failed and len(failed) == status.failed  # no retry was run at once
    for trial in failed:
        assert trial.params == {"placement": "blur_before_max", "subsample": "aps"}
        assert trial.user_attrs["fail_reason"].startswith("invalid design point: ")


def test_a_grown_seeded_study_draws_new_points(tmp_path):
    """Each run of the runner seeds its samplers anew: from the spec's seed alone, a resumed
    or grown study would draw again the points its first run began with."""
    space = {"lr": {"float": [0.01, 0.3], "log": True}}
    first = make_spec(tmp_path, space=space, sampler={"name": "random", "trials": 3, "seed": 0})
    run_study(first, tmp_path / "out", options(workers=1))
    grown = first.model_copy(update={"sampler": first.sampler.model_copy(update={"trials": 6})})
    run_study(grown, tmp_path / "out", options(workers=1))
    drawn = [t.params["lr"] for t in load(tmp_path / "out").get_trials()]
    assert len(drawn) == 6 and len(set(drawn)) == 6, drawn


def test_progress_in_a_log_file_is_a_line_every_half_minute_not_every_poll(tmp_path, capsys):
    """Redirected to a file (no terminal), the progress bar redraws at most every 30 s: a long
    study's log gets a line per half minute, whatever the poll interval."""
    spec = make_spec(tmp_path)
    status = run_study(spec, tmp_path / "out", options(progress=True, poll_s=0.01))
    assert status.done
    redraws = capsys.readouterr().err.count("\r")
    assert redraws <= 4, f"{redraws} redraws"


def test_cli_options_are_checked_and_named(tmp_path, capsys):
    """--trials sets a sampler's trial count (refused for a grid); a budget of 0 is refused
    by the option's name, not as the spec's."""
    sampled = make_spec(tmp_path, sampler={"name": "random", "trials": 8})
    path = tmp_path / "sampled.yaml"
    path.write_text(sampled.as_yaml())
    cli = ["--space", str(path), "--dry-run", "--no-probe"]
    assert main([*cli, "--trials", "3"]) == 0
    assert "3 trials x 2 seeds" in capsys.readouterr().out
    grid = tmp_path / "grid.yaml"
    grid.write_text(make_spec(tmp_path).as_yaml())
    assert main(["--space", str(grid), "--dry-run", "--no-probe", "--trials", "3"]) == 2
    assert "--trials 3: the spec's sampler is grid, which runs every point once" in (
        capsys.readouterr().err
    )
    assert main([*cli, "--trials", "0"]) == 2
    assert "--trials 0: give a trial count >= 1" in capsys.readouterr().err
    for option, value in (("--steps", "0"), ("--epochs", "0"), ("--epochs", "inf")):
        with pytest.raises(SystemExit) as stopped:
            main([*cli, option, value])
        assert stopped.value.code == 2
        assert f"argument {option}: {value} is not a finite number above 0" in (
            capsys.readouterr().err
        )


def test_an_output_or_storage_path_that_cannot_be_made_is_named(tmp_path, capsys):
    """A file where a folder must be: an error naming the option, not a traceback."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(make_spec(tmp_path).as_yaml())
    cli = ["--space", str(spec_file), "--dry-run", "--no-probe"]
    for option, value, fragment in (
        ("--out", spec_file / "sub", f"--out={str(spec_file / 'sub')!r} cannot be made: "),
        ("--storage", spec_file / "j.log", f"storage={str(spec_file / 'j.log')!r} cannot be"),
        ("--storage", tmp_path, "is a folder: give a journal file's path in it"),
    ):
        assert main([*cli, option, str(value)]) == 2
        assert fragment in capsys.readouterr().err


def test_a_study_whose_every_trial_failed_reports_why(tmp_path, call_log):
    """No configuration finished: the report is still written, with the reasons, and says
    that the fixed settings are in spec.yaml (it had written none, or 'fixed: nothing')."""
    space = {"lr": {"choices": [DIVERGING_LR]}, "filter_size": {"choices": [2, 3]}}
    spec = make_spec(tmp_path, space=space, seeds=[0], max_retries=0)
    out = tmp_path / "out"
    status = run_study(spec, out, options(report=True))
    assert status.done and (status.complete, status.failed) == (0, 2)
    summary = (out / "summary.md").read_text()
    assert "loss is nan at step 3 of 10" in summary
    assert "fixed and default settings: no configuration finished; see `spec.yaml`" in summary
    assert "fixed: nothing" not in summary


def test_a_report_cut_short_says_how_to_write_it(tmp_path, monkeypatch, capsys):
    """Ctrl-C or SIGTERM while the report is written: the stop goes on, with the command that
    writes the report (it had stopped without a word, leaving half the files)."""
    from ablate import study as study_module

    def stopped(out_dir, storage):
        raise KeyboardInterrupt

    monkeypatch.setattr("ablate.report.write_report", stopped)
    with pytest.raises(KeyboardInterrupt):
        study_module._write_report(tmp_path, None)
    assert f"report interrupted; the study is done: write it with python -m ablate.report " \
        f"{tmp_path}" in capsys.readouterr().err


def test_storage_paths_are_taken_as_the_user_means_them(tmp_path, monkeypatch):
    """A relative SQLite URL is made absolute (a resume from another folder had started a new
    study in a new database there), `~` is the home folder (it had made a folder named `~`),
    a file that is not a journal is refused (notes had been moved aside as a torn record),
    and a file system that takes no files is named, not a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    assert locate_storage("sqlite:///studies.db", out).url == f"sqlite:///{tmp_path}/studies.db"
    assert locate_storage("sqlite:///~/s.db", out).url == f"sqlite:///{tmp_path}/home/s.db"
    assert locate_storage("~/j.log", out).url == str(tmp_path / "home" / "j.log")
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "torn.log").write_text('{"op_code": 0, "worker')  # a first record cut short
    assert locate_storage(str(tmp_path / "torn.log"), out).url == str(tmp_path / "torn.log")
    refused = [("notes.txt", "is not an Optuna journal (its first line is no journal record)")]
    if Path("/proc/self").is_dir():  # Linux: even root cannot make a file there
        refused.append(("/proc/study.log", "cannot be made: '/proc' takes no new files"))
    for url, message in refused:
        with pytest.raises(ValueError, match=re.escape(message)):
            locate_storage(url, out)
    assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_writability_is_asked_of_the_folder_written_in(tmp_path, monkeypatch):
    """An output folder that exists is checked itself, not its parent (`--out ~/runs` under
    a home whose parent takes no files had been refused), and a storage file that exists is
    let be (a report reads a study kept where nothing new can be written)."""
    from ablate.storage import check_can_be_made

    out, journal = tmp_path / "mine", tmp_path / "journal.log"
    out.mkdir()
    journal.write_text("")
    real = tempfile.TemporaryDirectory

    def parent_takes_no_files(*args, dir=None, **kwargs):
        if Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryDirectory", parent_takes_no_files)
    check_can_be_made(out, "--out", folder=True)
    check_can_be_made(journal, "storage")
    for path, folder in ((tmp_path / "new", True), (tmp_path / "new.log", False)):
        with pytest.raises(ValueError, match=f"'{tmp_path}' takes no new files .Permission"):
            check_can_be_made(path, "--out", folder=folder)


def grown_study(tmp_path: Path) -> tuple[StudySpec, RunOptions, list[str]]:
    """A second seed for study 'mechanics' (in tmp_path/out), as a study of its own on that
    storage: its spec, run options and the CLI arguments that run it in tmp_path/grown."""
    grown = make_spec(tmp_path, name="grown", seeds=[0, 1])
    shared = options(storage=str(tmp_path / "out" / "journal.log"))
    path = tmp_path / "grown.yaml"
    path.write_text(grown.as_yaml())
    cli = ["--space", str(path), "--out", str(tmp_path / "grown"), "--storage", shared.storage]
    return grown, shared, cli


def test_a_reused_study_deleted_later_leaves_the_runs_to_be_trained(tmp_path, capsys, monkeypatch):
    """The grown study remembers --reuse; once the old study is deleted a resume says so and
    trains what is left (its workers had died on the missing study at every resume). A plan
    lock is no study to reuse."""
    out = tmp_path / "out"
    run_study(make_spec(tmp_path, seeds=[0]), out, options())
    grown, shared, cli = grown_study(tmp_path)
    assert main([*cli, "--reuse", "mechanics:plan-6", "--dry-run", "--no-probe"]) == 2
    assert "--reuse 'mechanics:plan-6': name another study" in capsys.readouterr().err
    marker = tmp_path / "hung.pid"  # the grown study is stopped in its first new run
    monkeypatch.setenv("ABLATE_TEST_HANG", str(marker))
    monkeypatch.setenv("ABLATE_TEST_HANG_SEED", "1")
    interrupter = threading.Thread(target=_signal_when_hung, args=(marker, [], signal.SIGINT))
    interrupter.start()
    reusing = dataclasses.replace(shared, reuse="mechanics", workers=1)
    assert not run_study(grown, tmp_path / "grown", reusing).done
    interrupter.join()
    assert main([*cli, "--reuse", "grown2", "--dry-run", "--no-probe"]) == 2
    assert "takes its runs from 'mechanics'" in capsys.readouterr().err
    optuna.delete_study(study_name="mechanics", storage=load(out, "grown")._storage)
    assert run_study(grown, tmp_path / "grown", reusing).complete == 6  # the same command
    assert "study 'mechanics', whose finished runs" in capsys.readouterr().err


def test_a_dry_run_naming_a_remembered_study_deleted_since_says_so(tmp_path, capsys):
    """A study remembers the one it reuses; once that one is deleted the run trains what is
    left, and a dry run with the same --reuse says so (it passed the check, then read the
    missing study)."""
    run_study(make_spec(tmp_path, seeds=[0]), tmp_path / "out", options())
    grown, shared, cli = grown_study(tmp_path)
    run_study(grown, tmp_path / "grown", dataclasses.replace(shared, reuse="mechanics"))
    optuna.delete_study(study_name="mechanics", storage=load(tmp_path / "out", "grown")._storage)
    capsys.readouterr()
    for reuse in (["--reuse", "mechanics"], []):  # asked again, or remembered
        assert main([*cli, *reuse, "--dry-run", "--no-probe"]) == 0
        out = capsys.readouterr().out
        gone = "study 'mechanics', whose finished runs this study takes, is gone from the storage"
        assert gone in out


def test_a_database_password_stays_out_of_the_files_and_messages(tmp_path) -> None:
    """meta.json is for sharing: it records the URL without its password (PostgreSQL reads
    it from PGPASSWORD or ~/.pgpass; the report takes --storage)."""
    location = locate_storage("postgresql+psycopg2://ada:s3cret@db.example:5432/runs", tmp_path)
    assert location.url.endswith("ada:s3cret@db.example:5432/runs")
    assert location.recorded == "postgresql+psycopg2://ada@db.example:5432/runs"
    write_study_files(tmp_path, make_spec(tmp_path), location)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["storage"] == location.recorded and "s3cret" not in json.dumps(meta)


def test_runs_that_differ_only_in_a_field_they_do_not_read_are_one_run() -> None:
    """`steps` overrides `epochs`, AdamW has no momentum, the synthetic data reads no folder:
    a grown study takes such a run, and the report counts it once."""
    base = VariantConfig(steps=5).model_dump(mode="json")
    assert run_key({**base, "epochs": 2.0}) == run_key(base)
    assert run_key({**base, "steps": None, "epochs": 2.0}) != run_key({**base, "steps": None})
    adamw = {**base, "optimizer": "adamw"}
    assert run_key({**adamw, "momentum": 0.0}) == run_key(adamw)
    assert run_key({**base, "momentum": 0.0}) != run_key(base)
    assert run_key({**base, "data_dir": "elsewhere"}) == run_key(base)
    cifar = {**base, "dataset": "cifar10", "data_dir": "a"}
    assert run_key({**cifar, "data_dir": "b"}) != run_key(cifar)


def test_a_grown_study_takes_only_runs_made_as_it_would_make_them() -> None:
    """Another device, other code or another torch may measure otherwise: such runs are run
    again; a commit that changes no source (docs, specs) does not matter."""
    config = VariantConfig(steps=5)
    here = made_by(torch.device("cpu"))
    old = optuna.create_study(directions=["maximize"])
    for index, changes in enumerate(({}, {"code": "0" * 12}, {"torch": "1.0"}, {"commit": "x"})):
        seeded = config.model_copy(update={"seed": index})
        trial = optuna.trial.create_trial(
            values=[1.0],
            user_attrs={
                "config": seeded.model_dump(mode="json", exclude={"seed"}),
                "seeds": [{"seed": index, "accuracy": 1.0, **here, **changes}],
            },
        )
        old.add_trial(trial)
    taken = finished_runs(old, here)
    seeds = sorted(json.loads(key)["seed"] for key in taken)
    assert seeds == [0, 3] and len(finished_runs(old)) == 4


def test_a_grown_study_takes_the_runs_it_shares_from_the_study_it_reuses(
    tmp_path, call_log, capsys, monkeypatch
):
    """A second seed for every point, as a new study in the same storage: only the new seed
    runs; the first seed's runs are taken, and each trial says from where."""
    # the dry run below counts runs made at the workers' thread count, which the conftest's
    # set_num_threads(1) does not give the workers (they start afresh)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    first = run_study(make_spec(tmp_path, seeds=[0]), out, options())
    assert first.complete == 6 and sum(calls(call_log).values()) == 6
    grown, shared, cli = grown_study(tmp_path)
    with pytest.raises(ValueError, match="holds the files of study 'mechanics'"):
        run_study(grown, out, options(reuse="mechanics"))  # its folder is the old study's
    assert main([*cli, "--reuse", "mechanics", "--dry-run", "--no-probe"]) == 0
    assert "--reuse 'mechanics': 6 of the 12 runs are taken from it" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--reuse 'missing': name another study"):
        run_study(grown, tmp_path / "grown", dataclasses.replace(shared, reuse="missing"))
    status = run_study(grown, tmp_path / "grown", dataclasses.replace(shared, reuse="mechanics"))
    assert status.done and status.complete == 6
    assert "runs taken from study 'mechanics': 6" in capsys.readouterr().err
    ran = calls(call_log)
    assert sum(ran.values()) == 12 and set(ran.values()) == {1}  # seed 1 once per point
    assert load(out, "grown").user_attrs["reuse"] == "mechanics"  # a resume takes them too
    earlier = {t.number: t for t in load(out).get_trials()}
    for trial in load(out, "grown").get_trials():
        ((seed, where),) = trial.user_attrs["reused"].items()
        source = earlier[int(where.removeprefix("study 'mechanics', trial "))]
        assert seed == "0" and trial.user_attrs["seeds"][0] == source.user_attrs["seeds"][0]
        # the same network: the same point, or (filter size 1 reads no padding) its twin
        assert source.params["filter_size"] == trial.params["filter_size"]
        assert source.params == trial.params or trial.params["filter_size"] == 1


def test_a_grown_study_takes_no_run_made_at_another_cpu_thread_count(
    tmp_path, call_log, monkeypatch
):
    """On a CPU torch splits a reduction (a convolution's weight gradient) by thread, so runs at
    another thread count (`--workers 2` splits the cores) differ in the last digits: a run
    names its count with the device, and a grown study at another count trains its runs again
    (it took them: 1-thread numbers in a study of 2-thread ones)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers' torch reads it when it starts
    out = tmp_path / "out"
    run_study(make_spec(tmp_path, seeds=[0]), out, options())
    isa = torch.backends.cpu.get_cpu_capability()
    assert devices(load(out)) == {f"cpu {isa} (1 thread)"}
    grown, shared, _ = grown_study(tmp_path)
    assert "6 of the 12 runs are taken" in reuse_line(grown, plan(grown), load(out), "cpu", 1)
    line = reuse_line(grown, plan(grown), load(out), "cpu", 2)
    assert "0 of the 12 runs are taken from it; 6 more it finished on another device" in line
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    status = run_study(grown, tmp_path / "grown", dataclasses.replace(shared, reuse="mechanics"))
    assert status.done and sum(calls(call_log).values()) == 6 + 12  # none taken
    assert devices(load(out, "grown")) == {f"cpu {isa} (2 threads)"}
    assert not any(t.user_attrs.get("reused") for t in load(out, "grown").get_trials())


def devices(study: optuna.Study) -> set[str]:
    """The device names `study`'s finished runs recorded."""
    return {run["device"] for t in study.get_trials() for run in t.user_attrs.get("seeds", [])}


def test_several_workers_split_the_cores_unless_omp_num_threads_is_set(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert (worker_threads(1), worker_threads(2), worker_threads(3), worker_threads(16)) == (
        None, 4, 2, 1
    )  # fmt: skip
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert (worker_threads(1), worker_threads(2)) == (3, 3)  # the workers inherit it


def test_a_lock_whose_planner_never_recorded_itself_is_taken_over(tmp_path, monkeypatch, capsys):
    """A planner stopped between creating its lock and recording itself in it left an owner-less
    lock, which waiters took for one of another host's: every later run waited stale_after_s,
    silently."""
    spec = make_spec(tmp_path, seeds=[0])
    storage, study, slots = opened_study(tmp_path, spec)
    name = f"{spec.name}:plan-lock"
    optuna.create_study(study_name=name, storage=storage)
    monkeypatch.setattr(trial_queue, "UNRECORDED_AFTER_S", 1.0)
    monkeypatch.setattr(trial_queue, "SAY_WAITING_AFTER_S", 0.2)
    safety = threading.Timer(20, optuna.delete_study, kwargs={"study_name": name,
                                                             "storage": storage})  # fmt: skip
    safety.start()
    began = time.monotonic()
    plan_slots(study, storage, slots, stale_after_s=600)
    elapsed = time.monotonic() - began
    safety.cancel()
    assert elapsed < 15 and len(study.get_trials()) == len(slots)
    assert f"waiting for a runner that has not recorded itself yet to enqueue the study's " \
           f"{len(slots)} trials (lock {name!r})" in capsys.readouterr().err


def test_sqlite_is_refused_for_several_workers_before_anything_runs(tmp_path: Path) -> None:
    """SQLite takes one writer: two workers would fail on its locks, so the run is refused at
    once, naming the storage and the worker count, and leaves no files behind."""
    database = tmp_path / "s.db"
    url = f"sqlite:///{database}"
    refusal = (f"storage={url!r}: SQLite is for one worker (got 2 workers); use the default "
               "journal file or postgresql:// for several")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(refusal)):
        run_study(make_spec(tmp_path, seeds=[0]), tmp_path / "out", options(workers=2, storage=url))
    assert not database.exists() and not (tmp_path / "out").exists()


def test_cli_worker_counts_below_one_are_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--workers 0 or --per-gpu 0 would start no worker: bad input, exit 2, naming the count."""
    path = tmp_path / "spec.yaml"
    path.write_text(make_spec(tmp_path).as_yaml())
    cli = ["--space", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--no-probe"]
    for flag, count in (("--workers", "workers"), ("--per-gpu", "workers per GPU")):
        assert main([*cli, flag, "0"]) == 2
        assert f"error: {flag} 0: give a number of {count} >= 1" in capsys.readouterr().err


def test_workers_are_spread_over_the_visible_gpus_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA_VISIBLE_DEVICES as a shell writes it (spaces, a trailing comma) names the GPUs;
    workers take them in turn; `-1` (no GPU) and --device cpu leave one unpinned worker."""
    from ablate.study import visible_gpus, worker_pins

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", " 1, 3 ,")
    assert visible_gpus() == ["1", "3"]
    assert worker_pins(RunOptions(per_gpu=2)) == ["1", "3", "1", "3"]
    assert worker_pins(RunOptions(workers=3)) == ["1", "3", "1"]
    assert worker_pins(RunOptions(device="cpu", per_gpu=2)) == [None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == [] and worker_pins(RunOptions()) == [None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,-1,0")  # CUDA hides what follows the -1
    assert visible_gpus() == ["2"] and worker_pins(RunOptions(per_gpu=2)) == ["2", "2"]


def test_a_resume_keeps_the_time_the_study_was_created(tmp_path: Path) -> None:
    """meta.json is rewritten on every run; its `created` stays that of the first run."""
    out = tmp_path / "out"
    out.mkdir()
    first = "2024-01-02T03:04:05+00:00"
    (out / "meta.json").write_text(json.dumps({"study_name": "mechanics", "created": first}))
    write_study_files(out, make_spec(tmp_path), locate_storage(None, out))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["created"] == first and meta["storage"] == "journal.log"


@pytest.mark.parametrize("reuse", ["mechanics", "mechanics:plan-6"])
def test_reuse_refuses_the_study_itself_and_a_plan_lock(tmp_path: Path, reuse: str) -> None:
    """A study takes runs from another study of its storage: neither its own name nor a plan
    lock (a study that holds no trials) is one, though both are stored there."""
    from ablate.study import check_destination

    spec = make_spec(tmp_path, seeds=[0])
    out = tmp_path / "out"
    storage = open_storage(locate_storage(None, out))
    open_study(storage, spec)
    optuna.create_study(study_name="mechanics:plan-6", storage=storage)
    refusal = (f"--reuse {reuse!r}: name another study of this storage (journal.log) to take "
               "finished runs from")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(refusal)):
        check_destination(spec, out, options(reuse=reuse))


def _status(**counts: int) -> QueueStatus:
    """A finished study's queue: six points, all complete, unless `counts` say otherwise."""
    base = {"planned": 6, "complete": 6, "failed": 0, "running": 0, "waiting": 0,
            "finished_trials": 6, "retry_on_resume": 0, "seeds_in_progress": 0}  # fmt: skip
    return QueueStatus(**{**base, **counts})


def test_the_exit_code_says_whether_the_study_is_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0 only when every point finished and one completed: trials left, or no point
    complete, exit 1, with what to do."""
    from ablate.study import _report_outcome

    spec = make_spec(tmp_path, seeds=[0])
    assert _report_outcome(spec, _status(), tmp_path) == 0
    assert _report_outcome(spec, _status(complete=3, waiting=2, running=1), tmp_path) == 1
    assert "3 trials left: run the same command to resume" in capsys.readouterr().out
    all_failed = _status(complete=0, failed=6, failure_reasons=(("diverged: loss is nan", 6),))
    assert _report_outcome(spec, all_failed, tmp_path) == 1
    printed = capsys.readouterr().out
    assert "mechanics: 0 of 6 trials complete, 6 failed" in printed
    assert "  failed (6 design point(s)): diverged: loss is nan" in printed


def test_a_front_is_said_missing_only_when_no_complete_trial_learned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Some complete trials at chance: counted; all of them: the study has no front."""
    from ablate.study import _report_outcome

    spec = make_spec(tmp_path, seeds=[0])
    assert _report_outcome(spec, _status(complete_at_chance=2), tmp_path) == 0
    printed = capsys.readouterr().out
    assert "2 of the 6 complete trials have runs that did not learn" in printed
    assert "no front" not in printed
    _report_outcome(spec, _status(complete_at_chance=6), tmp_path)
    assert "the study has no front: train longer" in capsys.readouterr().out


def test_the_most_common_failure_reasons_are_printed_and_the_rest_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The three most common reasons are printed, each with its count; beyond them, how many
    other reasons results.csv holds."""
    from ablate.study import FAILURES_SHOWN, _report_outcome

    spec = make_spec(tmp_path, seeds=[0])
    reasons = tuple((f"reason {k}", 4 - k) for k in range(4))
    four = _status(planned=4, complete=0, failed=4, failure_reasons=reasons)
    _report_outcome(spec, four, tmp_path)
    printed = capsys.readouterr().out.splitlines()
    shown = [line for line in printed if line.startswith("  failed (")]
    assert FAILURES_SHOWN == 3 and shown == [
        "  failed (4 design point(s)): reason 0",
        "  failed (3 design point(s)): reason 1",
        "  failed (2 design point(s)): reason 2",
    ]
    assert "  ... and 1 other reason: see fail_reason in results.csv" in printed
    five = _status(planned=5, complete=0, failed=5, failure_reasons=(*reasons, ("reason 4", 1)))
    _report_outcome(spec, five, tmp_path)
    assert "  ... and 2 other reasons: see fail_reason in results.csv" in capsys.readouterr().out
    three = _status(planned=3, complete=0, failed=3, failure_reasons=reasons[:3])
    _report_outcome(spec, three, tmp_path)
    assert "other reason" not in capsys.readouterr().out


def test_a_retry_of_a_drawn_point_runs_that_point_again(tmp_path: Path) -> None:
    """A sampler's slot holds no parameters: the retry of a failed trial is enqueued with the
    values that trial drew, not left to the sampler to draw another point."""
    from ablate.trial_queue import fail_and_retry
    from ablate.workers import suggest

    space = {"lr": {"float": [0.01, 0.2], "log": True}}
    sampler = {"name": "random", "trials": 2, "seed": 0}
    spec = make_spec(tmp_path, space=space, sampler=sampler, seeds=[0])
    storage, study, slots = opened_study(tmp_path, spec)
    plan_slots(study, storage, slots)
    owner = owner_record("cpu")
    failed = claim_next(study, storage, owner)
    drawn = suggest(failed, "lr", spec.space["lr"])
    frozen = study.get_trials()[failed.number]
    assert fail_and_retry(study, storage, frozen, "diverged: x", slots, spec.max_retries)
    claim_next(study, storage, owner)  # the other slot, waiting before the retry
    retry = claim_next(study, storage, owner)
    assert retry.user_attrs["retry_of"] == failed.number and retry.user_attrs["attempt"] == 1
    assert suggest(retry, "lr", spec.space["lr"]) == drawn


def _failed_trial(slot: int, attempt: int, reason: str | None, **attrs: Any) -> Any:
    user_attrs = {"slot": slot, "attempt": attempt, **attrs}
    if reason is not None:
        user_attrs["fail_reason"] = reason
    return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs=user_attrs)


def test_failure_reasons_are_counted_per_point_most_common_first() -> None:
    """One count per failed point, by its last attempt's reason, most common first; a trial
    failed with no reason recorded says so."""
    study = optuna.create_study()
    for slot, reason in enumerate(["out of memory: CUDA", "diverged: nan", "diverged: nan", None]):
        study.add_trial(_failed_trial(slot, 0, "an earlier attempt's"))
        study.add_trial(_failed_trial(slot, 1, reason))
    status = queue_status(study, max_retries=1)
    assert status.failed == 4 and status.retry_on_resume == 0
    assert status.failure_reasons == (
        ("diverged: nan", 2), ("out of memory: CUDA", 1), ("no reason recorded", 1)
    )  # fmt: skip


def test_a_failed_points_reason_is_its_last_real_attempts_not_a_duplicates() -> None:
    """A second copy of a retry, failed unrun while the first ran, is numbered after the
    real attempt: the point's reason is the real attempt's failure."""
    study = optuna.create_study()
    study.add_trial(_failed_trial(0, 0, "diverged: first"))
    study.add_trial(_failed_trial(0, 1, "diverged: second", retry_of=0))
    study.add_trial(_failed_trial(0, 1, DUPLICATE_RETRY, retry_of=0))
    assert queue_status(study, max_retries=1).failure_reasons == (("diverged: second", 1),)


def test_a_silent_worker_elsewhere_is_named_with_its_age_and_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another host's worker is judged by its heartbeat, else (it died before its first beat)
    by when its trial started; the reason gives the silence and the limit, in seconds."""
    from datetime import datetime
    from types import SimpleNamespace

    now = 1_700_000_000.0
    monkeypatch.setattr(trial_queue, "time", SimpleNamespace(time=lambda: now))
    owner = {**owner_record("cpu"), "host": "another-host.invalid", "pid": 123}
    trial = optuna.trial.FrozenTrial(
        number=0, state=optuna.trial.TrialState.RUNNING, value=None,
        datetime_start=datetime.fromtimestamp(now - 1000), datetime_complete=None, params={},
        distributions={}, user_attrs={"worker": owner}, system_attrs={},
        intermediate_values={}, trial_id=0,
    )  # fmt: skip
    assert death_reason(trial, stale_after_s=300) == (
        "no heartbeat from worker process 123 on another-host.invalid for 1000 s (limit 300 s)"
    )
    assert death_reason(trial, stale_after_s=2000) is None
    trial.user_attrs["heartbeat"] = now - 10
    assert death_reason(trial, stale_after_s=300) is None


def test_a_smaller_plan_that_waited_for_a_larger_one_keeps_its_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner with fewer --trials that takes the lock after a larger plan finished enqueues
    nothing and leaves the planned count as it is (shrinking a plan cancels nothing)."""
    spec = make_spec(tmp_path, seeds=[0])
    storage, study, slots = opened_study(tmp_path, spec)
    create = optuna.create_study
    done = []

    def larger_plan_finished_first(*args: Any, **kwargs: Any) -> optuna.Study:
        if not done:  # between this planner's check of the count and its lock
            done.append(True)
            for index, params in enumerate(slots):
                study.enqueue_trial(dict(params), user_attrs={"slot": index, "attempt": 0})
            study.set_user_attr("planned_slots", len(slots))
        return create(*args, **kwargs)

    monkeypatch.setattr(optuna, "create_study", larger_plan_finished_first)
    plan_slots(study, storage, slots[:3])
    assert done and study.user_attrs["planned_slots"] == len(slots) == len(study.get_trials())


def test_a_failure_reason_is_one_named_line_of_bounded_length() -> None:
    """An exception becomes `fail_reason`: its kind by name (out of memory, diverged) or class,
    its message on one line, cut at 500 characters."""
    from ablate.train import TrainingDiverged
    from ablate.workers import describe_failure

    oom = torch.cuda.OutOfMemoryError("CUDA out of memory.\nTried to allocate 2.00 GiB")
    assert describe_failure(oom) == "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert describe_failure(TrainingDiverged("loss is inf")) == "diverged: loss is inf"
    long = describe_failure(RuntimeError("x\n" * 600))
    assert long.startswith("RuntimeError: x x") and len(long) == 500 and "\n" not in long


def test_an_out_of_memory_trial_frees_its_memory_before_the_cache_is_emptied(
    tmp_path, monkeypatch
) -> None:
    """CUDA's cache is emptied after an out-of-memory failure once the failed run's tensors
    are gone: while the exception is handled its traceback holds the run's frames, and what
    they hold stays reserved from the other workers on the GPU, however empty the cache."""
    import weakref

    from ablate.workers import run_trial

    spec = make_spec(tmp_path, space={"filter_size": {"value": 3}}, seeds=[0], max_retries=0)
    storage, study, slots = opened_study(tmp_path, spec)
    plan_slots(study, storage, slots)
    trial = claim_next(study, storage, owner_record("cpu"))

    class Activations:
        """What a run holds on the device when an allocation fails."""

    held: list[weakref.ref] = []

    def out_of_memory(config: VariantConfig) -> dict[str, Any]:
        activations = Activations()
        held.append(weakref.ref(activations))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    still_held: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: still_held.append(held[0]() is not None))
    job = WorkerJob(spec=spec, storage=None, index=0, device="cpu")
    run_trial(study, storage, trial, job, out_of_memory, slots)
    assert still_held == [False]
    failed = study.get_trials()[trial.number]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == (
        "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    )


def test_a_metric_that_is_a_flag_is_not_an_objective_value(tmp_path: Path) -> None:
    """True is an int to Python; as a trial's accuracy it would pass as 1.0."""
    from ablate.workers import BadMetrics, _check_metrics

    spec = make_spec(tmp_path)
    metrics = {"accuracy": True, "consistency_circular": 90.0}
    with pytest.raises(BadMetrics, match="seed 1: metric 'accuracy' is missing or not a number: "
                                         "True"):  # fmt: skip
        _check_metrics(spec, metrics, seed=1)


@pytest.mark.parametrize("first_line", ["42\n", "[1, 2]\n", "null\n", "my notes\n"])
def test_a_file_whose_first_line_is_no_journal_record_is_refused(
    tmp_path: Path, first_line: str
) -> None:
    """Notes or JSON that is no journal record: read as a journal it would be damaged, or cut
    as torn; refused, naming the file."""
    path = tmp_path / "study.log"
    path.write_text(first_line)
    refusal = f"storage={str(path)!r} is not an Optuna journal (its first line is no journal"
    with pytest.raises(ValueError, match=re.escape(refusal)):
        locate_storage(str(path), tmp_path)


def test_an_empty_journal_is_a_study_not_begun(tmp_path: Path, call_log: Path) -> None:
    """Optuna makes the journal file when it opens it: a run stopped before its first record
    left an empty one, which a resume takes."""
    out, journal = tmp_path / "out", tmp_path / "study.log"
    journal.write_text("")
    assert locate_storage(str(journal), out).url == str(journal)
    spec = make_spec(tmp_path, space={"filter_size": {"value": 3}}, seeds=[0])
    assert run_study(spec, out, options(workers=1, storage=str(journal))).complete == 1


def test_an_unsupported_storage_scheme_is_named_with_the_forms_accepted(tmp_path: Path) -> None:
    """The refusal names the value, the scheme and every form a storage may take."""
    with pytest.raises(ValueError) as refused:
        locate_storage("ftp://host/study", tmp_path)
    assert str(refused.value) == (
        "storage='ftp://host/study': unsupported scheme 'ftp'; use a journal file path, "
        "sqlite:///relative.db or sqlite:////absolute/path.db, or "
        "postgresql://user:password@host:port/database"
    )


def test_a_database_url_keeps_its_options_without_its_password(tmp_path: Path) -> None:
    """`?sslmode=require` is part of how the report reaches the database again."""
    location = locate_storage("postgresql://ada:s3cret@db.example/runs?sslmode=require", tmp_path)
    assert location.recorded == "postgresql://ada@db.example/runs?sslmode=require"
    assert location.url == "postgresql://ada:s3cret@db.example/runs?sslmode=require"


def test_a_sqlite_uri_is_left_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `uri=true` the database is SQLite's URI to read: made absolute, it no longer is."""
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///file:study.db?mode=rwc&uri=true"
    assert locate_storage(url, tmp_path).url == url


def test_a_database_that_cannot_be_reached_is_named_after_a_few_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runners starting together race to make Optuna's tables, so a failed connection is
    tried again; one that keeps failing is an error naming the storage (no password) and the
    driver's reason."""
    from types import SimpleNamespace

    from sqlalchemy.exc import OperationalError

    import ablate.storage as storage_module

    monkeypatch.chdir(tmp_path)
    tries, sleeps = [], []
    made = object()

    def connect(url: str, engine_kwargs: dict) -> object:
        tries.append(url)
        if len(tries) < fails:
            raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))
        return made

    monkeypatch.setattr(storage_module, "RDBStorage", connect)
    monkeypatch.setattr(storage_module, "time", SimpleNamespace(sleep=sleeps.append))
    location = locate_storage("postgresql://ada:s3cret@db.invalid/runs", tmp_path)
    fails = 3  # the third try succeeds
    assert open_storage(location) is made and len(tries) == 3 and len(sleeps) == 2
    tries.clear()
    fails = 99
    with pytest.raises(ValueError) as refused:
        open_storage(location)
    assert str(refused.value) == (
        "storage='postgresql://ada@db.invalid/runs' cannot be opened: could not connect to server"
    )
    assert len(tries) == storage_module.SCHEMA_ATTEMPTS == 3 and list(tmp_path.iterdir()) == []


def test_a_dry_run_of_a_new_study_makes_no_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It checks where the journal would be, and makes neither it nor the output folder."""
    path = tmp_path / "spec.yaml"
    path.write_text(make_spec(tmp_path).as_yaml())
    out = tmp_path / "new" / "out"
    assert main(["--space", str(path), "--out", str(out), "--dry-run", "--no-probe"]) == 0
    assert "study 'mechanics': 6 trials" in capsys.readouterr().out
    assert not (tmp_path / "new").exists()


def test_results_name_each_column_once_in_order_with_fixed_values(tmp_path: Path) -> None:
    """Bookkeeping, the space's parameters (a `value:` one as the trial ran it), the known
    metrics in their order, other scalars by name, then the trailing fields: each once."""
    from ablate.results import LEADING, TRAILING, write_results

    space = {"lr": {"choices": [0.05, 0.1]}, "filter_size": {"value": 2}}
    spec = make_spec(tmp_path, space=space, seeds=[0])
    study = optuna.create_study(directions=["maximize", "maximize"])
    record = {"seed": 0, "consistency_circular": 80.0, "accuracy": 50.0, "zeta": 1,
              "alpha": "a", "device": "cpu", "accuracy_vs_shift_crop": [1.0]}  # fmt: skip
    study.add_trial(optuna.trial.create_trial(
        values=[50.0, 80.0], params={"lr": 0.1},
        distributions={"lr": optuna.distributions.CategoricalDistribution([0.05, 0.1])},
        user_attrs={"slot": 0, "attempt": 0, "seeds": [record]},
    ))  # fmt: skip
    write_results(study, spec, tmp_path)
    with open(tmp_path / "results.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
        handle.seek(0)
        header = next(csv.reader(handle))
    assert header == [*LEADING, *spec.space, "accuracy", "consistency_circular", "alpha",
                      "zeta", *TRAILING]  # fmt: skip
    assert (row["lr"], row["filter_size"], row["device"]) == ("0.1", "2", "cpu")
