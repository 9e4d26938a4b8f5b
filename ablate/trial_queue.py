"""How workers share a study's trials without losing or repeating one.

Every design point the study will run is a *slot*, enqueued once as a WAITING trial with user
attrs `slot` (its index) and `attempt` (0, then +1 per retry). Workers never let Optuna create
trials on its own: they claim WAITING trials with the storage's compare-and-set
(WAITING -> RUNNING succeeds for one process only), so a grid point runs exactly once however
many workers and machines share the study. Enqueueing is guarded by a lock study named
`<study>:plan-lock`, held while enqueueing: creating a study is atomic in every storage, so one
process enqueues at a time, whatever number of slots each wants.

A claimed trial carries user attrs `worker` ({host, pid, started, device, runner}) and `heartbeat`
(seconds since the epoch, refreshed by its worker). A RUNNING trial is dead when its worker's
process is gone on this host (a live one is never failed, however old its heartbeat), or, for a
worker on another host or in another pid namespace (a container sharing this hostname), when
its heartbeat is older than `stale_after_s` (their clocks must
agree to well within that). Whoever finds a dead trial marks it FAIL with a `fail_reason`
(again compare-and-set, so one process wins) and enqueues its retry while
`attempt < max_retries`. A worker of this host whose runner (`worker.runner`) is gone too was
stopped with its whole job (`kill -9` of the process group, a reboot), most likely not by its
trial: its trial is requeued without using a retry, as after Ctrl-C, once per point (a point
whose job stops again may be what stops it: an out-of-memory kill of the whole group).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

#: What names a plan lock (a study holding no trials, whose existence is the lock); earlier
#: versions named theirs `<study>:plan-<n>` and kept them.
PLAN_LOCK_MARK = ":plan-"
PLAN_LOCK = "{study}" + PLAN_LOCK_MARK + "lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
# A planner records itself in its lock right after creating it: a lock still without an owner
# this long after a waiter first saw it lost its planner between the two writes.
UNRECORDED_AFTER_S = 30.0
# A waiter says once what it waits for when the plan takes longer than this.
SAY_WAITING_AFTER_S = 5.0
INTERRUPTED = "interrupted by the user (Ctrl-C, SIGTERM); requeued without using a retry"
JOB_STOPPED = (
    "its worker and runner were both stopped (the whole job killed, the machine restarted); "
    "requeued without using a retry"
)
#: Failures that use up no retry: the point is run again at the same attempt.
UNCOUNTED = (INTERRUPTED, JOB_STOPPED)
JOB_STOPPED_AGAIN = (
    "its worker and runner were both stopped again while running this point, which may be "
    "what brings its job down (memory): this time it counts as a retry"
)
DUPLICATE_RETRY = "not run: a second retry of the same failure, queued by two runners at once"


def planned_slots(study: optuna.Study) -> int:
    """How many slots have been enqueued so far (0 before planning)."""
    return int(study.user_attrs.get("planned_slots", 0))


def plan_slots(
    study: optuna.Study,
    storage: BaseStorage,
    slots: Sequence[dict[str, Any]],
    stale_after_s: float = STALE_AFTER_S,
) -> None:
    """Enqueue every slot once across all processes; `slots[i]` are slot i's fixed parameters.

    Growing a plan (a larger `trials:`) enqueues the new slots; shrinking it cancels nothing.
    A lock left by a planner that died is taken over: at once where that process was of this
    host, else once no trial has been enqueued for `stale_after_s`.
    """
    n = len(slots)
    if planned_slots(study) >= n:
        return
    name = PLAN_LOCK.format(study=study.study_name)
    try:
        lock = optuna.create_study(study_name=name, storage=storage)
    except DuplicatedStudyError:
        if _wait_for_plan(study, storage, name, n, stale_after_s):
            plan_slots(study, storage, slots, stale_after_s)  # its holder is gone: plan here
        return
    mine: dict[str, Any] = {}
    try:
        holder = {**owner_record(), "token": uuid.uuid4().hex}  # this lock's, whatever its id
        lock.set_user_attr("owner", holder)
        mine = holder
        planned = planned_slots(study)  # another planner may have finished since the check
        existing = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False)}
        for index, params in enumerate(slots):
            if index not in existing:
                study.enqueue_trial(dict(params), user_attrs={"slot": index, "attempt": 0})
        study.set_user_attr("planned_slots", max(n, planned))
    finally:  # done, or Ctrl-C or an error halfway: the next run enqueues the rest
        _delete_lock(storage, name, lock._study_id, mine)


def _delete_lock(storage: BaseStorage, name: str, lock_id: int, owner: dict[str, Any]) -> None:
    """Delete the plan lock `lock_id` if it still records `owner` (empty: none recorded): a
    lock of that name recording another is a new one, though SQLite may have given it the
    same id (a waiter took over meanwhile)."""
    if _lock_owner(storage, name) != (lock_id, owner):
        return
    with contextlib.suppress(KeyError):  # deleted by a waiter meanwhile
        storage.delete_study(lock_id)


def _wait_for_plan(
    study: optuna.Study, storage: BaseStorage, name: str, n: int, stale_after_s: float
) -> bool:
    """Wait until `n` slots are planned; True (plan again) where the lock is gone (its holder
    finished a smaller plan, or was stopped), or its holder is dead: a process of this host
    that is gone, one elsewhere that has enqueued nothing for `stale_after_s`, or one that
    never recorded itself (its lock is deleted)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    began = time.monotonic()
    seen, since, said = -1, began, False
    while planned_slots(study) < n:
        held = _lock_owner(storage, name)
        if held is None:
            return True
        lock_id, owner = held
        if not owner:
            gone = time.monotonic() - began > UNRECORDED_AFTER_S
        elif _on_this_host(owner):  # the process table tells: wait while it runs
            gone = not _alive(owner["pid"], owner.get("started"))
        else:  # elsewhere: its enqueueing tells
            trials = storage.get_n_trials(study_id)
            if trials != seen:
                seen, since = trials, time.monotonic()
            gone = time.monotonic() - since > stale_after_s
        if gone:  # only that lock: one a waiter that took over first has made is not it
            _delete_lock(storage, name, lock_id, owner)
            return True
        if not said and time.monotonic() - began > SAY_WAITING_AFTER_S:
            said = True
            print(f"waiting for {_holder(owner)} to enqueue the study's {n} trials (lock "
                  f"{name!r})", file=sys.stderr, flush=True)  # fmt: skip
        time.sleep(0.5)
    return False


