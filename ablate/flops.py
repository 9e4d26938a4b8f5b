"""Forward FLOPs per image: what a variant costs in arithmetic, the same on every machine.

Throughput depends on the machine and what else runs on it; the arithmetic does not. The
paper's forms move work around: ConvBlurPool runs the strided convolution at stride 1 (four
times its multiply-adds at stride 2) and every blur adds k² multiply-adds per output and
channel. Counted as `torch.utils.flop_counter` counts them, 2 FLOPs per multiply-add (fvcore
counts 1): every convolution and linear layer, and each blur-pool as the dense depthwise k × k
filter it defines (the fused kernels filter separably, with fewer); learnable polyphase
sampling's scorers are convolutions and linear layers, so they count. Max, ReLU, normalisation,
additions and the norms by which polyphase sampling picks its grid are not counted, as the
field does not count element-wise work.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ablate.modes import evaluating
from kernels import BlurPool2d, MaxBlurPool2d


def forward_flops(model: nn.Module, image_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of `model` on one image of `image_shape` (C, H, W).

    The model runs once in eval mode on a zero image on its own device, without autograd;
    its training mode is restored afterwards and its weights and statistics are not changed.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _module_flops(module, output)

    hooks = [
        module.register_forward_hook(count)
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear, BlurPool2d, MaxBlurPool2d))
    ]
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    try:
        with evaluating(model):
            model(torch.zeros(1, *image_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _module_flops(module: nn.Module, output: torch.Tensor) -> int:
    """2 × the multiply-adds that produce `output`: each output element's fan-in."""
    if isinstance(module, nn.Conv2d):
        fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
    elif isinstance(module, nn.Linear):
        fan_in = module.in_features
    else:  # BlurPool2d, MaxBlurPool2d: the k × k filter of each output
        fan_in = module.taps.numel() ** 2
    return 2 * output.numel() * fan_in
