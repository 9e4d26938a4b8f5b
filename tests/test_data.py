"""Datasets: the synthetic set, the CIFAR-10 readers (both formats), image folders and
augmentation."""

from __future__ import annotations

import math
import os
import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import write_image
from PIL import Image

from ablate.data import augment, load_dataset, synthetic
from ablate.data.augment import crop_padding
from ablate.data.cifar10 import read_cifar10
from ablate.data.folder import index_image_folder, read_images
from ablate.data.synthetic import NUM_CLASSES, make_synthetic

# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_seeds_and_splits_differ():
    x, y = make_synthetic(30, seed=3, split="train")
    x2, y2 = make_synthetic(30, seed=3, split="train")
    assert torch.equal(x, x2) and torch.equal(y, y2)
    other_seed, _ = make_synthetic(30, seed=4, split="train")
    test_split, _ = make_synthetic(30, seed=3, split="test")
    assert (x - other_seed).abs().mean() > 0.1
    assert (x - test_split).abs().mean() > 0.1


def test_synthetic_smaller_set_is_a_prefix_of_a_larger_one():
    x, y = make_synthetic(25, seed=1, split="test")
    x_small, y_small = make_synthetic(12, seed=1, split="test")
    assert torch.equal(x[:12], x_small) and torch.equal(y[:12], y_small)


@pytest.mark.parametrize("n", [10, 37, 60])
def test_synthetic_labels_are_balanced(n):
    _, y = make_synthetic(n, seed=0, split="train")
    counts = torch.bincount(y, minlength=NUM_CLASSES)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n


def test_synthetic_shapes_dtypes_and_range():
    x, y = make_synthetic(7, seed=0, split="train")
    assert x.shape == (7, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.shape == (7,) and y.dtype == torch.int64
    assert torch.isfinite(x).all() and x.min() >= -0.5 and x.max() <= 1.5


def _position_spread(x: torch.Tensor, y: torch.Tensor) -> float:
    """How far the per-class mean images are from flat, in units of their sampling noise."""
    grey = x.mean(dim=1)
    ratios = []
    for label in range(NUM_CLASSES):
        members = grey[y == label]
        class_mean = members.mean(dim=0)
        noise = members.std(dim=0).mean() / len(members) ** 0.5
        ratios.append((class_mean.std() / noise).item())
    return max(ratios)


def test_synthetic_position_carries_no_label_information():
    x, y = make_synthetic(600, seed=5, split="train")
    # a per-class mean image is flat up to sampling noise when positions are uniform
    assert _position_spread(x, y) < 1.6
    # the statistic does see position: darken one quadrant for half the classes
    leaky = x.clone()
    leaky[y < 5, :, :16, :16] -= 0.3
    assert _position_spread(leaky, y) > 3


def test_synthetic_label_is_the_stripes_orientation_and_period_band(monkeypatch):
    """Class = band · 5 + orientation: measured from the spectrum of noise-free 128-pixel
    images whose object (a disc) fills the frame, so that only its stripes are seen."""
    monkeypatch.setattr(synthetic, "IMAGE_SIZE", 128)
    monkeypatch.setattr(synthetic, "NOISE_AMPLITUDE", 0.0)
    monkeypatch.setattr(synthetic, "SHAPES", ("disc",))
    monkeypatch.setattr(synthetic, "RADIUS_RANGE", (200.0, 200.0))
    x, y = make_synthetic(40, seed=0, split="train")
    side = x.shape[-1]
    freqs = torch.fft.fftfreq(side)
    fy, fx = torch.meshgrid(freqs, freqs, indexing="ij")
    spectrum = torch.fft.fft2(x[:, 0]).abs()
    spectrum[:, fy.hypot(fx) < 1 / 8] = 0  # the mean, and the seam where the frame wraps
    peaks = spectrum.flatten(1).argmax(1)
    for peak, label in zip(peaks.tolist(), y.tolist(), strict=True):
        # the stripes run across their wave vector
        period = 1 / fy.flatten()[peak].hypot(fx.flatten()[peak]).item()
        run = math.degrees(math.atan2(fy.flatten()[peak], fx.flatten()[peak])) + 90
        band, angle = divmod(label, 5)
        low, high = ((2.0, 2.8), (3.6, 5.6))[band]
        assert 0.95 * low <= period <= 1.05 * high, (label, period)
        assert abs((run - 36 * angle + 90) % 180 - 90) <= 12, (label, run)  # ±10° jitter


def test_load_synthetic_is_normalised_and_on_device():
    splits = load_dataset("synthetic", train_size=40, test_size=20, seed=2, device="cpu")
    assert splits.train_x.shape == (40, 3, 32, 32) and splits.test_x.shape == (20, 3, 32, 32)
    assert splits.train_y.dtype == torch.int64 and splits.test_x.dtype == torch.float32
    mean = splits.train_x.mean(dim=(0, 2, 3))
    std = splits.train_x.std(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-4, rtol=0)
    # the test split takes the training split's statistics, not its own
    raw_train, _ = make_synthetic(40, seed=2, split="train")
    raw_test, _ = make_synthetic(20, seed=2, split="test")
    raw_mean = raw_train.mean(dim=(0, 2, 3), keepdim=True)
    raw_std = raw_train.std(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(splits.test_x, (raw_test - raw_mean) / raw_std)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "mnist"}, "dataset"),
        ({"train_size": 0}, "train_size"),
        ({"test_size": -1}, "test_size"),
    ],
)
def test_load_dataset_rejects_bad_arguments(kwargs, field):
    arguments = {"name": "synthetic", "train_size": 10, "test_size": 10, "seed": 0}
    arguments.update(kwargs)
    name = arguments.pop("name")
    with pytest.raises(ValueError, match=field):
        load_dataset(name, device="cpu", **arguments)


