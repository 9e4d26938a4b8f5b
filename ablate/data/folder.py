"""`folder`: your own images, one folder per class, laid out as torchvision's ImageFolder reads.

    data_dir/train/<class>/**/<image>     (any depth below the class folder, links followed)
    data_dir/test/<class>/**/<image>      (or data_dir/val/)

The classes are the train folder's subfolders in sorted order (label i is the i-th name, two
classes at least), so the labels do not depend on the files present; a test class that is not
among them is an error, a class without test images is not. Images in any format Pillow reads
(IMAGE_SUFFIXES) are decoded when a run asks for them, converted to RGB (16-bit greyscale
scaled to 8 bits), their shorter side resized to `image_size`
(bilinear, antialiased when it shrinks) and their centre cropped to a square: N×3×S×S uint8.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

TRAIN_FOLDER = "train"
TEST_FOLDERS = ("test", "val")
READ_THREADS = 8  # decoding threads at most
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = (
    "expected data_dir/train/<class>/<images> and data_dir/test/<class>/<images> (or val/), "
    f"images ending in {', '.join(IMAGE_SUFFIXES)}"
)


class ImageFolder(NamedTuple):
    """The class names and, per split, each image's path and label (nothing decoded yet)."""

    classes: tuple[str, ...]
    train: tuple[tuple[Path, ...], np.ndarray]
    test: tuple[tuple[Path, ...], np.ndarray]


def index_image_folder(data_dir: str | Path) -> ImageFolder:
    """List the images under `data_dir`'s train and test (or val) folders, by class."""
    train_dir, test_dir, classes = folder_layout(data_dir)
    train = _split(train_dir, classes, require_each=True)
    test = _split(test_dir, classes, require_each=False)
    if not test[0]:
        raise FileNotFoundError(f"{str(test_dir)!r} holds no images: {LAYOUT}")
    return ImageFolder(classes, train, test)


def folder_layout(data_dir: str | Path) -> tuple[Path, Path, tuple[str, ...]]:
    """`data_dir`'s train and test (or val) folders and its classes (the train folder's
    subfolders), checked without listing their images."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder data_dir {str(root)!r} is not a folder: {LAYOUT}")
    train_dir = root / TRAIN_FOLDER
    test_dir = next((root / name for name in TEST_FOLDERS if (root / name).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        missing = "train/" if not train_dir.is_dir() else "test/ or val/"
        raise FileNotFoundError(f"data_dir {str(root)!r} has no {missing} folder: {LAYOUT}")
    classes = tuple(sorted(p.name for p in train_dir.iterdir() if _visible_folder(p)))
    if not classes:
        raise FileNotFoundError(f"{str(train_dir)!r} holds no class folders: {LAYOUT}")
    if len(classes) == 1:
        raise ValueError(
            f"{str(train_dir)!r} holds one class folder, {classes[0]!r}: a classifier needs two "
            f"or more ({LAYOUT})"
        )
    tested = {p.name for p in test_dir.iterdir() if _visible_folder(p)}
    if not tested:
        raise FileNotFoundError(f"{str(test_dir)!r} holds no class folders: {LAYOUT}")
    unknown = sorted(tested - set(classes))
    if unknown:
        raise ValueError(
            f"{str(test_dir)!r} has classes the train folder lacks: {unknown}; every test class "
            f"must be one of the train folder's {list(classes)}"
        )
    return train_dir, test_dir, classes


def read_images(paths: tuple[Path, ...] | list[Path], image_size: int) -> np.ndarray:
    """Decode `paths` as RGB, shorter side resized to `image_size`, centre square cropped:
    uint8 N×3×S×S (do not modify it).

    The last two results (a run's train and test images) are kept and given again while the
    files are unchanged: a worker runs each design point once per seed, mostly on the same
    images.
    """
    paths = tuple(paths)
    return _decoded(paths, image_size, tuple(path.stat().st_mtime_ns for path in paths))


@functools.lru_cache(maxsize=2)
def _decoded(paths: tuple[Path, ...], image_size: int, stamps: tuple[int, ...]) -> np.ndarray:
    """read_images' work; `stamps` (the files' modification times) only key the cache.
    Pillow decodes and resizes without the GIL, so threads share the work."""
    images = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)

    def read(index: int) -> None:
        path = paths[index]
        try:
            with Image.open(path) as image:
                square = _centre_square(_as_rgb(image), image_size)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
            raise ValueError(f"cannot read image {str(path)!r}: {err}") from err
        images[index] = np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)

    with ThreadPoolExecutor(min(READ_THREADS, os.cpu_count() or 1)) as pool:
        list(pool.map(read, range(len(paths))))  # re-raises the first error
    return images


def _as_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB. 16-bit greyscale (PNG, TIFF; Pillow's modes I;16 and I) is scaled
    from 0..65535 and floating-point greyscale (F) from 0..1, where Pillow's conversion would
    clip them to 255 (a near-white image)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        top = 1.0 if image.mode == "F" else 65535.0
        scaled = np.clip(np.asarray(image, dtype=np.float64) * (255.0 / top), 0, 255)
        return Image.fromarray(np.rint(scaled).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _centre_square(image: Image.Image, size: int) -> Image.Image:
    """`image` with its shorter side resized to `size`, cropped to the centre size × size."""
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _split(
    folder: Path, classes: tuple[str, ...], *, require_each: bool
) -> tuple[tuple[Path, ...], np.ndarray]:
    """Every image below `folder`/<class>, in a fixed order, with its class's label."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        found = sorted(_images(class_dir)) if class_dir.is_dir() else []
        if require_each and not found:
            raise FileNotFoundError(f"class folder {str(class_dir)!r} holds no images: {LAYOUT}")
        paths.extend(found)
        labels.extend([label] * len(found))
    return tuple(paths), np.asarray(labels, dtype=np.int64)


def _images(folder: Path) -> Iterator[Path]:
    """The image files below `folder`, hidden files and folders left out; linked folders are
    followed (as torchvision's ImageFolder does), each real folder once."""
    seen: set[str] = set()
    for here, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a link back up, or a second link to one folder
            folders.clear()
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if not name.startswith("."))  # (which
        # of two links to one folder is kept does not depend on the listing order)
        for name in files:
            path = Path(here, name)
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if path.is_file():  # not a broken link
                yield path


def _visible_folder(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".")
