"""The runner's worker processes: started, replaced when killed, and stopped.

Each worker is a spawned process with its GPU (`CUDA_VISIBLE_DEVICES`) and its share of the
cores (`OMP_NUM_THREADS`). A worker killed while it ran trials (the kernel's OOM killer, a crash
in native code) has its trial failed with the reason and retried, and a new worker takes its
place, so a study is never left a worker short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from ablate.trial_queue import claimed_any, queue_status, reap_dead_trials
from ablate.workers import STOPPED_EXIT, WorkerJob, run_worker


class WorkerPool:
    """One worker per entry of `pins` (its CUDA_VISIBLE_DEVICES; None: the CPU), each running
    `template` with its own index and log file in the folder `logs`."""

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        slots: Sequence[dict[str, Any]],
        template: WorkerJob,
        pins: Sequence[str | None],
        logs: Path,
    ) -> None:
        self.study, self.storage, self.slots, self.pins = study, storage, slots, pins
        self.jobs = [
            dataclasses.replace(
                template,
                index=index,
                device="cuda" if gpu is not None and template.device == "auto" else template.device,
                # one file per runner too: two runners on one folder wrote one log, interleaved
                log_file=str(logs / f"worker-{index}-runner-{os.getpid()}.log"),
            )
            for index, gpu in enumerate(pins)
        ]
        self.processes: list[BaseProcess] = []
        self._seen_dead: set[int] = set()
        # Torch's default, every core in every worker, would oversubscribe the cores and slow
        # each run, and so skew its throughput, by as much as there are workers.
        # (OMP_NUM_THREADS given: passed on as it reads)
        threads = worker_threads(len(pins))
        self._threads = None if threads is None else str(threads)

    def start(self) -> None:
        self.processes = [self._start(index) for index in range(len(self.jobs))]

    def _start(self, index: int) -> BaseProcess:
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=run_worker, args=(self.jobs[index],), name=f"ablate-worker-{index}"
        )
        with _environment(CUDA_VISIBLE_DEVICES=self.pins[index], OMP_NUM_THREADS=self._threads):
            process.start()
        return process

    def poll(self) -> bool:
        """Start a new worker in place of each one killed after it claimed a trial, while the
        study has trials left (not one that died before it claimed any: a new one would die
        the same way); whether any worker runs now.

        Which workers run is read first, and a worker read as ended has its exit code: one
        that ends after that read is seen at the next poll. (Read after the replacements, a
        worker killed in between ended the runner's watch unreplaced, its trial left to a
        resume.)"""
        running = [process.is_alive() for process in self.processes]
        replaced = False
        for index, process in enumerate(self.processes):
            ended_well = process.exitcode in (0, STOPPED_EXIT)
            if running[index] or ended_well or process.pid in self._seen_dead:
                continue
            self._seen_dead.add(process.pid)
            job = self.jobs[index]
            max_retries = job.spec.max_retries
            reaped = reap_dead_trials(
                self.study, self.storage, self.slots, max_retries, job.stale_after_s
            )
            # Its trial may have been reaped by another worker first, or it died between trials.
            ran_trials = reaped or claimed_any(self.study, process.pid)
            if ran_trials and not queue_status(self.study, max_retries).done:
                trial = (
                    f" running trial {', '.join(map(str, reaped))}: failed and queued again"
                    if reaped
                    else ""
                )
                print(
                    f"{process.name} died (exit code {process.exitcode}){trial}; a new worker "
                    "takes its place",
                    file=sys.stderr,
                )
                self.processes[index] = self._start(index)
                replaced = True
        return replaced or any(running)

    def join(self) -> None:
        """Wait for every worker; say which exited with an error."""
        for process in self.processes:
            process.join()
            if process.exitcode:
                print(f"{process.name} exited with code {process.exitcode}", file=sys.stderr)


def stop_workers(processes: Sequence[BaseProcess], wait_s: float) -> None:
    """End the workers within about 2 × `wait_s` however many there are: SIGTERM at once,
    which they take as Ctrl-C (a stop that reached the runner alone, as `kill` or a
    scheduler's, had left them claiming new trials; one that reached them too makes them
    ignore this one), then SIGKILL."""
    for ask in ("terminate", "kill"):
        alive = [p for p in processes if p.is_alive()]
        for process in alive:
            getattr(process, ask)()
        deadline = time.monotonic() + wait_s
        for process in alive:
            process.join(timeout=max(0.0, deadline - time.monotonic()))


def worker_threads(workers: int) -> int | None:
    """The CPU threads each of `workers` workers computes on, which a CPU run's numbers depend
    on (`ablate.variant.recorded_device_name`): OMP_NUM_THREADS where it is set, else a share
    of the cores where there are several, else None (torch's default, as in this process)."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given:
        return int(given) if given.isdigit() and int(given) > 0 else None
    if workers <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set environment variables (None: leave as is) for processes started in the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
