"""The short-run trainer on tiny models and random data: budget, optimisers, seeding, divergence."""

import gc
import math
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import ablate.speed as speed_module
import ablate.train as train_module
from ablate.data import Splits
from ablate.metrics import accuracy
from ablate.speed import SpeedSteps, measure_speed
from ablate.train import (
    TrainingDiverged,
    amp_for,
    augmentation_seed,
    budget_steps,
    make_optimizer,
    make_schedule,
    memory_format_for,
    probe_steps,
    train,
)
from ablate.variant_config import VariantConfig


def learnable_splits(n=256, seed=0):
    """Random 3×8×8 images whose 4 classes a linear map separates."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=generator)
    y = (x.flatten(1) @ torch.randn(192, 4, generator=generator)).argmax(1)
    return Splits(x, y, x[:32], y[:32], num_classes=4)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Flatten(), nn.Linear(192, 4))


class NaNAfter(nn.Module):
    """Emits NaN logits from its `calls`-th forward call on."""

    def __init__(self, calls):
        super().__init__()
        self.linear = nn.Linear(192, 4)
        self.calls, self.seen = calls, 0

    def forward(self, x):
        self.seen += 1
        logits = self.linear(x.flatten(1))
        return logits * math.nan if self.seen >= self.calls else logits


class InfiniteGradient(nn.Module):
    """Finite logits whose gradient w.r.t. `offset` (sqrt at 0) is not finite: the loss before
    each update is finite, the weights after it are not."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(192, 4)
        self.offset = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.linear(x.flatten(1)) + torch.sqrt(self.offset)


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.05), ("adamw", 0.03)])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_training_reduces_the_loss(optimizer, lr, schedule):
    config = VariantConfig(
        epochs=4, batch_size=32, optimizer=optimizer, lr=lr, schedule=schedule, amp=False
    )
    result = train(tiny_model(), learnable_splits(), config, "cpu")
    assert len(result.losses) == result.steps == 32
    assert result.final_loss < 0.5 * result.losses[0]
    assert result.final_loss == pytest.approx(sum(result.losses[-10:]) / 10)
    assert result.seconds > 0


def test_budget_in_steps_or_fractional_epochs():
    splits = learnable_splits(n=100)
    by_steps = train(tiny_model(), splits, VariantConfig(steps=7, batch_size=32), "cpu")
    assert (by_steps.steps, by_steps.images_seen) == (7, 7 * 32)
    by_epochs = train(tiny_model(), splits, VariantConfig(epochs=2.5, batch_size=32), "cpu")
    assert (by_epochs.steps, by_epochs.images_seen) == (8, 8 * 32)  # ⌈250 / 32⌉
    assert budget_steps(VariantConfig(epochs=0.01, batch_size=32), 100) == 1
    assert budget_steps(VariantConfig(epochs=2, batch_size=500), 100) == 2  # batch capped at N


