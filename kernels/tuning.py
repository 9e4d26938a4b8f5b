"""Which launch configuration a blur-pool kernel uses.

A configuration is looked up, first hit wins, in

1. the user's cache, written by ``python -m kernels.autotune``: one JSON file per GPU and Triton
   version in ``$SHIFTLAB_CACHE_DIR`` (default ``$XDG_CACHE_HOME/shiftlab``, else
   ``~/.cache/shiftlab``);
2. the table shipped for this GPU in ``kernels/tuned/<gpu-slug>.json``;
3. a heuristic (:func:`heuristic_config`).

Within a table an exact key wins; otherwise the nearest entry that can stand in for it (same
layout, stride, max kernel and element size; nearest shape buckets and filter size, see
:func:`_distance`), if it lies close enough: a tile tuned for a neighbouring problem is a better
guess than the heuristic, one tuned for a map 64 times larger is not. Tables are read once
per process; :func:`save_config` refreshes them, and writes under a lock file, so that autotune
runs sharing a cache keep each other's winners. A table that cannot be read, or its entries a
launch cannot take, are passed over with a warning that names them: a table only saves time.

How the kernels use it: a launcher builds ``key = tuning_key(x, filter_size, stride,
max_kernel=..., relu=...)`` from its input ``x`` (forward and backward alike) and calls
``launch_config(op, key)``, unless it was handed an explicit ``config`` dict with the same five
fields (the autotuner and the benchmarks pass one to time a candidate).

Under the Triton interpreter, or without CUDA, the device is called ``cpu-interpreter``
(``kernels.hardware``): no table is shipped for it and the heuristic returns one small
configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from kernels import hardware
from kernels.files import atomic_write_text, read_json
from kernels.layout import LAYOUTS, Layout, layout_of
from kernels.padding import dense_max_size

OPS: tuple[str, ...] = ("blur_pool_fwd", "blur_pool_bwd", "max_blur_pool_fwd", "max_blur_pool_bwd")
CONFIG_FIELDS: tuple[str, ...] = ("BLOCK_H", "BLOCK_W", "BLOCK_C", "num_warps", "num_stages")
#: The dtypes a tuning key may name (float64 launches too, for gradcheck).
KEY_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
CACHE_DIR_ENV = "SHIFTLAB_CACHE_DIR"
SHIPPED_DIR = Path(__file__).with_name("tuned")

# An entry stands in for a missing key only this close (see _distance): further away, e.g. a
# 32x32-map tile for a 4x4 map, the heuristic's tile clamped to the map is the better guess.
_MAX_STAND_IN_DISTANCE = 4.0
_INTERPRETER_CONFIG = {"BLOCK_H": 4, "BLOCK_W": 8, "BLOCK_C": 4, "num_warps": 1, "num_stages": 1}
_MAX_WARPS = 8
#: Bounds of a launch config from a table: a row tile Triton can hold as one tensor, a
#: program's rows, the warps of a thread block.
MAX_TILE = 1 << 16
MAX_ROWS = 1 << 10
MAX_NUM_WARPS = 32
_generation = 0  # clear_cache calls so far (lookup_state)


def thread_elements(op: str, layout: str, filter_size: int) -> int:
    """Tile elements one thread may hold before its registers, not memory, limit the kernel.

    The kernels are memory-bound, so they need many resident warps to keep enough loads in
    flight, and a thread's registers grow with its share of the row it streams. Read off
    ``python -m benchmarks.resource_usage`` (sm_90, Triton 3.6, bf16, 2×64×112×112): at these
    shares the heuristic's configs use 32–128 registers (the forwards are capped at 128),
    spill at most 8 bytes and keep 16–64 warps resident per SM; the shares of the kernels they
    replaced used up to 255 registers with spills of up to 2 KB, 8 warps.
    """
    channels_last = layout == "channels_last"
    # The forwards, of the row a program streams (its tile's BLOCK_C × BLOCK_W). With four
    # under channels_last, blur-pool's with the fused ReLU spills at k = 7.
    if op.endswith("_fwd"):
        return 2 if channels_last else 1
    # The backwards, of their rows too. Under NCHW one: with more, the compiler gives
    # the row's contiguous accesses (tables, codes, stores) two elements a thread and its
    # gathered loads one, and converts between the two through shared memory on every row.
    # Under channels_last four (vector loads along C); MaxBlurPool's two at k = 7 (with four,
    # the whole kernel needs 145 registers, 12 resident warps).
    if channels_last:
        return 4 if op == "blur_pool_bwd" or filter_size <= 5 else 2
    return 1


def pow2_bucket(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1): the size class shapes are tuned at."""
    if n <= 1:
        return 1
    return 1 << (int(n) - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class TuningKey:
    """What a launch configuration depends on, with sizes rounded to power-of-two buckets.

    ``nc``, ``hw`` and ``c`` are the buckets of N·C (planes), H·W (input map) and C (the
    contiguous extent under channels_last). ``max_kernel`` is 0 for blur-pool.
    """

    nc: int
    hw: int
    c: int
    dtype: str
    layout: Layout
    filter_size: int
    stride: int
    max_kernel: int = 0
    relu: bool = False

    def __post_init__(self) -> None:
        for name in ("nc", "hw", "c"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1 or value & (value - 1):
                raise ValueError(f"TuningKey.{name}={value!r}: expected a power of two >= 1")
        if self.dtype not in KEY_DTYPES:
            raise ValueError(f"TuningKey.dtype={self.dtype!r}: expected one of {KEY_DTYPES}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"TuningKey.layout={self.layout!r}: expected one of {LAYOUTS}")
        for name in ("filter_size", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"TuningKey.{name}={getattr(self, name)!r}: expected >= 1")
        if self.max_kernel < 0:
            raise ValueError(f"TuningKey.max_kernel={self.max_kernel!r}: expected >= 0")

    def to_str(self) -> str:
        """The key as written in the JSON tables (stable, human-readable)."""
        return (
            f"nc={self.nc}|hw={self.hw}|c={self.c}|{self.dtype}|{self.layout}"
            f"|k={self.filter_size}|s={self.stride}|mk={self.max_kernel}|relu={int(self.relu)}"
        )

    @classmethod
    def from_str(cls, text: str) -> TuningKey:
        """Inverse of :meth:`to_str`; ``ValueError`` on a malformed key."""
        match = re.fullmatch(
            r"nc=(\d+)\|hw=(\d+)\|c=(\d+)\|(\w+)\|(\w+)\|k=(\d+)\|s=(\d+)\|mk=(\d+)\|relu=([01])",
            text,
        )
        if match is None:
            raise ValueError(f"tuning key {text!r}: expected the form of TuningKey.to_str()")
        nc, hw, c, dtype, layout, k, s, mk, relu = match.groups()
        return cls(int(nc), int(hw), int(c), dtype, layout, int(k), int(s), int(mk), relu == "1")


def tuning_key(
    x: torch.Tensor, filter_size: int, stride: int, *, max_kernel: int = 0, relu: bool = False
) -> TuningKey:
    """The key of an op applied to ``x`` (N, C, H, W); the layout is read from its strides."""
    if x.dim() != 4:
        raise ValueError(f"x.shape={tuple(x.shape)}: expected a 4-D (N, C, H, W) tensor")
    n, c, h, w = x.shape
    return TuningKey(
        nc=pow2_bucket(n * c),
        hw=pow2_bucket(h * w),
        c=pow2_bucket(c),
        dtype=str(x.dtype).removeprefix("torch."),
        layout=layout_of(x),
        filter_size=int(filter_size),
        stride=int(stride),
        max_kernel=int(max_kernel),
        relu=bool(relu),
    )


# ----------------------------------------------------------------------------- tables


def cache_dir() -> Path:
    """The user cache folder: ``$SHIFTLAB_CACHE_DIR``, else the XDG cache folder."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "shiftlab"


def user_cache_path(name: str | None = None, version: str | None = None) -> Path:
    """The cache file for one GPU and Triton version."""
    name = hardware.device_name() if name is None else name
    version = hardware.triton_version() if version is None else version
    return cache_dir() / f"{hardware.slug(name)}-triton-{hardware.slug(version)}.json"


def shipped_table_path(name: str | None = None) -> Path:
    """The table shipped in the package for one GPU."""
    return SHIPPED_DIR / f"{hardware.slug(hardware.device_name() if name is None else name)}.json"


def empty_table() -> dict[str, Any]:
    """A table with no entries, stamped with the GPU and Triton version it is for."""
    return {
        "device": hardware.device_name(),
        "triton": hardware.triton_version(),
        "torch": torch.__version__,
        "configs": {op: {} for op in OPS},
    }


def _load_table(path: Path) -> dict[str, Any] | None:
    """The JSON table at `path`, its unusable entries left out; None if there is none, or
    none usable. What is left out is named in one warning: a table only saves tuning time,
    so a damaged one (edited, cut short, from another version) must not stop a forward pass
    that the next table or the heuristic can launch."""
    try:
        table = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # a folder or no access where the file should be
        _ignored(path, f"cannot be read ({err})")
        return None
    if not isinstance(table, dict) or not isinstance(table.get("configs"), dict):
        _ignored(path, f"expected a JSON object with a 'configs' object of op -> entries, got "
                       f"{_abridged(table)}")  # fmt: skip
        return None
    kept: dict[str, dict[str, Any]] = {}
    dropped = []
    for op, entries in table["configs"].items():
        if not isinstance(entries, dict):
            dropped.append(f"configs.{op} is {_abridged(entries)}; expected an object of "
                           "tuning key -> launch config")  # fmt: skip
            continue
        kept[op] = {}
        for text, entry in entries.items():
            try:
                TuningKey.from_str(text)
                check_config(entry)
            except ValueError as err:
                dropped.append(f"configs.{op} key {text!r}: {err}")
                continue
            kept[op][text] = entry
    if dropped:
        more = f" (and {len(dropped) - 1} more)" if len(dropped) > 1 else ""
        _ignored(path, f"entries left out: {dropped[0]}{more}; accepted: keys such as "
                       f"{_example_key()!r} with launch configs of {CONFIG_FIELDS}")  # fmt: skip
    return {**table, "configs": kept}


_read_table = functools.cache(_load_table)  # read once per process


def _ignored(path: Path, what: str) -> None:
    warnings.warn(
        f"tuning table {path}: {what}; the next table or the heuristic serves instead. Delete "
        "the file, or run python -m kernels.autotune again",
        stacklevel=_outside_level(),
    )


def _outside_level() -> int:
    """The `stacklevel` of the caller's first frame outside this package and torch (the line of
    the user's code that launched the kernel), for the frame that calls ``warnings.warn``."""
    inside = (str(Path(__file__).parent), str(Path(torch.__file__).parent))
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def _example_key() -> str:
    return TuningKey(nc=256, hw=1024, c=64, dtype="float16", layout="nchw", filter_size=3,
                     stride=2).to_str()  # fmt: skip


def _abridged(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def read_table(path: Path) -> dict[str, Any] | None:
    """The table at ``path`` (memoised), or None when there is none."""
    return _read_table(Path(path))


def clear_cache() -> None:
    """Forget the tables and configs read so far, and the launches planned with them (after
    writing a table, or in tests)."""
    global _generation
    _generation += 1
    _read_table.cache_clear()
    _lookup.cache_clear()


def write_table(path: Path, table: dict[str, Any]) -> None:
    """Write a table atomically (:func:`kernels.files.atomic_write_text`)."""
    atomic_write_text(Path(path), json.dumps(table, indent=1, sort_keys=True) + "\n")
    clear_cache()


def check_config(config: dict[str, Any]) -> dict[str, int]:
    """The five launch fields of ``config`` as ints; ``ValueError`` naming a bad one: not a
    whole number, not a power of two, or beyond what a kernel launch takes (a row tile of at
    most ``MAX_TILE`` elements, ``MAX_ROWS`` rows, ``MAX_NUM_WARPS`` warps)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"launch config {_abridged(config)}: expected an object of "
                         f"{CONFIG_FIELDS}")  # fmt: skip
    missing = [f for f in CONFIG_FIELDS if f not in config]
    if missing:
        raise ValueError(f"launch config {config!r}: missing {missing}; expected {CONFIG_FIELDS}")
    out = {}
    for field in CONFIG_FIELDS:
        value = config[field]  # a whole number of any type (numpy's too), not a bool or 8.0
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"launch config {field}={value!r}: expected a whole number >= 1")
        out[field] = int(value)
    for field, most in (("BLOCK_H", MAX_ROWS), ("BLOCK_W", MAX_TILE), ("BLOCK_C", MAX_TILE),
                        ("num_warps", MAX_NUM_WARPS)):  # fmt: skip
        value = out[field]
        if value & (value - 1) or value > most:
            raise ValueError(f"launch config {field}={value!r}: expected a power of two <= {most}")
    if out["BLOCK_C"] * out["BLOCK_W"] > MAX_TILE:
        raise ValueError(
            f"launch config BLOCK_C={out['BLOCK_C']} × BLOCK_W={out['BLOCK_W']}: a row tile of at "
            f"most {MAX_TILE} elements"
        )
    return out


def _check_op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"op={op!r}: expected one of {OPS}")


def save_config(
    op: str,
    key: TuningKey,
    config: dict[str, Any],
    *,
    ms: float | None = None,
    path: Path | None = None,
) -> Path:
    """Record ``config`` as the winner for ``(op, key)`` in a table (default: the user cache).

    The table is read, updated and written back atomically; returns its path.
    """
    _check_op(op)
    entry: dict[str, Any] = check_config(config)
    if ms is not None:
        entry["ms"] = float(ms)
    path = user_cache_path() if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Locked, and read from the file, not the memo: two autotune runs on one cache keep both
    # runs' winners (each had written back the table it read when it started).
    with FileLock(f"{path}.lock"):
        table = _saved_table(path)
        entries = table["configs"].get(op)
        if not isinstance(entries, dict):
            entries = table["configs"][op] = {}
        entries[key.to_str()] = entry
        write_table(path, table)
    return path


def _saved_table(path: Path) -> dict[str, Any]:
    """The table at `path` as written, entries a lookup passes over kept (they may be another
    version's), or a new one where there is none that reads as a table."""
    try:
        table = read_json(path)
    except (OSError, ValueError):
        table = None
    if isinstance(table, dict) and isinstance(table.get("configs"), dict):
        return table
    return empty_table()


def _itemsize(dtype: str) -> int:
    return torch.empty((), dtype=getattr(torch, dtype)).element_size()


def _distance(a: TuningKey, b: TuningKey) -> float | None:
    """How far apart two keys lie, or None when one's entry cannot stand in for the other's.

    Layout, stride and max kernel must match, and the dtypes must have the same element size
    (the kernels are memory-bound: fp16 and bf16 tiles behave alike). The distance adds the
    log2 steps between shape buckets, the difference in filter size, and one for a different
    ReLU or dtype.
    """
    if (a.layout, a.stride, a.max_kernel) != (b.layout, b.stride, b.max_kernel):
        return None
    if _itemsize(a.dtype) != _itemsize(b.dtype):
        return None
    steps = sum(abs(math.log2(getattr(a, f)) - math.log2(getattr(b, f))) for f in ("nc", "hw", "c"))
    return steps + abs(a.filter_size - b.filter_size) + (a.relu != b.relu) + (a.dtype != b.dtype)


def table_config(table: dict[str, Any] | None, op: str, key: TuningKey) -> dict[str, int] | None:
    """The table's entry for ``key``, else its nearest stand-in within
    ``_MAX_STAND_IN_DISTANCE`` (:func:`_distance`), else None."""
    if table is None:
        return None
    entries: dict[str, Any] = table["configs"].get(op, {})
    if key.to_str() in entries:
        return check_config(entries[key.to_str()])
    best: tuple[float, dict[str, Any]] | None = None
    for text, entry in entries.items():
        distance = _distance(key, TuningKey.from_str(text))
        if distance is None or distance > _MAX_STAND_IN_DISTANCE:
            continue
        if best is None or distance < best[0]:
            best = (distance, entry)
    return None if best is None else check_config(best[1])


# ----------------------------------------------------------------------------- heuristic


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def heuristic_config(op: str, key: TuningKey) -> dict[str, int]:
    """A sound default where no table applies.

    Every kernel streams: a program runs ``BLOCK_H`` rows down a row tile of ``BLOCK_C`` ×
    ``BLOCK_W`` (outputs forward, input-gradient elements backward), so its threads hold one
    row (:func:`thread_elements` each) and ``BLOCK_H`` only sets how far it runs (the halo it
    re-reads and its fixed costs, against the length of its unrolled code). The contiguous
    axis gets the larger extent so that loads coalesce: W under NCHW, C under channels_last.

    The forwards: under NCHW the row is at most 8 columns of several planes, so that most
    tiles of a wide map read inside it along W (the padded path costs about twice the plain
    one: ``benchmarks.static_cost``); under channels_last it holds 64 channels (more where the
    map is narrower). Eight rows: the rows run in a loop, so the code does not grow with
    them, while a program also forms the rows above its first output's last ``stride`` (five
    at k = 7), a cost per program that four rows paid twice as often (MaxBlurPool at k = 7:
    266 instructions per output at four rows, 208 at eight); sixteen would cut that further
    but leave more of the last tile idle on maps of 56 or 28 output rows. The
    backwards: the padding along W costs nothing extra (each
    lane's tables), so under NCHW the row spans the map, up to 128 columns (several planes of
    narrower maps); under channels_last 128 channels; sixteen rows. Either runs the whole map
    where it has fewer rows.
    """
    _check_op(op)
    if hardware.device_name() == hardware.INTERPRETER_DEVICE:
        return dict(_INTERPRETER_CONFIG)
    side = whole_map_tile(op, key)
    per_thread = thread_elements(op, key.layout, key.filter_size)
    row = 4 * 32 * per_thread  # four warps' worth
    forward = op.endswith("_fwd")
    if key.layout == "channels_last":
        block_w = _clamp(row // min(key.c, 64 if forward else 128), 1, side)
        block_c = _clamp(row // block_w, 1, key.c)
    else:
        block_w = _clamp(side, 1, 8 if forward else row)
        block_c = _clamp(row // block_w, 1, key.c)
    num_warps = _clamp(block_c * block_w // (32 * per_thread), 1, _MAX_WARPS)
    rows = 8 if forward else 16
    return {
        "BLOCK_H": min(side, rows),
        "BLOCK_W": block_w,
        "BLOCK_C": block_c,
        "num_warps": num_warps,
        "num_stages": 2,
    }


def whole_map_tile(op: str, key: TuningKey) -> int:
    """The side of the smallest power-of-two tile that covers a whole square map of ``key``'s
    size: the output map for the forwards, the input for the backwards."""
    side = max(1, math.isqrt(key.hw))
    stride, max_kernel = key.stride, max(key.max_kernel, 1)
    if op == "blur_pool_fwd":
        extent = -(-side // stride)
    elif op == "max_blur_pool_fwd":
        extent = -(-max(1, dense_max_size(side, max_kernel)) // stride)
    else:
        extent = side
    return pow2_bucket(extent)


# ----------------------------------------------------------------------------- lookup


@functools.cache
def _lookup(op: str, key: TuningKey, user_path: Path, shipped_path: Path) -> tuple:
    for path in (user_path, shipped_path):
        config = table_config(read_table(path), op, key)
        if config is not None:
            return tuple(config.items())
    return tuple(heuristic_config(op, key).items())


def launch_config(op: str, key: TuningKey) -> dict[str, int]:
    """The launch configuration for ``op`` at ``key``: user cache, shipped table, heuristic.

    Returns a fresh dict with ``BLOCK_H``, ``BLOCK_W``, ``BLOCK_C``, ``num_warps`` and
    ``num_stages``; memoised per process (per cache folder, so the env var is honoured).
    """
    _check_op(op)
    return dict(_lookup(op, key, *_table_paths(*lookup_state()[1:])))


def lookup_state() -> tuple[int, str | None, str | None, str]:
    """What :func:`launch_config`'s answers depend on besides the key: the tables read so far
    (a count of :func:`clear_cache` calls), the cache folder's variables and the device.
    Launches planned from its configs are kept per state (``kernels.ops.common``)."""
    return (_generation, os.environ.get(CACHE_DIR_ENV), os.environ.get("XDG_CACHE_HOME"),
            hardware.device_name())  # fmt: skip


@functools.cache
def _table_paths(cache_env: str | None, xdg_env: str | None, name: str) -> tuple[Path, Path]:
    """The user cache and shipped table paths for ``name``, built once per setting of the
    variables they depend on (every launch asks; building paths costs more than the lookup)."""
    return user_cache_path(name), shipped_table_path(name)
