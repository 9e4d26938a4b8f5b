"""Model throughput and training memory (spec §5), measured on a copy of the model.

Training and inference images/s are timed at `config.throughput_batch` on random inputs, with
the run's optimiser, bf16 autocast and memory format, after warm-up, synchronised on CUDA,
as the median of three timed rounds.
Peak memory is `torch.cuda.max_memory_allocated` over one training step on CUDA, after a
garbage collection (an earlier model held in reference cycles would count too), less what the
device held before the copy was made: a run's data and the net it trained stay on the device,
and are not the step's. On the CPU it
is NaN: the process's resident size is a poor proxy (freed memory stays resident and the
lifetime peak usually predates the step), so no number is better than a wrong one.
"""

from __future__ import annotations

import copy
import gc
import math
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ablate.train import amp_for, make_optimizer, memory_format_for, training_step

if TYPE_CHECKING:
    from ablate.variant_config import VariantConfig

WARMUP_STEPS = 3
MIN_TIMED_SECONDS = 0.25  # steps per timed round double until a round lasts this long
TIMED_ROUNDS = 3


def measure_speed(
    model: nn.Module,
    config: VariantConfig,
    device: torch.device | str,
    *,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
) -> dict[str, float]:
    """`train_images_per_s`, `infer_images_per_s` and `peak_memory_mb` of `model`.

    A deep copy is trained and run, so `model`'s weights and normalisation statistics are left
    as they are.
    """
    device = torch.device(device)
    held_mb = allocated_mb(device)  # the caller's (its data, `model`): not the step's
    steps = SpeedSteps(model, config, device, image_shape, num_classes)
    batch = config.throughput_batch
    steps.model.train()
    train_rate = _images_per_s(steps.train, batch, device)
    peak_mb = peak_memory_mb(steps.train, device) - held_mb
    steps.model.eval()
    infer_rate = _images_per_s(steps.infer, batch, device)
    return {
        "train_images_per_s": train_rate,
        "infer_images_per_s": infer_rate,
        "peak_memory_mb": peak_mb,
    }


class SpeedSteps:
    """The steps the speed is measured on: a copy of `model` on `device`, in the run's memory
    format, with its optimiser, trained (`train`) or run (`infer`) on one random batch of
    `config.throughput_batch` inputs, under the run's autocast. Also what a profile of the
    same steps runs (`benchmarks.step_profile`)."""

    def __init__(self, model: nn.Module, config: VariantConfig, device: torch.device,
                 image_shape: tuple[int, int, int], num_classes: int) -> None:  # fmt: skip
        memory_format = memory_format_for(config, device)
        self.amp = amp_for(config, device)
        self.device = device
        self.model = copy.deepcopy(model).to(device=device, memory_format=memory_format)
        batch = config.throughput_batch
        self.x = torch.randn(batch, *image_shape, device=device)
        self.x = self.x.contiguous(memory_format=memory_format)
        self.y = torch.randint(num_classes, (batch,), device=device)
        self.optimizer = make_optimizer(self.model, config)

    def train(self) -> None:
        training_step(self.model, self.optimizer, self.x, self.y, amp=self.amp)

    def infer(self) -> None:
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                    enabled=self.amp):  # fmt: skip
            self.model(self.x)


def _images_per_s(step: Callable[[], None], batch: int, device: torch.device) -> float:
    """Images/s of `step` after warm-up: the median of TIMED_ROUNDS rounds, each of a number
    of steps that lasts at least MIN_TIMED_SECONDS (the median shrugs off a stalled round)."""
    repeats, elapsed = round_length(step, device)
    rounds = [elapsed, *(round_seconds(step, repeats, device) for _ in range(TIMED_ROUNDS - 1))]
    return repeats * batch / statistics.median(rounds)


def round_length(step: Callable[[], None], device: torch.device) -> tuple[int, float]:
    """Warm `step` up, then double the steps of a timed round until one lasts at least
    MIN_TIMED_SECONDS: that number of steps, and the seconds of the round that lasted so long
    (a timed round in its own right)."""
    for _ in range(WARMUP_STEPS):
        step()
    repeats = 1
    while (elapsed := round_seconds(step, repeats, device)) < MIN_TIMED_SECONDS:
        repeats *= 2
    return repeats, elapsed


def round_seconds(step: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Wall time of `repeats` calls of `step`, synchronised on CUDA."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    synchronize(device)
    return time.perf_counter() - start


def peak_memory_mb(step: Callable[[], None], device: torch.device) -> float:
    """Peak allocated device memory (MiB) during one `step` on CUDA; NaN elsewhere."""
    if device.type != "cuda":
        return math.nan
    gc.collect()  # what an earlier run left in reference cycles is not this step's
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def allocated_mb(device: torch.device) -> float:
    """Device memory (MiB) allocated now on CUDA, after a garbage collection; 0 elsewhere."""
    if device.type != "cuda":
        return 0.0
    gc.collect()
    torch.cuda.synchronize(device)
    return torch.cuda.memory_allocated(device) / 2**20


def synchronize(device: torch.device) -> None:
    """Wait for `device`'s queued work (CUDA); nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