def test_synthetic_every_block_of_ten_images_holds_each_class_once_in_its_own_order():
    """Not only balanced overall: any ten consecutive images from a multiple of ten on hold every
    class, so a prefix of any length is as balanced as it can be; the blocks' orders differ."""
    _, y = make_synthetic(60, seed=2, split="test")
    blocks = y.view(6, NUM_CLASSES)
    for block in blocks:
        assert sorted(block.tolist()) == list(range(NUM_CLASSES))
    assert len({tuple(block.tolist()) for block in blocks}) == 6


@pytest.mark.parametrize(("n", "split", "error"), [
    (-1, "train", "n must be a non-negative int, got -1"),
    (3.0, "train", "n must be a non-negative int, got 3.0"),
    (3, "val", "split must be one of ('train', 'test'), got 'val'"),
])  # fmt: skip
def test_synthetic_refuses_a_bad_count_or_split(n, split, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        make_synthetic(n, seed=0, split=split)


def test_synthetic_of_no_images_is_empty_and_shaped():
    x, y = make_synthetic(0, seed=0, split="train", device=torch.device("cpu"))
    assert x.shape == (0, 3, 32, 32) and y.shape == (0,) and y.dtype == torch.int64


def test_synthetic_rendered_in_small_batches_is_the_same_set(monkeypatch):
    """The batch size bounds memory only: each image is drawn from its own row of parameters,
    its own label and its own noise key, wherever a batch starts."""
    x, y = make_synthetic(11, seed=4, split="train")
    monkeypatch.setattr(synthetic, "RENDER_BATCH", 3)
    x_small, y_small = make_synthetic(11, seed=4, split="train")
    assert torch.equal(x, x_small) and torch.equal(y, y_small)


def _noise_keys_of(monkeypatch) -> list[torch.Tensor]:
    """Record the noise keys each render of `make_synthetic` hashes."""
    keys, hash_uniform = [], synthetic._hash_uniform

    def recording(batch_keys, shape):
        keys.append(batch_keys.clone())
        return hash_uniform(batch_keys, shape)

    monkeypatch.setattr(synthetic, "_hash_uniform", recording)
    return keys


def test_synthetic_labels_and_noise_keep_their_draws_when_images_take_more_parameters(monkeypatch):
    """Drawing more parameters per image (a new kind of clutter) changes the pictures but leaves
    every image's label and pixel noise as they were."""
    keys = _noise_keys_of(monkeypatch)
    x, y = make_synthetic(20, seed=6, split="train")
    monkeypatch.setattr(synthetic, "_N_PARAMS", synthetic._N_PARAMS + 3)
    x_more, y_more = make_synthetic(20, seed=6, split="train")
    assert not torch.equal(x, x_more)  # the parameters of image 1 on did move
    assert torch.equal(y, y_more)
    assert len(keys) == 2 and torch.equal(keys[0], keys[1])


@pytest.mark.parametrize("stream", ["params", "labels", "noise"])
def test_synthetic_parameters_labels_and_noise_each_draw_from_their_own_stream(monkeypatch, stream):
    """Another seed for one stream changes only what that stream draws: the scene's parameters,
    the label order, or the noise keys (then the images differ by the noise alone)."""
    keys = _noise_keys_of(monkeypatch)
    x, y = make_synthetic(20, seed=6, split="train")
    generator = synthetic._generator
    monkeypatch.setattr(synthetic, "_generator", lambda seed, split, name:
                        generator(seed + (name == stream), split, name))  # fmt: skip
    x_other, y_other = make_synthetic(20, seed=6, split="train")
    assert torch.equal(y, y_other) == (stream != "labels")
    assert torch.equal(keys[0], keys[1]) == (stream != "noise")
    assert not torch.equal(x, x_other)
    assert ((x - x_other).abs().max() <= 0.3 + 1e-6) == (stream == "noise")


def test_synthetic_streams_differ_in_the_seeds_high_word_split_and_name():
    """Each of (seed, split, stream) selects its own stream: seeds 2**32 apart, the two splits
    and the three streams all draw differently, and the same triple draws the same again."""

    def draws(seed, split, stream):
        return torch.rand(8, generator=synthetic._generator(seed, split, stream))

    first = draws(5, "train", "params")
    assert torch.equal(first, draws(5, "train", "params"))
    others = [
        draws(5 + 2**32, "train", "params"),
        draws(5, "test", "params"),
        draws(5, "train", "noise"),
        draws(5, "train", "labels"),
        draws(6, "train", "params"),
    ]
    for other in others:
        assert not torch.equal(first, other)
    x, _ = make_synthetic(4, seed=5, split="train")
    x_high, _ = make_synthetic(4, seed=5 + 2**32, split="train")
    assert (x - x_high).abs().mean() > 0.1


def _reference_hash(key: int, pixel: int) -> int:
    """The noise hash in unbounded Python integers, each step reduced to 32 bits."""
    x = (key * 0x61C88647 + pixel) % 2**32
    for multiplier in (0x7FEB352D, 0x046CA68B):
        x ^= x >> 16
        x = x * multiplier % 2**32
    return x ^ (x >> 15)


def test_hash_noise_is_the_32_bit_hash_ten_bits_per_channel_even_for_the_largest_key():
    """int64 arithmetic gives the bits of the unbounded computation (no overflow, so every
    device agrees), also for the largest key; channel c takes bits 10c to 10c + 9."""
    keys = torch.tensor([0, 1, 123456789, 2**32 - 1])
    noise = synthetic._hash_uniform(keys, (4, 3, 5, 7))
    for n, key in enumerate(keys.tolist()):
        for pixel in (0, 1, 17, 34):
            bits = _reference_hash(key, pixel)
            row, column = divmod(pixel, 7)
            expected = [(bits >> (10 * c) & 1023) / 1024 for c in range(3)]
            assert noise[n, :, row, column].tolist() == expected, (key, pixel)


def test_hash_noise_belongs_to_its_key_and_covers_zero_to_one():
    """An image's noise follows its key, not its place in the batch; other keys, pixels and
    channels get other values; levels are the 1024 multiples of 1/1024 in [0, 1), all used."""
    keys = torch.tensor([7, 8, 9, 7])
    noise = synthetic._hash_uniform(keys, (4, 3, 32, 32))
    assert torch.equal(noise[0], noise[3])
    assert torch.equal(synthetic._hash_uniform(keys.flip(0), (4, 3, 32, 32)), noise.flip(0))
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[1], noise[2])
    assert not torch.equal(noise[0, 0], noise[0, 1]) and noise[0, 0].unique().numel() > 500
    many = synthetic._hash_uniform(torch.arange(64), (64, 3, 32, 32))
    levels = many * 1024
    assert torch.equal(levels, levels.round()) and many.min() >= 0 and many.max() < 1
    assert levels.long().unique().numel() == 1024
    assert abs(many.mean().item() - 0.5) < 0.01 and abs(many.var().item() - 1 / 12) < 0.002


