"""Test set-up: Triton runs under its interpreter on CPU unless a GPU is present."""

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before any Triton kernel is defined.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tiny test shapes run fastest on one thread, and a shared machine stays predictable.
torch.set_num_threads(1)


@pytest.fixture
def user_nets(monkeypatch: pytest.MonkeyPatch) -> str:
    """The module of user networks in tests/data/networks, importable as a study finds one."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "data" / "networks"))
    return "user_nets"