def test_same_seed_same_run_other_seed_other_run():
    splits = learnable_splits()
    runs = [
        train(tiny_model(), splits, VariantConfig(steps=5, batch_size=16, seed=s), "cpu").losses
        for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_augmented_training_is_seeded():
    splits = learnable_splits()
    config = VariantConfig(steps=4, batch_size=16, augment=True)
    plain = train(tiny_model(), splits, config.model_copy(update={"augment": False}), "cpu")
    augmented = [train(tiny_model(), splits, config, "cpu").losses for _ in range(2)]
    assert augmented[0] == augmented[1]
    assert augmented[0] != plain.losses


def test_runs_with_and_without_augmentation_see_the_batches_in_one_order(monkeypatch):
    """A seed's runs share their batch order: augmentation drew from the shuffling generator,
    so a study varying `augment` paired runs that saw other batches."""
    seen: list[list[int]] = []
    index_batches = train_module._index_batches

    def recorded(*args: object) -> Iterator[torch.Tensor]:
        order = seen[-1]
        for index in index_batches(*args):
            order += index.tolist()
            yield index

    monkeypatch.setattr(train_module, "_index_batches", recorded)
    splits = learnable_splits()
    for augmented in (False, True):  # 8 steps of 48 of 256 images: into a second permutation
        seen.append([])
        config = VariantConfig(steps=8, batch_size=48, augment=augmented)
        train(tiny_model(), splits, config, "cpu")
    assert seen[0] == seen[1] and len(seen[0]) == 8 * 48


def test_probe_is_read_after_each_quarter_and_leaves_training_as_it_was():
    """A model with BatchNorm and dropout: the accuracy probe must not move running statistics,
    the mode or the random streams, so the probed run is the unprobed run, loss for loss."""
    splits = learnable_splits()
    config = VariantConfig(steps=10, batch_size=16, augment=True)

    def model():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Dropout(0.2), nn.Flatten(),
            nn.Linear(192, 4),
        )

    seen = []

    def probe(net):
        seen.append((len(seen), net.training))
        return accuracy(net, splits.test_x, splits.test_y)

    plain_model = model()  # seeds the global stream dropout draws from
    plain = train(plain_model, splits, config, "cpu")
    probed_model = model()
    probed = train(probed_model, splits, config, "cpu", probe=probe)
    assert probed.losses == plain.losses and plain.probes == []
    assert torch.equal(probed_model[1].running_mean, plain_model[1].running_mean)
    assert probe_steps(10) == [3, 5, 8, 10] and len(seen) == 4
    assert all(training for _, training in seen)  # handed over in training mode
    assert probed.probes[-1] == accuracy(probed_model, splits.test_x, splits.test_y)


def test_probe_steps_cover_budgets_shorter_than_the_quarters():
    assert probe_steps(2) == [1, 1, 2, 2]
    assert probe_steps(1) == [1, 1, 1, 1]
    assert probe_steps(400) == [100, 200, 300, 400]
    splits = learnable_splits()
    calls = []
    result = train(
        tiny_model(), splits, VariantConfig(steps=2, batch_size=16), "cpu",
        probe=lambda net: calls.append(1) or float(len(calls)),
    )
    assert len(calls) == 2 and result.probes == [1.0, 1.0, 2.0, 2.0]


def test_a_model_that_emits_nan_stops_at_that_step():
    model = NaNAfter(calls=4)
    with pytest.raises(TrainingDiverged, match=r"nan at step 4 of 20"):
        train(model, learnable_splits(), VariantConfig(steps=20, batch_size=16), "cpu")
    assert model.seen == 4


def test_weights_that_the_last_update_made_not_finite_are_a_divergence():
    """No later loss shows an update that breaks the weights at the last step: a run whose
    weights end NaN must not be recorded as one that trained (and did not learn)."""
    with pytest.raises(TrainingDiverged, match=r"weights became NaN or infinite at step 1 of 1"):
        train(InfiniteGradient(), learnable_splits(), VariantConfig(steps=1, batch_size=16),
              "cpu")  # fmt: skip


def test_a_huge_learning_rate_diverges_with_a_clear_message():
    config = VariantConfig(steps=50, batch_size=32, lr=1e12, schedule="cosine")
    message = r"at step \d+ of 50 \(lr=1e\+12, [\d.e+]+ at .*, optimizer sgd\); lower lr"
    with pytest.raises(TrainingDiverged, match=message):
        train(tiny_model(), learnable_splits(), config, "cpu")


def test_optimizer_and_schedule_follow_the_config():
    model = tiny_model()
    sgd = make_optimizer(model, VariantConfig(lr=0.2, momentum=0.8, weight_decay=1e-3))
    assert isinstance(sgd, torch.optim.SGD)
    settings = {k: sgd.defaults[k] for k in ("lr", "momentum", "nesterov", "weight_decay")}
    assert settings == {"lr": 0.2, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3}
    assert not make_optimizer(model, VariantConfig(momentum=0)).defaults["nesterov"]
    adamw = make_optimizer(model, VariantConfig(optimizer="adamw", lr=0.01, weight_decay=0.2))
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.defaults["lr"], adamw.defaults["weight_decay"]) == (0.01, 0.2)

    for schedule, peak_at_start in (("onecycle", False), ("cosine", True)):
        optimizer = make_optimizer(model, VariantConfig(lr=0.2))
        scheduler = make_schedule(optimizer, VariantConfig(lr=0.2, schedule=schedule), 20)
        lrs = []
        for _ in range(20):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert max(lrs) == pytest.approx(0.2, rel=0.05)
        assert (lrs[0] == max(lrs)) == peak_at_start
        assert lrs[-1] < 0.02
        assert optimizer.param_groups[0]["momentum"] == 0.9  # not cycled


