"""Test set-up: Triton runs under its interpreter on CPU unless a GPU is present."""

import os

import torch

if not torch.cuda.is_available():
    # Must be set before any Triton kernel is defined.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tiny test shapes run fastest on one thread, and a shared machine stays predictable.
torch.set_num_threads(1)
