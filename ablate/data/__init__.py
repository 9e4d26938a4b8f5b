"""The datasets a variant trains on, as normalised tensors already on the training device.

`load_dataset` is the one entry point: `synthetic` (drawn by the project, the default) or
`cifar10` (read from local files). Both come back as float32 N×3×32×32 images, normalised
per channel with the training split's mean and standard deviation, and int64 labels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ablate.data.augment import augment
from ablate.data.cifar10 import read_cifar10
from ablate.data.synthetic import make_synthetic

DATASETS = ("synthetic", "cifar10")

__all__ = ["DATASETS", "Splits", "augment", "load_dataset"]


class Splits(NamedTuple):
    """Training and test tensors of one dataset, on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_dataset(
    name: str,
    *,
    train_size: int,
    test_size: int,
    seed: int,
    device: torch.device | str,
    data_dir: str | None = None,
) -> Splits:
    """Load `train_size` training and `test_size` test images of dataset `name` onto `device`.

    `seed` draws the synthetic images, or picks which CIFAR-10 images are used (the first N
    of a seeded permutation, so a smaller set is a subset of a larger one). `data_dir` is the
    CIFAR-10 folder (ignored by `synthetic`).
    """
    for argument, value in (("train_size", train_size), ("test_size", test_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive int, got {value!r}")
    device = torch.device(device)
    if name == "synthetic":
        train_x, train_y = make_synthetic(train_size, seed=seed, split="train", device=device)
        test_x, test_y = make_synthetic(test_size, seed=seed, split="test", device=device)
    elif name == "cifar10":
        train_x, train_y, test_x, test_y = _cifar10_subset(
            data_dir, train_size=train_size, test_size=test_size, seed=seed, device=device
        )
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Splits((train_x - mean) / std, train_y, (test_x - mean) / std, test_y)


def _cifar10_subset(
    data_dir: str | None, *, train_size: int, test_size: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first N images of a seeded permutation of each CIFAR-10 split, as float in [0, 1]."""
    if data_dir is None:
        raise ValueError(
            "dataset 'cifar10' needs data_dir: a folder holding cifar-10-batches-py/ or "
            "cifar-10-batches-bin/ (or one of those folders itself)"
        )
    batches = read_cifar10(data_dir)
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for split, size, (images, labels) in (
        ("train_size", train_size, batches.train),
        ("test_size", test_size, batches.test),
    ):
        if size > len(labels):
            raise ValueError(f"{split}={size} exceeds the {len(labels)} images in {data_dir}")
        index = torch.randperm(len(labels), generator=generator)[:size]
        tensors.append(torch.from_numpy(images)[index].to(device).float().div_(255))
        tensors.append(torch.from_numpy(labels)[index].to(device))
    return tuple(tensors)