@pytest.mark.parametrize(("images", "labels"), [(8, 5), (5, 8), (0, 0)])
def test_training_rejects_mismatched_or_empty_splits(images: int, labels: int) -> None:
    """Fewer images than labels, or none at all, is refused by name, not trained on (extra
    labels would be silently ignored; no images would end in a division by zero or NaN loss)."""
    x = torch.randn(images, 3, 8, 8)
    y = torch.zeros(labels, dtype=torch.long)
    splits = Splits(x, y, torch.randn(8, 3, 8, 8), torch.zeros(8, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=f"got {images} images and {labels} labels"):
        train(tiny_model(), splits, VariantConfig(steps=1), "cpu")


class NonFiniteAt(nn.Module):
    """Finite logits at every call; from its `calls`-th forward call on, the update leaves a
    parameter (`offset`, sqrt at 0: an infinite gradient) or a buffer (`running`) not finite."""

    def __init__(self, calls: int, where: str) -> None:
        super().__init__()
        self.linear = nn.Linear(192, 4)
        self.offset = nn.Parameter(torch.zeros(1))  # no gradient, so no update, until `calls`
        self.register_buffer("running", torch.zeros(1))
        self.calls, self.where, self.seen = calls, where, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += 1
        logits = self.linear(x.flatten(1))
        if self.seen < self.calls:
            return logits
        if self.where == "buffer":
            self.running.fill_(math.inf)
            return logits
        return logits + torch.sqrt(self.offset)


@pytest.mark.parametrize("where", ["parameter", "buffer"])
def test_weights_or_buffers_the_last_of_several_updates_made_not_finite_are_a_divergence(
    where: str,
) -> None:
    """The state is checked after the last step of the budget, not only after a first one, and
    a buffer (a running statistic) that ends NaN or infinite counts as weights that do."""
    model = NonFiniteAt(calls=3, where=where)
    with pytest.raises(TrainingDiverged, match=r"weights became NaN or infinite at step 3 of 3"):
        train(model, learnable_splits(), VariantConfig(steps=3, batch_size=16), "cpu")
    assert model.seen == 3


def test_a_batch_larger_than_the_training_set_is_capped_at_it(monkeypatch) -> None:
    """Each step trains on at most all N training images (one permutation), and the images seen
    count those steps' images, not the configured batch size."""
    sizes: list[int] = []
    training_step = train_module.training_step

    def recorded(*args: Any, **kwargs: Any) -> torch.Tensor:
        sizes.append(args[2].shape[0])  # (model, optimizer, x, y)
        return training_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_step", recorded)
    result = train(tiny_model(), learnable_splits(n=20), VariantConfig(steps=3, batch_size=64),
                   "cpu")  # fmt: skip
    assert sizes == [20, 20, 20]
    assert (result.steps, result.images_seen) == (3, 60)


def test_a_model_handed_over_in_eval_mode_is_trained_in_training_mode() -> None:
    """Training puts the model in training mode: BatchNorm uses batch statistics and updates its
    running ones (a model evaluated before training would otherwise train frozen)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Flatten(),
                          nn.Linear(192, 4)).eval()  # fmt: skip
    before = model[1].running_mean.clone()
    train(model, learnable_splits(), VariantConfig(steps=2, batch_size=16), "cpu")
    assert model.training
    assert not torch.equal(model[1].running_mean, before)


def test_augmentation_draws_from_a_generator_seeded_apart_from_the_shuffling(monkeypatch) -> None:
    """The augmentation generator is seeded with `augmentation_seed(seed)`: one per seed, not the
    shuffling seed itself (whose stream the batch order owns) and not one shared by all seeds."""
    seeds: list[int] = []
    real_augment = train_module.augment

    def recorded(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seeds.append(generator.initial_seed())
        return real_augment(x, generator)

    monkeypatch.setattr(train_module, "augment", recorded)
    for seed in (3, 4):
        config = VariantConfig(steps=2, batch_size=16, augment=True, seed=seed)
        train(tiny_model(), learnable_splits(), config, "cpu")
    assert seeds == [augmentation_seed(3)] * 2 + [augmentation_seed(4)] * 2
    assert len({3, 4, augmentation_seed(3), augmentation_seed(4)}) == 4
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_training_seconds_leave_out_the_probe(monkeypatch) -> None:
    """`seconds` is the training's own time: what the accuracy probes take is subtracted (on a
    clock that advances 1 s a step and 100 s a probe)."""
    clock = [0.0]
    monkeypatch.setattr(train_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    training_step = train_module.training_step

    def one_second(*args: Any, **kwargs: Any) -> torch.Tensor:
        clock[0] += 1.0
        return training_step(*args, **kwargs)

    def slow_probe(net: nn.Module) -> float:
        clock[0] += 100.0
        return 0.0

    monkeypatch.setattr(train_module, "training_step", one_second)
    result = train(tiny_model(), learnable_splits(), VariantConfig(steps=6, batch_size=16), "cpu",
                   probe=slow_probe)  # fmt: skip
    assert len(result.probes) == 4
    assert result.seconds == 6.0


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_each_step_trains_at_its_point_of_the_schedule_over_the_whole_budget(
    monkeypatch, schedule: str
) -> None:
    """The learning rate a step trains at follows the schedule laid over exactly the budget's
    steps: cosine from `lr` down by (1 + cos(π k / steps)) / 2, one-cycle from lr/25 up to `lr`
    and down to its floor, lr/25/10⁴, at the last step."""
    lrs: list[float] = []
    training_step = train_module.training_step

    def recorded(*args: Any, **kwargs: Any) -> torch.Tensor:
        lrs.append(args[1].param_groups[0]["lr"])  # (model, optimizer, x, y)
        return training_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_step", recorded)
    config = VariantConfig(steps=10, batch_size=16, lr=0.1, schedule=schedule)
    train(tiny_model(), learnable_splits(), config, "cpu")
    assert len(lrs) == 10
    if schedule == "cosine":
        expected = [0.1 * (1 + math.cos(math.pi * k / 10)) / 2 for k in range(10)]
        assert lrs == pytest.approx(expected)
    else:
        assert lrs[0] == pytest.approx(0.1 / 25)
        assert max(lrs) == pytest.approx(0.1)
        assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4)


def test_autocast_and_channels_last_only_where_asked_and_on_cuda() -> None:
    """bf16 autocast and channels_last apply on CUDA when the config asks, never on the CPU."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device name needs no GPU
    on = VariantConfig(amp=True, channels_last=True)
    off = VariantConfig(amp=False, channels_last=False)
    assert (amp_for(on, cuda), amp_for(off, cuda), amp_for(on, cpu)) == (True, False, False)
    assert memory_format_for(on, cuda) == torch.channels_last
    assert memory_format_for(off, cuda) == torch.contiguous_format
    assert memory_format_for(on, cpu) == torch.contiguous_format


