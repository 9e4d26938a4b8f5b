"""The datasets a variant trains on, as normalised tensors already on the training device.

`load_dataset` is the one entry point: `synthetic` (drawn by the project, the default),
`cifar10` (read from its standard files) or `folder` (your own images, one folder per class).
All come back as float32 N×3×S×S images (S = 32 for the first two, `image_size` for `folder`),
normalised per channel with the training split's mean and standard deviation, int64 labels and
the number of classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch

from ablate.data.augment import augment
from ablate.data.cifar10 import BATCH_IMAGES, TRAIN_BATCHES, batch_files, read_cifar10
from ablate.data.cifar10 import NUM_CLASSES as CIFAR10_CLASSES
from ablate.data.folder import LAYOUT, index_image_folder, read_images
from ablate.data.synthetic import NUM_CLASSES as SYNTHETIC_CLASSES
from ablate.data.synthetic import make_synthetic

Dataset = Literal["synthetic", "cifar10", "folder"]
DATASETS: tuple[str, ...] = get_args(Dataset)
NATIVE_SIZE = 32  # the side of the synthetic and CIFAR-10 images
#: What `data_dir` must hold, per dataset that reads one.
DATA_DIRS = {
    "cifar10": "a folder holding cifar-10-batches-py/ or cifar-10-batches-bin/ (or one of those "
    "folders itself)",
    "folder": LAYOUT,
}

__all__ = [
    "DATASETS",
    "DATA_DIRS",
    "NATIVE_SIZE",
    "Dataset",
    "Splits",
    "augment",
    "find_data",
    "load_dataset",
]


class Splits(NamedTuple):
    """Training and test tensors of one dataset, on one device, and its number of classes."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int


def load_dataset(
    name: str,
    *,
    train_size: int,
    test_size: int,
    seed: int,
    device: torch.device | str,
    data_dir: str | None = None,
    image_size: int = NATIVE_SIZE,
) -> Splits:
    """Load `train_size` training and `test_size` test images of dataset `name` onto `device`.

    `seed` draws the synthetic images, or picks which stored images are used (the first N of a
    seeded permutation, so a smaller set is a subset of a larger one). `data_dir` is where
    `cifar10` and `folder` read from (DATA_DIRS); `image_size` is the side `folder` images are
    brought to (the other datasets are 32×32 only).
    """
    for argument, value in (("train_size", train_size), ("test_size", test_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive int, got {value!r}")
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    check_source(name, data_dir, image_size)
    device = torch.device(device)
    sizes = (train_size, test_size)
    if name == "synthetic":
        train_x, train_y = make_synthetic(train_size, seed=seed, split="train", device=device)
        test_x, test_y = make_synthetic(test_size, seed=seed, split="test", device=device)
        num_classes = SYNTHETIC_CLASSES
    elif name == "cifar10":
        batches = read_cifar10(data_dir)
        train_x, train_y, test_x, test_y = _seeded_subsets(
            (batches.train, batches.test), sizes, seed, data_dir, device,
            lambda images, index: torch.from_numpy(images)[index],
        )  # fmt: skip
        num_classes = CIFAR10_CLASSES
    else:
        folder = index_image_folder(data_dir)
        train_x, train_y, test_x, test_y = _seeded_subsets(
            (folder.train, folder.test), sizes, seed, data_dir, device,
            lambda paths, index: torch.from_numpy(
                read_images([paths[i] for i in index.tolist()], image_size)
            ),
        )  # fmt: skip
        num_classes = len(folder.classes)
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Splits((train_x - mean) / std, train_y, (test_x - mean) / std, test_y, num_classes)


def check_source(dataset: str, data_dir: str | None, image_size: int) -> None:
    """Raise ValueError unless `dataset` has the `data_dir` it reads from (DATA_DIRS) and
    `image_size` is a positive int it can give."""
    if dataset in DATA_DIRS and data_dir is None:
        raise ValueError(f"dataset {dataset!r} needs data_dir: {DATA_DIRS[dataset]}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if dataset != "folder" and image_size != NATIVE_SIZE:
        raise ValueError(
            f"image_size={image_size} needs dataset 'folder': {dataset!r} images are "
            f"{NATIVE_SIZE}×{NATIVE_SIZE}, so leave image_size at {NATIVE_SIZE} for it"
        )


def find_data(dataset: str, data_dir: str | None, *, train_size: int, test_size: int) -> None:
    """Raise FileNotFoundError (or ValueError) unless `data_dir` has the layout `dataset` reads
    (DATA_DIRS) and `train_size` and `test_size` images in its splits, looked at without
    reading the data: a study refuses a wrong path or a small image folder before it trains,
    where each of its runs would fail on it."""
    sizes = (("train_size", train_size), ("test_size", test_size))
    if dataset == "cifar10":
        batch_files(data_dir)
        counts = (len(TRAIN_BATCHES) * BATCH_IMAGES, BATCH_IMAGES)
    elif dataset == "folder":
        folder = index_image_folder(data_dir)
        counts = (len(folder.train[1]), len(folder.test[1]))
    else:
        return
    for (split, size), count in zip(sizes, counts, strict=True):
        _check_size(split, size, count, data_dir)


def _seeded_subsets(
    splits: tuple[tuple[Sequence, np.ndarray], tuple[Sequence, np.ndarray]],
    sizes: tuple[int, int],
    seed: int,
    source: str,
    device: torch.device,
    read: Callable[[Sequence, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first N items of a seeded permutation of each (images, labels) split, the images
    as float in [0, 1] (`read` gives the uint8 images at an index) and their labels."""
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    named = zip(("train_size", "test_size"), sizes, splits, strict=True)
    for split, size, (images, labels) in named:
        _check_size(split, size, len(labels), source)
        index = torch.randperm(len(labels), generator=generator)[:size]
        tensors.append(read(images, index).to(device).float().div_(255))
        tensors.append(torch.from_numpy(labels)[index].to(device))
    return tuple(tensors)


def _check_size(split: str, size: int, count: int, source: str | None) -> None:
    """Raise ValueError if `split` (train_size or test_size) asks for more than the `count`
    images of its split in `source`."""
    if size > count:
        kind = "training" if split == "train_size" else "test"
        raise ValueError(
            f"{split}={size} exceeds the {count} {kind} images in {source}: use {split} <= {count}"
        )
