"""Forward FLOPs per image against torch.utils.flop_counter on the plain-PyTorch formulation."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablate.antialias import antialias
from ablate.flops import forward_flops
from ablate.models import build_model
from ablate.polyphase import ComponentScorer, PolyphasePool2d
from kernels import BlurPool2d, MaxBlurPool2d
from kernels.baselines import pad_conv_formulation


def counted_flops(model: nn.Module, image_shape: tuple[int, ...]) -> int:
    """torch's own count of one eval forward on one image."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, *image_shape))
    return counter.get_total_flops()


class Formulation(nn.Module):
    """A blur-pool module as pad + depthwise conv2d (after the ReLU or the dense max)."""

    def __init__(self, blur: BlurPool2d | MaxBlurPool2d) -> None:
        super().__init__()
        assert blur.stride == 2 and blur.padding == "reflect" and blur.filter == "binomial"
        op = "max_blur_pool" if isinstance(blur, MaxBlurPool2d) else "blur_pool"
        op += "_relu" if getattr(blur, "relu", False) else ""
        self.run = pad_conv_formulation(
            op, blur.taps.numel(), blur.channels, torch.float32, torch.device("cpu")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


@pytest.mark.parametrize("name", ["vgg", "resnet18"])
def test_a_baseline_counts_as_torch_counts_it(name):
    model = build_model(name, width=4)
    assert forward_flops(model, (3, 32, 32)) == counted_flops(model, (3, 32, 32)) > 0


def test_grouped_and_rectangular_convs_count_as_torch_counts_them():
    """Users' networks (depthwise-separable blocks, 1×3 kernels), not only the shipped ones."""
    model = nn.Sequential(
        nn.Conv2d(4, 8, (1, 3), padding=(0, 1)),
        nn.Conv2d(8, 8, 3, groups=4),
        nn.Conv2d(8, 8, 5, groups=8, bias=False),
    )
    assert forward_flops(model, (4, 11, 13)) == counted_flops(model, (4, 11, 13)) > 0


@pytest.mark.parametrize("module", [BlurPool2d, MaxBlurPool2d])
@pytest.mark.parametrize("filter_size", [1, 2, 5, 7])
def test_a_blur_counts_as_its_depthwise_conv(module, filter_size):
    blur = module(3, filter_size, stride=2, padding="reflect")
    for shape in [(3, 9, 14), (3, 8, 8)]:
        assert forward_flops(blur, shape) == counted_flops(Formulation(blur), shape) > 0


@pytest.mark.parametrize(("name", "filter_size"), [("resnet18", 3), ("vgg", 4)])
def test_an_antialiased_network_counts_as_its_pad_conv_formulation(name, filter_size):
    """Every site the converter made (strided convs now at stride 1, blurs, the ReLU fused or
    not) against the same network with each blur written as pad + conv2d."""
    model, _ = antialias(build_model(name, width=4), filter_size=filter_size, placement="paper")
    explicit, _ = antialias(build_model(name, width=4), filter_size=filter_size, placement="paper")
    blurs = 0
    for site, module in list(explicit.named_modules()):
        if isinstance(module, (BlurPool2d, MaxBlurPool2d)):
            explicit.set_submodule(site, Formulation(module))
            blurs += 1
    assert blurs >= 4
    flops = forward_flops(model, (3, 32, 32))
    assert flops == counted_flops(explicit, (3, 32, 32))
    assert flops > forward_flops(build_model(name, width=4), (3, 32, 32))


def test_counting_leaves_the_model_as_it_was():
    model = build_model("resnet18", width=4).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    forward_flops(model, (3, 16, 16))
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(module._forward_hooks for module in model.modules())


def test_polyphase_sampling_counts_only_the_lps_scorer():
    """APS's norms are element-wise work (not counted); LPS's scorer runs a conv and a linear
    layer on every component."""
    aps, lps = PolyphasePool2d(2), PolyphasePool2d(2, ComponentScorer(6))
    shape = (6, 10, 8)
    assert forward_flops(aps, shape) == counted_flops(aps, shape) == 0
    hidden = lps.scorer.conv.out_channels
    scorer = 4 * (2 * hidden * 5 * 4 * 6 * 9 + 2 * hidden)  # 4 components of 5 × 4
    assert forward_flops(lps, shape) == counted_flops(lps, shape) == scorer
