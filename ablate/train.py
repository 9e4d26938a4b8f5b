"""The short-run trainer: one variant's training budget, optimiser and schedule, seeded.

Minibatches are drawn from the on-device training tensors by a seeded index permutation (no
DataLoader: the data already lives on the device). The budget is counted in steps of full
minibatches; an epoch budget is converted with images seen / training images, so fractional
epochs are allowed and a batch may straddle two permutations.

A `probe` (the variant's test accuracy) is read after each quarter of the budget: a short run
that still gains at its end measures how fast a design learns as much as where it ends.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ablate.data import augment

if TYPE_CHECKING:
    from ablate.data import Splits
    from ablate.variant_config import VariantConfig

FINAL_LOSS_WINDOW = 10  # the reported final loss is the mean over this many last steps
PROBE_POINTS = 4  # the probe is read after each quarter of the budget


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run is stopped at that step."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: its final loss, wall time and budget actually spent."""

    final_loss: float  # mean of the last FINAL_LOSS_WINDOW step losses
    seconds: float
    steps: int
    images_seen: int
    losses: list[float]  # one per step
    probes: list[float]  # after each 1/PROBE_POINTS of the budget; empty without a probe


def train(
    model: nn.Module,
    splits: Splits,
    config: VariantConfig,
    device: torch.device | str,
    probe: Callable[[nn.Module], float] | None = None,
) -> TrainResult:
    """Train `model` in place on `splits.train_x/train_y` with `config`'s training fields.

    The model is moved to `device` (channels_last there when `config.channels_last` and the
    device is CUDA); bf16 autocast is used when `config.amp` and the device is CUDA. Shuffling
    draws from a generator seeded with `config.seed`, augmentation from one of its own
    (`augmentation_seed`), so that runs of a seed with and without augmentation see the
    batches in the same order. `probe(model)`, when
    given, is called after steps `probe_steps(steps)`; it must leave the model's mode, its
    buffers and the random streams as they were (an evaluation under `torch.inference_mode`
    does). Raises `TrainingDiverged` at the first step whose loss is not finite, or at the last
    when it left the weights not finite.
    """
    device = torch.device(device)
    x, y = splits.train_x.to(device), splits.train_y.to(device)
    if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"splits must hold as many training labels as images (at least one), "
            f"got {x.shape[0]} images and {y.shape[0]} labels"
        )
    batch_size = min(config.batch_size, x.shape[0])
    steps = budget_steps(config, x.shape[0])
    memory_format = memory_format_for(config, device)
    model.to(device=device, memory_format=memory_format)
    model.train()
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, steps)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    batches = _index_batches(x.shape[0], batch_size, generator)
    augmenter = torch.Generator(device=device).manual_seed(augmentation_seed(config.seed))
    amp = amp_for(config, device)
    probe_at = probe_steps(steps) if probe is not None else []

    losses: list[float] = []
    probes: list[float] = []
    probe_seconds = 0.0
    start = time.perf_counter()
    for step in range(1, steps + 1):
        index = next(batches)
        xb = augment(x[index], augmenter) if config.augment else x[index]
        lr = optimizer.param_groups[0]["lr"]
        loss = training_step(
            model, optimizer, xb.contiguous(memory_format=memory_format), y[index], amp=amp
        ).item()
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} at step {step} of {steps}{_settings(config, lr)}"
            )
        if step == steps and not _finite_state(model):  # no later loss would show it
            raise TrainingDiverged(
                f"the weights became NaN or infinite at step {step} of {steps}, the last "
                f"update{_settings(config, lr)}"
            )
        schedule.step()
        losses.append(loss)
        if probe is not None and step in probe_at:
            probe_start = time.perf_counter()
            probes += [probe(model)] * probe_at.count(step)  # a budget of < 4 steps repeats
            probe_seconds += time.perf_counter() - probe_start
    seconds = time.perf_counter() - start - probe_seconds
    final = losses[-FINAL_LOSS_WINDOW:]
    return TrainResult(
        final_loss=sum(final) / len(final),
        seconds=seconds,
        steps=steps,
        images_seen=steps * batch_size,
        losses=losses,
        probes=probes,
    )


def augmentation_seed(seed: int) -> int:
    """The seed of a run's augmentation draws, derived from its `seed` but not equal to it:
    the shuffling generator's stream is left to the batch order alone."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _settings(config: VariantConfig, lr: float) -> str:
    """' (lr=…, … at this step of its schedule, optimizer …); lower lr or check the model'."""
    return (
        f" (lr={config.lr:g}, {lr:.3g} at this step of its schedule, optimizer "
        f"{config.optimizer}); lower lr or check the model"
    )


def _finite_state(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer is finite (one device sync)."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def probe_steps(steps: int) -> list[int]:
    """The steps after which the probe is read: the end of each 1/PROBE_POINTS of `steps`."""
    return [math.ceil(steps * point / PROBE_POINTS) for point in range(1, PROBE_POINTS + 1)]


def budget_steps(config: VariantConfig, n_train: int) -> int:
    """Optimiser steps of a run: `config.steps` if set, else ⌈epochs · n_train / batch⌉."""
    if config.steps is not None:
        return config.steps
    batch_size = min(config.batch_size, n_train)
    return max(1, math.ceil(config.epochs * n_train / batch_size))


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    amp: bool,
) -> torch.Tensor:
    """One cross-entropy step (forward under bf16 autocast when `amp`); returns the loss."""
    autocast = (
        torch.autocast(x.device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    )
    with autocast:
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def make_optimizer(model: nn.Module, config: VariantConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (plain SGD when momentum is 0) or AdamW, from `config`."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")


def make_schedule(
    optimizer: torch.optim.Optimizer, config: VariantConfig, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle (peak `config.lr`, momentum left as configured) or cosine decay over `steps`."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=steps, cycle_momentum=False
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    raise ValueError(f"schedule must be 'onecycle' or 'cosine', got {config.schedule!r}")


def memory_format_for(config: VariantConfig, device: torch.device) -> torch.memory_format:
    """channels_last where `config.channels_last` asks for it and the device is CUDA."""
    if config.channels_last and device.type == "cuda":
        return torch.channels_last
    return torch.contiguous_format


def amp_for(config: VariantConfig, device: torch.device) -> bool:
    """Whether to run under bf16 autocast: where `config.amp` asks and the device is CUDA."""
    return config.amp and device.type == "cuda"


def _index_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless minibatch indices: successive seeded permutations of range(n), cut in batches."""
    pending = torch.empty(0, dtype=torch.long, device=generator.device)
    while True:
        while pending.numel() < batch_size:
            permutation = torch.randperm(n, generator=generator, device=generator.device)
            pending = torch.cat([pending, permutation])
        yield pending[:batch_size]
        pending = pending[batch_size:]
