"""Which GPU the kernels run on, or Triton's CPU interpreter, and which Triton: what the tuning
tables are keyed by and the benchmark results are filed under."""

from __future__ import annotations

import functools
import os
import re

import torch

INTERPRETER_DEVICE = "cpu-interpreter"


def interpreter_requested() -> bool:
    """True when TRITON_INTERPRET asks Triton to run its kernels on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def interpreting() -> bool:
    """True when Triton kernels run under the CPU interpreter (or there is no CUDA device)."""
    return interpreter_requested() or not torch.cuda.is_available()


def slug(text: str) -> str:
    """Lower-case, dash-separated form of a device name, safe as a file name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_name() -> str:
    """The GPU's name (``torch.cuda.get_device_name()``), or ``cpu-interpreter``."""
    return INTERPRETER_DEVICE if interpreting() else _cuda_name(torch.cuda.current_device())


@functools.cache
def _cuda_name(index: int) -> str:
    # Asked once per device: every kernel launch looks its config up.
    return torch.cuda.get_device_name(index)


@functools.cache
def triton_version() -> str:
    """The installed Triton version, or ``none``."""
    try:
        import triton
    except ImportError:
        return "none"
    return triton.__version__


def gpu_family(name: str) -> str:
    """Short folder name for results: the first word of the name holding a digit (``h100``)."""
    words = slug(name).split("-")
    return next((word for word in words if any(ch.isdigit() for ch in word)), slug(name) or "cpu")