def test_minibatches_are_successive_permutations_that_a_batch_may_straddle() -> None:
    """Every N consecutive indices drawn are one permutation of the N images: a batch that
    runs past a permutation's end takes its rest from the next, and nothing is skipped."""
    batches = train_module._index_batches(10, 4, torch.Generator().manual_seed(0))
    drawn = torch.cat([next(batches) for _ in range(10)]).tolist()  # 40 indices: 4 permutations
    for start in range(0, 40, 10):
        assert sorted(drawn[start : start + 10]) == list(range(10))


def test_speed_leaves_the_model_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    speed = measure_speed(
        model, VariantConfig(throughput_batch=8), "cpu", image_shape=(3, 8, 8), num_classes=4
    )
    assert speed["train_images_per_s"] > 0 and speed["infer_images_per_s"] > 0
    assert math.isnan(speed["peak_memory_mb"])  # measured on CUDA only
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def fake_clock(monkeypatch, durations: Iterator[float]) -> tuple[Callable[[], None], list[int]]:
    """A step that advances `ablate.speed`'s clock by the next of `durations`, and its calls."""
    clock, calls = [0.0], [0]
    monkeypatch.setattr(speed_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def step() -> None:
        calls[0] += 1
        clock[0] += next(durations)

    return step, calls


def constant(seconds: float) -> Iterator[float]:
    """`seconds`, endlessly."""
    while True:
        yield seconds


def test_speed_warms_up_then_doubles_the_repeats_until_a_round_lasts_long_enough(
    monkeypatch,
) -> None:
    """Three untimed warm-up steps; a round shorter than MIN_TIMED_SECONDS doubles the repeats
    (1, 2, 4 steps of 0.1 s); the round that is long enough counts as the first of the three."""
    step, calls = fake_clock(monkeypatch, constant(0.1))
    rate = speed_module._images_per_s(step, 8, torch.device("cpu"))
    assert calls[0] == 3 + (1 + 2 + 4) + 4 + 4
    assert rate == pytest.approx(4 * 8 / 0.4)


def test_a_round_of_exactly_the_minimum_time_is_long_enough(monkeypatch) -> None:
    """A round that lasts MIN_TIMED_SECONDS (2 steps of 0.125 s) stops the doubling."""
    assert speed_module.MIN_TIMED_SECONDS == 0.25
    step, calls = fake_clock(monkeypatch, constant(0.125))
    rate = speed_module._images_per_s(step, 8, torch.device("cpu"))
    assert calls[0] == 3 + (1 + 2) + 2 + 2
    assert rate == pytest.approx(2 * 8 / 0.25)


def test_speed_is_the_median_of_the_timed_rounds(monkeypatch) -> None:
    """Rounds of 0.5, 4 (a stalled one) and 1 s: the rate is the batch per the median 1 s, not
    per the mean, the fastest or the first round."""
    step, calls = fake_clock(monkeypatch, iter([9.0, 9.0, 9.0, 0.5, 4.0, 1.0, 2.0, 2.0]))
    assert speed_module._images_per_s(step, 8, torch.device("cpu")) == pytest.approx(8.0)
    assert calls[0] == 6


class ModeRecorder(nn.Module):
    """A linear classifier whose forward calls `record(training, grad enabled, batch, dtype of
    the logits)` and advance `tick(training)`; both survive the deep copy the speed runs on."""

    def __init__(self, record: Callable[..., None], tick: Callable[[bool], None]) -> None:
        super().__init__()
        self.linear = nn.Linear(192, 4)
        self.record, self.tick = record, tick

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        self.record(self.training, torch.is_grad_enabled(), x.shape[0], logits.dtype)
        self.tick(self.training)
        return logits


def test_speed_times_training_steps_and_inference_apart(monkeypatch) -> None:
    """Training images/s time training steps (training mode, with gradients) and inference
    images/s forwards in eval mode without them, each at `throughput_batch`, in float32 on the
    CPU whatever `amp` says. A training forward takes 0.5 s and an eval one 0.25 s here."""
    clock = [0.0]
    monkeypatch.setattr(speed_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    seen: list[tuple] = []

    def record(*call: object) -> None:
        seen.append(call)

    def tick(training: bool) -> None:
        clock[0] += 0.5 if training else 0.25

    model = ModeRecorder(record, tick).eval()  # the mode it is handed over in does not matter
    config = VariantConfig(throughput_batch=8, batch_size=32, amp=True)
    speed = measure_speed(model, config, "cpu", image_shape=(3, 8, 8), num_classes=4)
    assert speed["train_images_per_s"] == pytest.approx(8 / 0.5)
    assert speed["infer_images_per_s"] == pytest.approx(8 / 0.25)
    assert seen == [(True, True, 8, torch.float32)] * 6 + [(False, False, 8, torch.float32)] * 6
    assert not model.training


def test_peak_memory_is_the_training_steps_not_what_the_run_held_before(monkeypatch) -> None:
    """On CUDA the peak counts the copy that trains, its optimiser and the step's activations,
    not what the device held when the speed was measured: a run's data and the trained net
    stay there (700 MiB here), and would make the figure grow with the training set. CUDA's
    memory statistics are faked, so the accounting runs on the CPU."""
    mib = 2**20
    memory = {"allocated": 700 * mib, "peak": 700 * mib}

    def reset_peak(device: torch.device) -> None:
        memory["peak"] = memory["allocated"]

    class Steps:
        """What SpeedSteps allocates: a copy and its optimiser state (30 MiB), and 20 MiB of
        activations during a training step."""

        def __init__(self, *args: Any) -> None:
            memory["allocated"] += 30 * mib
            self.model = nn.Identity()

        def train(self) -> None:
            memory["peak"] = max(memory["peak"], memory["allocated"] + 20 * mib)

        def infer(self) -> None:
            pass

    for name, fake in {
        "synchronize": lambda device=None: None,
        "reset_peak_memory_stats": reset_peak,
        "memory_allocated": lambda device=None: memory["allocated"],
        "max_memory_allocated": lambda device=None: memory["peak"],
    }.items():
        monkeypatch.setattr(torch.cuda, name, fake)
    monkeypatch.setattr(speed_module, "SpeedSteps", Steps)
    monkeypatch.setattr(speed_module, "_images_per_s", lambda step, batch, device: 1.0)
    speed = measure_speed(tiny_model(), VariantConfig(), "cuda")
    assert speed["peak_memory_mb"] == pytest.approx(50.0)


def test_speed_steps_train_a_copy_with_the_runs_optimizer() -> None:
    """The measured steps train a copy with the run's optimiser and learning rate on a random
    batch of `throughput_batch` images with labels below `num_classes`, without CPU autocast."""
    model = tiny_model()
    config = VariantConfig(optimizer="adamw", lr=0.01, weight_decay=0.2, throughput_batch=8)
    steps = SpeedSteps(model, config, torch.device("cpu"), (3, 8, 8), 4)
    assert isinstance(steps.optimizer, torch.optim.AdamW)
    assert (steps.optimizer.defaults["lr"], steps.optimizer.defaults["weight_decay"]) == (0.01, 0.2)
    copied = {id(p) for p in steps.model.parameters()}
    assert {id(p) for group in steps.optimizer.param_groups for p in group["params"]} == copied
    assert copied.isdisjoint(id(p) for p in model.parameters())
    assert steps.x.shape == (8, 3, 8, 8) and steps.y.shape == (8,)
    assert int(steps.y.min()) >= 0 and int(steps.y.max()) < 4
    assert steps.amp is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_uses_bf16_autocast_and_channels_last():
    cpu = learnable_splits()
    splits = Splits(*(t.cuda() for t in cpu[:4]), cpu.num_classes)
    model = tiny_model()
    seen = []
    model[0].register_forward_hook(lambda m, i, out: seen.append((i[0], out.dtype)))
    result = train(model, splits, VariantConfig(epochs=4, batch_size=32), "cuda")
    assert result.final_loss < 0.5 * result.losses[0]
    inputs, out_dtype = seen[-1]
    assert out_dtype == torch.bfloat16
    assert inputs.is_contiguous(memory_format=torch.channels_last)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    speed = measure_speed(model, VariantConfig(), "cuda", image_shape=(3, 8, 8), num_classes=4)
    assert speed["peak_memory_mb"] > 0
    # 256 MiB an earlier run left in a reference cycle are not this run's peak
    garbage: list = [torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")]
    garbage.append(garbage)
    gc.collect()  # it survives into the oldest generation, which young collections leave
    del garbage
    again = measure_speed(model, VariantConfig(), "cuda", image_shape=(3, 8, 8), num_classes=4)
    assert again["peak_memory_mb"] < speed["peak_memory_mb"] + 64


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_memory_leaves_out_what_the_device_held_before():
    """512 MiB on the device before the speed is measured (a run's training set) are not the
    training step's."""
    model = tiny_model().cuda()
    alone = measure_speed(model, VariantConfig(), "cuda", image_shape=(3, 8, 8), num_classes=4)
    data = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
    held = measure_speed(model, VariantConfig(), "cuda", image_shape=(3, 8, 8), num_classes=4)
    del data
    assert 0 < held["peak_memory_mb"] < alone["peak_memory_mb"] + 64