def test_synthetic_pixel_noise_is_uniform_within_its_amplitude(monkeypatch):
    """The noise added to the rendered scene spans [-0.15, 0.15], centred on zero."""
    x, _ = make_synthetic(6, seed=1, split="test")
    monkeypatch.setattr(synthetic, "NOISE_AMPLITUDE", 0.0)
    clean, _ = make_synthetic(6, seed=1, split="test")
    noise = x - clean
    assert noise.abs().max() <= 0.15 + 1e-6 and noise.abs().max() > 0.14
    assert abs(noise.mean().item()) < 0.01
    assert abs(noise.std().item() - 0.15 / 3**0.5) < 0.005


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_synthetic_is_the_same_on_cuda_and_cpu():
    x_cpu, y_cpu = make_synthetic(200, seed=9, split="train")
    x_gpu, y_gpu = make_synthetic(200, seed=9, split="train", device="cuda")
    assert torch.equal(y_cpu, y_gpu.cpu())
    # hard edges may flip a pixel where float rounding differs between devices
    assert ((x_cpu - x_gpu.cpu()).abs() > 1e-4).float().mean() < 1e-3


# ---------------------------------------------------------------- CIFAR-10 readers

PER_BATCH = 3  # images per fake batch


def _fake_batches(seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: (
            rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            rng.integers(0, 10, PER_BATCH).tolist(),
        )
        for name in names
    }


