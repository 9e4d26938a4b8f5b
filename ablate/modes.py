"""Run a model in eval mode for a moment, and give every module its own mode back after.

``model.train(flag)`` sets every submodule to one mode, which would unfreeze a BatchNorm a
fine-tuning recipe left in eval mode inside a training model; these restore each module's
flag as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """`model`, whose modules get back on exit the training flags they had on entry."""
    flags = {module: module.training for module in model.modules()}
    try:
        yield model
    finally:
        for module, training in flags.items():
            module.training = training


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode without autograd inside; each module's mode restored after.

    Under `torch.no_grad`, not `torch.inference_mode`: what a module makes on its first call
    (a lazy module's parameters, a cached table) stays usable in training afterwards."""
    with kept_modes(model), torch.no_grad():
        yield model.eval()
