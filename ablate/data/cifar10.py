"""Read the standard CIFAR-10 files from a local folder, in either official format.

- python version: `cifar-10-batches-py/data_batch_1..5` and `test_batch`, pickled dicts with
  `data` (N×3072 uint8, channel-major rows) and `labels`. They are read through an unpickler
  that resolves only the few globals a numpy array needs, so a tampered file cannot run code.
- binary version: `cifar-10-batches-bin/data_batch_1.bin..5.bin` and `test_batch.bin`, records
  of 1 label byte followed by 3072 pixel bytes.

`data_dir` may be either folder or the folder that holds them.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

PY_FOLDER = "cifar-10-batches-py"
BIN_FOLDER = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
BATCH_IMAGES = 10_000  # images in each batch file
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32


class Cifar10(NamedTuple):
    """Both splits as (images uint8 N×3×32×32, labels int64 N) numpy pairs."""

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def read_cifar10(data_dir: str | Path) -> Cifar10:
    """Read all training and test batches under `data_dir` (python or binary format)."""
    paths, binary = batch_files(data_dir)
    read = _read_binary_batch if binary else _read_pickled_batch
    *train, test = (read(path) for path in paths)
    return Cifar10(
        train=(np.concatenate([i for i, _ in train]), np.concatenate([y for _, y in train])),
        test=test,
    )


def batch_files(data_dir: str | Path) -> tuple[list[Path], bool]:
    """The training batches' files then the test batch's, each there, and whether they are the
    binary format: found without reading them."""
    folder, binary = _locate(data_dir)
    suffix = ".bin" if binary else ""
    return [_required(folder, name + suffix) for name in (*TRAIN_BATCHES, TEST_BATCH)], binary


def _locate(data_dir: str | Path) -> tuple[Path, bool]:
    """The folder holding the batches and whether it is the binary format."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 data_dir {str(root)!r} is not a folder")
    if root.name in (PY_FOLDER, BIN_FOLDER):
        return root, root.name == BIN_FOLDER
    folders = [(root / PY_FOLDER, False), (root / BIN_FOLDER, True)]
    for folder, binary in [*folders, (root, False), (root, True)]:  # one with batches first
        if (folder / (TRAIN_BATCHES[0] + (".bin" if binary else ""))).is_file():
            return folder, binary
    for folder, binary in folders:  # else one that lacks them: the missing file is named
        if folder.is_dir():
            return folder, binary
    archives = [p.name for p in root.glob("cifar-10-*.tar.gz")]
    raise FileNotFoundError(
        f"no CIFAR-10 batches in {str(root)!r}: expected a {PY_FOLDER}/ or {BIN_FOLDER}/ folder "
        f"there, or the batch files ({TRAIN_BATCHES[0]}, ...) themselves"
        + (f"; extract the archive first: tar -xzf {archives[0]}" if archives else "")
    )


def _required(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 file {str(path)!r} is missing")
    return path


def _read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise ValueError(
            f"{str(path)!r} holds {raw.size} bytes, not a whole number of "
            f"{RECORD_BYTES}-byte CIFAR-10 records"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    return _checked(path, records[:, 1:], records[:, 0])


def _read_pickled_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as file:
            # latin1 is how numpy arrays pickled by Python 2 (the official files) are read back
            batch = RestrictedUnpickler(file, encoding="latin1").load()
    except Exception as error:  # whatever a cut-short or foreign file makes the unpickler raise
        raise ValueError(
            f"{str(path)!r} is not a readable CIFAR-10 python batch ({type(error).__name__}: "
            f"{error}): was it cut short or replaced? Download and extract "
            "cifar-10-python.tar.gz again"
        ) from error
    if not isinstance(batch, dict):
        raise ValueError(f"{str(path)!r} holds a {type(batch).__name__}, not a CIFAR-10 dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = {"data", "labels"} - batch.keys()
    if missing:
        raise ValueError(f"{str(path)!r} lacks the CIFAR-10 keys {sorted(missing)}")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise ValueError(f"{str(path)!r}: 'data' must be a uint8 array")
    if not isinstance(labels, list) or not all(type(y) is int for y in labels):
        raise ValueError(f"{str(path)!r}: 'labels' must be a list of ints")
    return _checked(path, data, np.asarray(labels, dtype=np.int64))


def _checked(path: Path, data: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reshape flat rows to N×3×32×32 and check they match the labels, which lie in 0..9."""
    if data.ndim != 2 or data.shape[1] != np.prod(IMAGE_SHAPE) or len(data) != len(labels):
        raise ValueError(
            f"{str(path)!r}: expected N rows of {np.prod(IMAGE_SHAPE)} pixels and N labels, "
            f"got data of shape {data.shape} and {len(labels)} labels"
        )
    if labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise ValueError(f"{str(path)!r}: labels must lie in 0..{NUM_CLASSES - 1}")
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


def _numpy_core(submodule: str) -> Any:
    """numpy's private core module by its numpy 2 name, else its numpy 1 name."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


# The only globals a pickled CIFAR-10 batch refers to, under the names numpy 1 and 2 pickle them
# by (and `_codecs.encode`, how Python 3 writes bytes at pickle protocol 2).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_core("multiarray")._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_core("multiarray")._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_core("numeric")._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_core("numeric")._frombuffer,
    ("_codecs", "encode"): lambda: importlib.import_module("_codecs").encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings, numbers and numpy arrays, nothing else.

    Any other global (a function or class a pickle could call to run code) is refused with
    `pickle.UnpicklingError` before it is imported.
    """

    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR-10 batch needs only {allowed}"
            )
        return resolve()