def _write_python(folder, batches, protocol=2):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"x.png"] * len(labels),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))


def _write_binary(folder, batches):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def _expected(batches, names):
    images = np.concatenate([batches[n][0] for n in names]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([batches[n][1] for n in names])
    return images, labels


@pytest.mark.parametrize("protocol", [2, 5])
def test_reads_python_batches_from_parent_or_folder(tmp_path, protocol):
    batches = _fake_batches()
    _write_python(tmp_path / "cifar-10-batches-py", batches, protocol)
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    for data_dir in (tmp_path, tmp_path / "cifar-10-batches-py"):
        read = read_cifar10(data_dir)
        images, labels = _expected(batches, train_names)
        np.testing.assert_array_equal(read.train[0], images)
        np.testing.assert_array_equal(read.train[1], labels)
        np.testing.assert_array_equal(read.test[0], _expected(batches, ["test_batch"])[0])
        assert read.train[1].dtype == np.int64


def test_binary_and_python_batches_agree(tmp_path):
    batches = _fake_batches(1)
    _write_python(tmp_path / "py" / "cifar-10-batches-py", batches)
    _write_binary(tmp_path / "bin" / "cifar-10-batches-bin", batches)
    from_python = read_cifar10(tmp_path / "py")
    for data_dir in (tmp_path / "bin", tmp_path / "bin" / "cifar-10-batches-bin"):
        from_binary = read_cifar10(data_dir)
        for a, b in zip(
            from_python.train + from_python.test, from_binary.train + from_binary.test, strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_missing_file_is_named(tmp_path):
    _write_binary(tmp_path / "cifar-10-batches-bin", _fake_batches())
    (tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_4\.bin"):
        read_cifar10(tmp_path)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        read_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_cifar10(tmp_path / "nowhere")


def test_truncated_binary_batch_is_rejected(tmp_path):
    _write_binary(tmp_path / "cifar-10-batches-bin", _fake_batches())
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"test_batch\.bin"):
        read_cifar10(tmp_path)


class _RunsCode:
    """A pickle payload that would run a shell command when loaded by a plain unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    batches = _fake_batches()
    folder = tmp_path / "cifar-10-batches-py"
    _write_python(folder, batches)
    marker = tmp_path / "pwned"
    payload = {b"data": batches["test_batch"][0], b"labels": _RunsCode(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match=r"not a readable CIFAR-10 python batch.*system"):
        read_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage", [lambda raw: raw[: len(raw) // 2], lambda raw: b"", lambda raw: b"<html>oops"]
)
def test_a_damaged_python_batch_is_named(tmp_path, damage):
    """Cut short, empty, or an error page saved in its place: the file is named (a bare
    unpickler error had named none), as a ValueError, which a study counts as a point that
    cannot be built rather than a passing failure."""
    folder = tmp_path / "cifar-10-batches-py"
    _write_python(folder, _fake_batches())
    path = folder / "data_batch_2"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=f"'{path}' is not a readable CIFAR-10 python batch"):
        read_cifar10(tmp_path)


def test_the_folder_with_the_batches_is_found_and_an_archive_is_named(tmp_path, monkeypatch):
    """An empty python folder beside a full binary one, `~` in data_dir, and an archive not
    yet extracted."""
    _write_binary(tmp_path / "cifar-10-batches-bin", _fake_batches())
    (tmp_path / "cifar-10-batches-py").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    images, _ = read_cifar10(f"~/{tmp_path.name}").test
    assert images.shape[1:] == (3, 32, 32)
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="extract the archive first: tar -xzf cifar-10-py"):
        read_cifar10(packed)


@pytest.mark.parametrize("write", [_write_python, _write_binary])
def test_batch_files_are_read_from_a_folder_of_any_name(tmp_path, write):
    batches = _fake_batches(3)
    write(tmp_path / "downloads", batches)
    read = read_cifar10(tmp_path / "downloads")
    np.testing.assert_array_equal(read.test[0], _expected(batches, ["test_batch"])[0])


def test_a_batches_folder_given_itself_names_its_missing_first_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    _write_binary(folder, _fake_batches())
    (folder / "data_batch_1.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin' is missing"):
        read_cifar10(folder)


@pytest.mark.parametrize(
    ("records", "fragment"),
    [
        (b"", "data_batch_3.bin' holds 0 bytes, not a whole number of 3073-byte CIFAR-10 records"),
        (bytes([10]) + bytes(3072), "data_batch_3.bin': labels must lie in 0..9"),
    ],
)
def test_an_empty_binary_batch_or_a_label_over_9_is_refused(tmp_path, records, fragment):
    _write_binary(tmp_path / "cifar-10-batches-bin", _fake_batches())
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").write_bytes(records)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        read_cifar10(tmp_path)


PIXELS = np.zeros((3, 3072), dtype=np.uint8)


@pytest.mark.parametrize(
    ("batch", "fragment"),
    [
        ([PIXELS, [0, 1, 2]], "holds a list, not a CIFAR-10 dict"),
        ({b"data": PIXELS}, "lacks the CIFAR-10 keys ['labels']"),
        ({b"data": PIXELS.astype(np.int64), b"labels": [0, 1, 2]}, "'data' must be a uint8 array"),
        ({b"data": PIXELS.tolist(), b"labels": [0, 1, 2]}, "'data' must be a uint8 array"),
        ({b"data": PIXELS, b"labels": np.zeros(3, dtype=np.int64)}, "'labels' must be a list"),
        ({b"data": PIXELS, b"labels": [0, 1.0, 2]}, "'labels' must be a list of ints"),
        ({b"data": PIXELS, b"labels": [0, 1]}, "expected N rows of 3072 pixels and N labels"),
        ({b"data": PIXELS[:, 1:], b"labels": [0, 1, 2]}, "expected N rows of 3072 pixels"),
        ({b"data": PIXELS.ravel(), b"labels": [0, 1, 2]}, "expected N rows of 3072 pixels"),
        ({b"data": PIXELS, b"labels": [0, -1, 2]}, "labels must lie in 0..9"),
        ({b"data": PIXELS, b"labels": [0, 10, 2]}, "labels must lie in 0..9"),
    ],
)
def test_a_python_batch_of_the_wrong_content_is_named(tmp_path, batch, fragment):
    folder = tmp_path / "cifar-10-batches-py"
    _write_python(folder, _fake_batches())
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'test_batch'}'") + ".*"
                       + re.escape(fragment)):  # fmt: skip
        read_cifar10(tmp_path)

def test_load_cifar10_takes_a_seeded_subset_with_labels_paired(tmp_path):
    batches = _fake_batches(2)
    # each image is flat grey 20·label + k (k < 20 distinct), so its pixels name its label
    for index, (data, labels) in enumerate(batches.values()):
        for row, label in enumerate(labels):
            data[row] = 20 * label + 3 * index + row
    _write_binary(tmp_path / "cifar-10-batches-bin", batches)
    load = dict(test_size=2, seed=0, device="cpu", data_dir=tmp_path)
    splits = load_dataset("cifar10", train_size=7, **load)
    assert splits.train_x.shape == (7, 3, 32, 32) and splits.test_x.shape == (2, 3, 32, 32)
    assert splits.train_y.dtype == torch.int64 and splits.train_x.dtype == torch.float32
    assert torch.equal(splits.train_x, load_dataset("cifar10", train_size=7, **load).train_x)
    assert not torch.equal(
        splits.train_y, load_dataset("cifar10", train_size=7, **{**load, "seed": 1}).train_y
    )
    zeros = torch.zeros(3)
    torch.testing.assert_close(splits.train_x.mean(dim=(0, 2, 3)), zeros, atol=1e-5, rtol=0)
    # normalisation is monotonic, so sorting by brightness must sort the labels too
    order = splits.train_x.mean(dim=(1, 2, 3)).argsort()
    labels = splits.train_y[order]
    assert (labels[1:] >= labels[:-1]).all()


def test_load_cifar10_errors(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("cifar10", train_size=1, test_size=1, seed=0, device="cpu")
    _write_binary(tmp_path / "cifar-10-batches-bin", _fake_batches())
    with pytest.raises(ValueError, match="train_size=16"):
        load_dataset("cifar10", train_size=16, test_size=1, seed=0, device="cpu", data_dir=tmp_path)


# ---------------------------------------------------------------- augmentation


def _crops_of(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop of `image` padded by `pad`, and its mirror: what augment may return for it."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    crops = []
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[:, top : top + h, left : left + w]
            crops += [crop, crop.flip(-1)]
    return crops


@pytest.mark.parametrize(("shape", "pad"), [((7, 5), 1), ((32, 32), 4), ((19, 43), 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_augment_returns_padded_crops_and_flips(channels_last, shape, pad):
    """Padded by an eighth of the shorter side (CIFAR's 4 at 32), at least 1; odd, non-square
    images; no pixel is 0, the padding value."""
    assert crop_padding(*shape) == pad
    x = torch.rand(16, 3, *shape) + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    flipped, offsets = [], set()
    for image, result in zip(x, out, strict=True):
        crops = _crops_of(image, pad)
        matches = [i for i, crop in enumerate(crops) if torch.equal(result, crop)]
        assert len(matches) == 1
        flipped.append(matches[0] % 2 == 1)
        offsets.add(matches[0] // 2)
    assert any(flipped) and not all(flipped)
    assert max(offsets) >= (2 * pad + 1) ** 2 // 2  # the offsets reach the far corner's half


def test_augment_is_reproducible_by_generator():
    x = torch.rand(32, 3, 8, 8)
    first = augment(x, torch.Generator().manual_seed(7))
    again = augment(x, torch.Generator().manual_seed(7))
    other = augment(x, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, x)


def test_augment_draws_every_crop_offset_alike_and_flips_half_the_images():
    """Each pixel of a 16×16 image holds its own index, so the centre pixel of a result says
    where it was cropped from and its right neighbour whether it was mirrored."""
    n, side, pad = 4000, 16, 2
    x = (1 + torch.arange(side * side, dtype=torch.float32)).view(1, 1, side, side)
    out = augment(x.expand(n, 1, side, side), torch.Generator().manual_seed(0))
    centre = out[:, 0, side // 2, side // 2].long() - 1
    step = out[:, 0, side // 2, side // 2 + 1] - out[:, 0, side // 2, side // 2]
    flipped = step == -1
    assert (flipped | (step == 1)).all()
    top = centre // side - side // 2 + pad
    left = centre % side - torch.where(flipped, side - 1 - side // 2, side // 2) + pad
    counts = torch.bincount(top * (2 * pad + 1) + left, minlength=(2 * pad + 1) ** 2)
    assert len(counts) == (2 * pad + 1) ** 2  # offsets in [0, 2·pad]² only
    share = counts / (n / len(counts))
    assert (share > 0.8).all() and (share < 1.2).all()
    assert 0.47 < flipped.float().mean() < 0.53


def test_augment_rejects_non_batches():
    with pytest.raises(ValueError, match="x must be"):
        augment(torch.rand(3, 8, 8), torch.Generator())


# ---------------------------------------------------------------- your own images (folder)


def _flat(value: int, height: int = 12, width: int = 10) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def test_image_folder_lists_classes_sorted_with_nested_images(tmp_path, image_folder):
    image_folder({"cat": (3, 2), "ant": (4, 1), "bee": (2, 0)}, test="val")
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "train" / "ant" / ".hidden" / "x.png", _flat(0))
    write_image(tmp_path / "train" / "ant" / ".skip.png", _flat(0))
    (tmp_path / "train" / "README").write_text("a file beside the class folders")
    folder = index_image_folder(tmp_path)
    assert folder.classes == ("ant", "bee", "cat")
    paths, labels = folder.train
    assert labels.tolist() == [0] * 4 + [1] * 2 + [2] * 3
    owners = [path.relative_to(tmp_path / "train").parts[0] for path in paths]
    assert owners == [folder.classes[label] for label in labels]
    assert sum(path.parent.name == "nested" for path in paths) == 2 + 1 + 1
    assert folder.test[1].tolist() == [0, 2, 2]  # bee has no test images: allowed


def test_read_images_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    # 40 wide, 20 high: red, green (the middle half), blue; shorter side to 10 keeps the green
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, :10, 0] = wide[:, 10:30, 1] = wide[:, 30:, 2] = 200
    write_image(tmp_path / "wide.png", wide)
    tall = np.transpose(wide, (1, 0, 2)).copy()  # 20 wide, 40 high: the middle rows kept
    write_image(tmp_path / "tall.png", tall)
    noise = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "exact.png", noise)
    write_image(tmp_path / "grey.png", _flat(77, 10, 10), mode="L")
    write_image(tmp_path / "rgba.png", np.dstack([_flat(5, 10, 10), _flat(9, 10, 10)[..., :1]]),
                 mode="RGBA")  # fmt: skip
    images = read_images([tmp_path / n for n in ("wide.png", "tall.png", "exact.png",
                                                 "grey.png", "rgba.png")], 10)  # fmt: skip
    assert images.shape == (5, 3, 10, 10) and images.dtype == np.uint8
    for kept in images[:2]:
        assert (kept[1, 1:-1, 1:-1] == 200).all() and (kept[[0, 2], 1:-1, 1:-1] == 0).all()
        assert kept[1].mean() > 180
    assert np.array_equal(images[2], noise.transpose(2, 0, 1))  # its size already: untouched
    assert (images[3] == 77).all() and (images[4] == 5).all()


def test_read_images_scales_high_bit_depth_greyscale(tmp_path):
    """16-bit PNGs (a microscope's, a depth map) keep their tones: Pillow's own conversion
    clipped them to near white."""
    ramp = np.linspace(0, 65535, 8 * 8).reshape(8, 8).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    (image,) = read_images([tmp_path / "deep.png"], 8)
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.array_equal(image, np.stack([expected] * 3))


def test_read_images_scales_floating_point_greyscale_from_0_to_1(tmp_path):
    """Values outside 0..1 are clipped to black and white."""
    ramp = np.linspace(0, 1, 8 * 8, dtype=np.float32).reshape(8, 8)
    expected = np.rint(ramp * 255.0).astype(np.uint8)
    ramp[0, 0], ramp[-1, -1], expected[0, 0], expected[-1, -1] = 2.0, -0.5, 255, 0
    Image.fromarray(ramp).save(tmp_path / "float.tif")  # mode F
    (image,) = read_images([tmp_path / "float.tif"], 8)
    assert np.array_equal(image, np.stack([expected] * 3))


def test_read_images_keeps_the_aspect_ratio_of_a_tall_image(tmp_path):
    """40 high, 10 wide, grey rising 5 per row: at side 5 the centre crop is rows 14..23."""
    rows = np.repeat((5 * np.arange(40, dtype=np.uint8))[:, None], 10, axis=1)
    write_image(tmp_path / "tall.png", np.dstack([rows] * 3))
    (image,) = read_images([tmp_path / "tall.png"], 5)
    np.testing.assert_allclose(image[0, :, 2], 5 * (2 * np.arange(7.5, 12.5) - 0.5), atol=4)


def test_read_images_names_an_image_over_the_decoder_limit(tmp_path, monkeypatch):
    write_image(tmp_path / "huge.png", _flat(1, 40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels: over twice the limit
    with pytest.raises(ValueError, match=r"cannot read image '.*huge\.png': Image size"):
        read_images([tmp_path / "huge.png"], 8)


def test_image_folder_prefers_test_to_val_and_reads_upper_case_suffixes(tmp_path, image_folder):
    image_folder({"a": (1, 1), "b": (1, 1)})
    write_image(tmp_path / "val" / "a" / "0.png", _flat(0))
    write_image(tmp_path / "train" / "b" / "UPPER.PNG", _flat(0))
    folder = index_image_folder(tmp_path)
    assert [path.relative_to(tmp_path).parts[0] for path in folder.test[0]] == ["test"] * 2
    assert folder.train[1].tolist() == [0, 1, 1]


def test_a_test_folder_without_images_is_refused(tmp_path, image_folder):
    image_folder({"a": (1, 0), "b": (1, 0)})
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"test' holds no images"):
        index_image_folder(tmp_path)


def test_image_folder_follows_linked_folders_once(tmp_path, image_folder):
    """A class folder's linked subfolder is read (torchvision's ImageFolder reads it); a link
    back up does not loop."""
    image_folder({"a": (2, 1), "b": (2, 1)})
    elsewhere = tmp_path / "elsewhere"
    for k in range(3):
        write_image(elsewhere / f"{k}.png", _flat(7))
    (tmp_path / "train" / "a" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "train" / "a" / "loop").symlink_to(tmp_path / "train" / "a")
    paths, labels = index_image_folder(tmp_path).train
    assert labels.tolist() == [0] * 5 + [1] * 2
    assert sum(path.parent.name == "linked" for path in paths) == 3


def test_read_images_gives_the_kept_images_again_until_a_file_changes(tmp_path):
    path = tmp_path / "a.png"
    write_image(path, _flat(10))
    first = read_images([path], 8)
    assert read_images((path,), 8) is first  # the next seed's run decodes nothing
    write_image(path, _flat(99))
    later = path.stat().st_mtime_ns + 10**9  # a clock tick may be coarser than the rewrite
    os.utime(path, ns=(later, later))
    again = read_images([path], 8)
    assert (first == 10).all() and (again == 99).all()


def test_load_folder_takes_a_seeded_subset_with_labels_paired(tmp_path, image_folder):
    image_folder({"a": (5, 2), "b": (5, 2), "c": (5, 2)})
    load = dict(test_size=4, seed=0, device="cpu", data_dir=str(tmp_path), image_size=8)
    splits = load_dataset("folder", train_size=9, **load)
    assert splits.train_x.shape == (9, 3, 8, 8) and splits.test_x.shape == (4, 3, 8, 8)
    assert splits.num_classes == 3 and splits.train_y.dtype == torch.int64
    assert torch.equal(splits.train_x, load_dataset("folder", train_size=9, **load).train_x)
    other = load_dataset("folder", train_size=9, **{**load, "seed": 1})
    assert not torch.equal(splits.train_y, other.train_y)
    torch.testing.assert_close(splits.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5,
                               rtol=0)  # fmt: skip
    # grey 40·class + small: sorting by brightness sorts the labels, in both splits
    for x, y in ((splits.train_x, splits.train_y), (splits.test_x, splits.test_y)):
        labels = y[x.mean(dim=(1, 2, 3)).argsort()]
        assert (labels[1:] >= labels[:-1]).all()


@pytest.mark.parametrize(
    ("damage", "error", "fragment"),
    [
        ("no_train", FileNotFoundError, "no train/ folder"),
        ("no_test", FileNotFoundError, "no test/ or val/ folder"),
        ("empty_class", FileNotFoundError, "train/b' holds no images"),
        ("unknown_test_class", ValueError, "['z']"),
        ("broken_image", ValueError, "cannot read image"),
        ("too_many", ValueError, "train_size=7 exceeds the 6 training images"),
        ("no_data_dir", ValueError, "needs data_dir"),
        ("missing_data_dir", FileNotFoundError, "is not a folder"),
        ("one_class", ValueError, "holds one class folder, 'a': a classifier needs two"),
    ],
)
def test_load_folder_errors_name_the_problem(tmp_path, image_folder, damage, error, fragment):
    image_folder({"a": (3, 1), "b": (3, 1)})
    arguments = dict(train_size=6, test_size=2, seed=0, device="cpu", data_dir=str(tmp_path),
                     image_size=8)  # fmt: skip
    if damage == "no_train":
        (tmp_path / "train").rename(tmp_path / "training")
    elif damage == "no_test":
        (tmp_path / "test").rename(tmp_path / "testing")
    elif damage == "empty_class":
        for path in (tmp_path / "train" / "b").rglob("*.*"):
            path.unlink()
    elif damage == "unknown_test_class":
        write_image(tmp_path / "test" / "z" / "0.png", _flat(0))
    elif damage == "broken_image":
        (tmp_path / "train" / "a" / "0.png").write_bytes(b"not a png")
    elif damage == "too_many":
        arguments["train_size"] = 7
    elif damage == "no_data_dir":
        arguments["data_dir"] = None
    elif damage == "one_class":
        shutil.rmtree(tmp_path / "train" / "b")
        shutil.rmtree(tmp_path / "test" / "b")
    else:
        arguments["data_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(error, match=re.escape(fragment)):
        load_dataset("folder", **arguments)


def test_image_size_is_refused_for_32_pixel_datasets():
    with pytest.raises(ValueError, match="image_size=64 needs dataset 'folder'"):
        load_dataset("synthetic", train_size=1, test_size=1, seed=0, device="cpu", image_size=64)
