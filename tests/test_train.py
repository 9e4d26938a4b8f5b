"""The short-run trainer on tiny models and random data: budget, optimisers, seeding, divergence."""

import gc
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import ablate.train as train_module
from ablate.data import Splits
from ablate.metrics import accuracy
from ablate.speed import measure_speed
from ablate.train import (
    TrainingDiverged,
    budget_steps,
    make_optimizer,
    make_schedule,
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
    with pytest.raises(TrainingDiverged, match=r"at step \d+ of 50 \(lr=1e\+12, [\d.e+]+ at"):
        train(tiny_model(), learnable_splits(), config, "cpu")


def test_optimizer_and_schedule_follow_the_config():
    model = tiny_model()
    sgd = make_optimizer(model, VariantConfig(lr=0.2, momentum=0.8, weight_decay=1e-3))
    assert isinstance(sgd, torch.optim.SGD)
    settings = {k: sgd.defaults[k] for k in ("lr", "momentum", "nesterov", "weight_decay")}
    assert settings == {"lr": 0.2, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3}
    assert not make_optimizer(model, VariantConfig(momentum=0)).defaults["nesterov"]
    assert isinstance(make_optimizer(model, VariantConfig(optimizer="adamw")), torch.optim.AdamW)

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


def test_training_rejects_mismatched_splits():
    x = torch.randn(8, 3, 8, 8)
    splits = Splits(x, torch.zeros(5, dtype=torch.long), x, torch.zeros(8, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="8 images and 5 labels"):
        train(tiny_model(), splits, VariantConfig(steps=1), "cpu")


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
