"""Test set-up: Triton runs under its interpreter on CPU unless a GPU is present."""

import functools
import importlib.util
import inspect
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def patch_language_once_per_launch() -> None:
    """Make the interpreter patch ``triton.language`` once per launch, not once per call.

    The interpreter points the language's builtins at its own on every call of a
    ``@triton.jit`` helper, although nothing undoes that before the launch ends: a scan of the
    modules costing about 1 ms a call, 40 % of a kernel test's time. Here each set of language
    modules a function sees is patched at its first call in a launch (the launch's own patch,
    which it undoes at its end, comes first); what the kernels compute is unchanged. Where the
    interpreter's internals differ from those this expects, it warns and changes nothing.
    """
    import triton.language as tl
    from triton.runtime import interpreter

    patch_lang = getattr(interpreter, "_patch_lang", None)
    executor = getattr(interpreter, "GridExecutor", None)
    scope = getattr(interpreter, "_LangPatchScope", None)
    if patch_lang is None or executor is None or scope is None:
        warnings.warn("the Triton interpreter's internals changed: the kernel tests run at its "
                      "own (slower) pace", stacklevel=1)  # fmt: skip
        return
    launch = executor.__call__
    patched: set[frozenset[int]] = set()

    @functools.cache
    def languages(fn) -> frozenset[int]:
        return frozenset(id(value) for value in fn.__globals__.values()
                         if inspect.ismodule(value) and value in (tl, tl.core))  # fmt: skip

    def patch_once(fn):
        langs = languages(fn)
        if langs in patched:
            return scope()
        patched.add(langs)
        return patch_lang(fn)

    def launch_patching_afresh(self, *args, **kwargs):
        patched.clear()
        try:
            return launch(self, *args, **kwargs)
        finally:
            patched.clear()

    interpreter._patch_lang = patch_once
    executor.__call__ = launch_patching_afresh


if not torch.cuda.is_available():
    # Must be set before any Triton kernel is defined.
    os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ.get("TRITON_INTERPRET") == "1" and importlib.util.find_spec("triton"):
    patch_language_once_per_launch()

# Tiny test shapes run fastest on one thread, and a shared machine stays predictable.
torch.set_num_threads(1)


@pytest.fixture
def user_nets(monkeypatch: pytest.MonkeyPatch) -> str:
    """The module of user networks in tests/data/networks, importable as a study finds one."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "data" / "networks"))
    return "user_nets"


def write_image(path: Path, pixels: np.ndarray, mode: str = "RGB") -> None:
    """Save `pixels` (H×W×3 or H×W uint8) as an image file at `path`, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Writes a dataset of your own images under tmp_path, as `dataset: folder` reads them.

    `image_folder({"cat": (3, 2), ...}, test="test")` gives each class (train, test) images;
    image k of the c-th class (sorted) is flat grey 40·c + 2·k (+ 1 in test), of assorted
    sizes and formats (PNG, JPEG, BMP; one greyscale), every other one in a nested folder.
    """

    def write(counts: dict[str, tuple[int, int]], test: str = "test") -> Path:
        for c, (name, (n_train, n_test)) in enumerate(sorted(counts.items())):
            for split, n, offset in (("train", n_train, 0), (test, n_test, 1)):
                for k in range(n):
                    folder = tmp_path / split / name / ("nested" if k % 2 else "")
                    pixels = np.full((12 + k, 10 + 2 * k, 3), 40 * c + 2 * k + offset, np.uint8)
                    write_image(folder / f"{k}{('.png', '.jpg', '.bmp')[k % 3]}", pixels,
                                mode="L" if k == 2 else "RGB")  # fmt: skip
        return tmp_path

    return write