def _holder(owner: dict[str, Any]) -> str:
    """Who holds a plan lock, for a message."""
    if not owner:
        return "a runner that has not recorded itself yet"
    return f"the runner with pid {owner.get('pid')} on {owner.get('host')}"


def _lock_owner(storage: BaseStorage, name: str) -> tuple[int, dict[str, Any]] | None:
    """The plan lock `name`'s study id and who holds it (empty while it records itself);
    None once it is gone."""
    try:
        study_id = storage.get_study_id_from_name(name)
        return study_id, storage.get_study_user_attrs(study_id).get("owner") or {}
    except KeyError:
        return None


def claim_next(
    study: optuna.Study,
    storage: BaseStorage,
    owner: dict[str, Any],
    on_claim: Callable[[int], None] | None = None,
) -> optuna.Trial | None:
    """Take the lowest-numbered WAITING trial for this process, or None when there is none;
    `on_claim(number)` runs once it is this process's, before Optuna's sampler sees it.

    A trial whose design point already has an earlier trial that did not fail is a second
    retry of one failure (two runners requeued it at once, `requeue_lost_retries`): it is
    failed as such, not run.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    trials = study.get_trials(deepcopy=False)
    for waiting in (t for t in trials if t.state == TrialState.WAITING):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        if _repeats_its_slot(waiting, trials):
            storage.set_trial_user_attr(trial_id, "fail_reason", DUPLICATE_RETRY)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            continue
        if on_claim is not None:
            on_claim(waiting.number)
        trial = optuna.Trial(study, trial_id)
        try:
            trial.set_user_attr("worker", owner)
            trial.set_user_attr("heartbeat", time.time())
        except UpdateFinishedTrialError:  # failed as ownerless by another process meanwhile
            continue
        return trial
    return None


def _repeats_its_slot(trial: FrozenTrial, trials: Sequence[FrozenTrial]) -> bool:
    slot = trial.user_attrs.get("slot")
    return slot is not None and any(
        other.number < trial.number
        and other.user_attrs.get("slot") == slot
        and other.state != TrialState.FAIL
        for other in trials
    )


def owner_record(device: str | None = None) -> dict[str, Any]:
    """Who runs a trial on `device` (or holds a plan lock): enough to tell later whether that
    process is still alive, and for a worker (`device` given) its runner, its parent."""
    pid = os.getpid()
    record = {
        "host": socket.gethostname(),
        "process_table": process_table(),
        "pid": pid,
        "started": _process_start(pid),
    }
    if device is None:
        return record
    runner = {"pid": os.getppid(), "started": _process_start(os.getppid())}
    return {**record, "device": device, "runner": runner}


@functools.cache
def process_table() -> str | None:
    """Which process table this process's pids are numbers in (Linux: its pid namespace), or
    None where that cannot be read. Containers sharing a hostname (`--net=host`,
    `hostNetwork`) each have their own: a pid from one means nothing in another. (A reboot
    keeps the host's; the start time in `owner_record` tells a reused pid.)"""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def claimed_any(study: optuna.Study, pid: int) -> bool:
    """Whether process `pid` of this host (`owner_record`) has claimed a trial of `study`."""
    owners = (_owner(trial) for trial in study.get_trials(deepcopy=False))
    return any(owner.get("pid") == pid and _on_this_host(owner) for owner in owners)


def fail_and_retry(
    study: optuna.Study,
    storage: BaseStorage,
    trial: FrozenTrial,
    reason: str,
    slots: Sequence[dict[str, Any]],
    max_retries: int,
    counts_as_retry: bool = True,
    retry_now: bool = True,
) -> bool:
    """Mark an unfinished trial FAIL with `reason` and enqueue its retry; False if already done.

    The retry reruns the same design point: the failed trial's parameters, else its slot's.
    A stop that is not the point's fault (`counts_as_retry=False`, the user's Ctrl-C) always
    requeues it with the same attempt number, so stopping and resuming uses up no retry. A
    failure that recurs until something changes (`retry_now=False`: the point cannot be built)
    is retried on the next resume instead (`requeue_lost_retries`), after it may be fixed.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    attempt = int(trial.user_attrs.get("attempt", 0))
    if retry_now and (attempt < max_retries or not counts_as_retry):
        _enqueue_retry(study, trial, slots, attempt + 1 if counts_as_retry else attempt)
    return True


def requeue_lost_retries(
    study: optuna.Study, slots: Sequence[dict[str, Any]], max_retries: int
) -> list[int]:
    """Enqueue the retries that a process died before enqueuing; the failed trials' numbers.

    A design point whose trials all failed, the last with retries left, lost its retry between
    `fail_and_retry`'s two steps (FAIL, then enqueue), or was not to be retried before a resume
    (it could not be built): a resume puts it back.
    """
    requeued = []
    for last in _failed_with_retries_left(_trials_by_slot(study), max_retries):
        _enqueue_retry(study, last, slots, _next_attempt(last))
        requeued.append(last.number)
    return requeued


def _next_attempt(failed: FrozenTrial) -> int:
    """The attempt number of `failed`'s retry: the same after a stop that uses no retry."""
    attempt = int(failed.user_attrs.get("attempt", 0))
    return attempt if failed.user_attrs.get("fail_reason") in UNCOUNTED else attempt + 1


def _trials_by_slot(study: optuna.Study) -> dict[Any, list[FrozenTrial]]:
    """A study's trials per design point (a trial outside the plan is a point of its own)."""
    by_slot: dict[Any, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        by_slot.setdefault(trial.user_attrs.get("slot", ("trial", trial.number)), []).append(trial)
    return by_slot


def finished_slots(study: optuna.Study, max_retries: int) -> set[int]:
    """The slots no run of the study trains again: complete, or failed with no retry left."""
    by_slot = _trials_by_slot(study)
    retried = {t.user_attrs.get("slot") for t in _failed_with_retries_left(by_slot, max_retries)}
    return {
        slot
        for slot, trials in by_slot.items()
        if isinstance(slot, int)  # a planned point
        and _slot_outcome(trials) in ("complete", "failed")
        and slot not in retried
    }


def _slot_outcome(trials: Sequence[FrozenTrial]) -> str:
    """Where one slot stands: complete, running, waiting or failed (every attempt failed)."""
    states = {trial.state for trial in trials}
    if TrialState.COMPLETE in states:
        return "complete"
    if TrialState.RUNNING in states:
        return "running"
    return "waiting" if TrialState.WAITING in states else "failed"


def _failed_with_retries_left(
    by_slot: dict[Any, list[FrozenTrial]], max_retries: int
) -> list[FrozenTrial]:
    """The last trial of each planned point whose trials all failed and that has retries left."""
    lasts = []
    for trials in by_slot.values():
        if trials[0].user_attrs.get("slot") is None:
            continue
        if any(t.state != TrialState.FAIL for t in trials):
            continue
        last = max(trials, key=lambda t: t.number)
        if _next_attempt(last) <= max_retries:
            lasts.append(last)
    return lasts


def _enqueue_retry(
    study: optuna.Study, trial: FrozenTrial, slots: Sequence[dict[str, Any]], attempt: int
) -> None:
    """Enqueue `trial`'s design point again: its parameters, else its slot's."""
    slot = trial.user_attrs.get("slot")
    if slot is None:
        return
    params = {**slots[slot], **trial.params} if slot < len(slots) else dict(trial.params)
    study.enqueue_trial(
        params, user_attrs={"slot": slot, "attempt": attempt, "retry_of": trial.number}
    )


def reap_dead_trials(
    study: optuna.Study,
    storage: BaseStorage,
    slots: Sequence[dict[str, Any]],
    max_retries: int,
    stale_after_s: float = STALE_AFTER_S,
    stopped_here: bool = False,
) -> list[int]:
    """Fail (and retry) the RUNNING trials whose worker is gone; their trial numbers.

    `stopped_here`: the user stopped this runner, which stopped its workers; their trials
    are requeued as interrupted, using up no retry (another runner's on this host are judged
    as ever).
    """
    reaped = []
    trials = study.get_trials(deepcopy=False)
    for trial in (t for t in trials if t.state == TrialState.RUNNING):
        reason = death_reason(trial, stale_after_s)
        if not reason:
            continue
        owner = _owner(trial)
        if stopped_here and _run_by_this_process(owner):
            reason = INTERRUPTED
        elif _runner_gone(owner):
            slot = trial.user_attrs.get("slot")
            before = any(
                t.user_attrs.get("slot") == slot and t.user_attrs.get("fail_reason") == JOB_STOPPED
                for t in trials
            )
            reason = JOB_STOPPED_AGAIN if before else JOB_STOPPED
        counted = reason not in UNCOUNTED
        if fail_and_retry(study, storage, trial, reason, slots, max_retries, counted):
            reaped.append(trial.number)
    return reaped


def _run_by_this_process(owner: dict[str, Any]) -> bool:
    """Whether a worker (`owner_record`) is this process's: its runner is this process (a
    record without its runner, of an earlier version: a worker of this host)."""
    if owner.get("host") != socket.gethostname():
        return False
    runner = owner.get("runner")
    return runner is None or (runner["pid"] == os.getpid() and _on_this_host(owner))


def _runner_gone(owner: dict[str, Any]) -> bool:
    """Whether a worker of this host (`owner_record`) has lost its runner too."""
    runner = owner.get("runner")
    return (
        runner is not None
        and _on_this_host(owner)
        and not _alive(runner["pid"], runner.get("started"))
    )


def _owner(trial: FrozenTrial) -> dict[str, Any]:
    return trial.user_attrs.get("worker") or {}


def death_reason(trial: FrozenTrial, stale_after_s: float) -> str | None:
    """Why a RUNNING trial's worker is known to be gone, or None while it may be alive."""
    owner = _owner(trial)
    host, pid = owner.get("host"), owner.get("pid")
    if _on_this_host(owner):  # here the process table decides
        if _alive(pid, owner.get("started")):
            return None
        return f"worker process {pid} on {host} died while running the trial"
    start = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    age = time.time() - float(trial.user_attrs.get("heartbeat", start))
    if age > stale_after_s:
        who = f"worker process {pid} on {host}" if owner else "its worker"
        return f"no heartbeat from {who} for {age:.0f} s (limit {stale_after_s:.0f} s)"
    return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid from the owner."""
    stat = _proc_stat(pid)
    return stat[19] if stat else None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _on_this_host(owner: dict[str, Any]) -> bool:
    """Whether `owner` (`owner_record`) is a process of this host's process table, whose
    liveness `_alive` can tell (another host's or container's only its heartbeat tells)."""
    return (
        owner.get("host") == socket.gethostname()
        # a record made before owners named their table: the host alone, as it was then
        and owner.get("process_table", process_table()) == process_table()
        and owner.get("pid") is not None
    )


def _alive(pid: int, started: str | None) -> bool:
    """Whether the process `pid` that started at `started` still runs (zombies do not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: its start time tells whether it is the owner
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self/stat").exists()
    return stat[0] not in ("Z", "X") and (started is None or stat[19] == started)


@dataclass(frozen=True)
class QueueStatus:
    """Where a study's slots stand."""

    planned: int
    complete: int
    failed: int
    running: int
    waiting: int
    finished_trials: int
    retry_on_resume: int
    """Failed slots that a resume runs again: retries left (a point that could not be built)."""
    seeds_in_progress: int
    """Seeds that running trials have finished: progress inside the slots that are running."""
    complete_at_chance: int = 0
    """Complete slots with a seed that did not learn: infeasible, so off the Pareto front."""
    failure_reasons: tuple[tuple[str, int], ...] = ()
    """The failed slots' reasons (their last attempt's `fail_reason`) and counts, most first."""

    @property
    def finished(self) -> int:
        """Slots with a final result: complete, or failed with no retry left."""
        return self.complete + self.failed

    def runs_done(self, seeds: int) -> int:
        """Training runs done when each slot runs `seeds` seeds (a finished slot counts whole)."""
        return self.finished * seeds + self.seeds_in_progress

    @property
    def done(self) -> bool:
        return self.running == 0 and self.waiting == 0


def queue_status(study: optuna.Study, max_retries: int) -> QueueStatus:
    """Count slots by outcome: complete, failed (how many a resume retries), running, waiting."""
    by_slot = _trials_by_slot(study)
    states_seen = [trial.state for trials in by_slot.values() for trial in trials]
    finished_trials = sum(states_seen.count(s) for s in (TrialState.COMPLETE, TrialState.FAIL))
    outcome: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for trials in by_slot.values():
        where = _slot_outcome(trials)
        outcome[where] += 1
        if where == "complete":
            complete = next(t for t in trials if t.state == TrialState.COMPLETE)
            seeds = complete.user_attrs.get("seeds", ())
            outcome["complete_at_chance"] += any(r.get("learned") is False for r in seeds)
        elif where == "failed":
            # the last real attempt's: not a duplicate retry's placeholder
            attempts = [t for t in trials if t.user_attrs.get("fail_reason") != DUPLICATE_RETRY]
            last = max(attempts or trials, key=lambda trial: trial.number)
            reasons[last.user_attrs.get("fail_reason", "no reason recorded")] += 1
    return QueueStatus(
        planned_slots(study),
        outcome["complete"],
        outcome["failed"],
        outcome["running"],
        outcome["waiting"],
        finished_trials,
        len(_failed_with_retries_left(by_slot, max_retries)),
        sum(
            len(trial.user_attrs.get("seeds", ()))
            for trials in by_slot.values()
            for trial in trials
            if trial.state == TrialState.RUNNING
        ),
        outcome["complete_at_chance"],
        tuple(reasons.most_common()),
    )
