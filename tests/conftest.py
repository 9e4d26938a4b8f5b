"""Test set-up: Triton runs under its interpreter on CPU unless a GPU is present."""

import functools
import importlib.util
import inspect
import os
import warnings
from pathlib import Path

import pytest
import torch


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
