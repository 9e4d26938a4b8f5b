"""The converter: every placement at every site, checked against hand-built references."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate.antialias import SiteChange, antialias
from ablate.models import build_model
from ablate.polyphase import PolyphasePool2d
from ablate.variant_config import PLACEMENTS
from kernels import BlurPool2d, MaxBlurPool2d, blur_pool2d, max_blur_pool2d

# (BlurPool2d, MaxBlurPool2d) modules each placement leaves in each model
EXPECTED_COUNTS = {
    ("vgg", "paper"): (0, 4),
    ("vgg", "blur_before_max"): (4, 0),
    ("vgg", "blur_before_relu"): (0, 4),
    ("vgg", "blur_before_conv"): (0, 4),
    ("vgg", "none"): (0, 0),
    ("resnet18", "paper"): (6, 0),
    ("resnet18", "blur_before_max"): (6, 0),
    ("resnet18", "blur_before_relu"): (6, 0),
    ("resnet18", "blur_before_conv"): (6, 0),
    ("resnet18", "none"): (0, 0),
}
SITES = {
    "vgg": ["features.1", "features.3", "features.6", "features.9"],
    "resnet18": [f"layer{i}.0.{part}" for i in (2, 3, 4) for part in ("conv1", "shortcut.0")],
}


def _counts(model: nn.Module) -> tuple[int, int]:
    modules = list(model.modules())
    return (
        sum(isinstance(m, BlurPool2d) for m in modules),
        sum(isinstance(m, MaxBlurPool2d) for m in modules),
    )


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial statistics so eval-mode outputs test the whole chain."""
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(generator=generator)
            m.running_var.uniform_(0.5, 2, generator=generator)
            m.weight.data.uniform_(0.5, 1.5, generator=generator)
            m.bias.data.normal_(generator=generator)
    return model.eval()


def _conv_bn_relu() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def _blurred_stem(stem: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """What the paper's form of `stem` computes (eval mode): Conv(1) → BN → ReLU → BlurPool."""
    conv, bn = stem[0], stem[1].eval()
    dense = F.relu(bn(F.conv2d(x, conv.weight, conv.bias, padding=1)))
    return blur_pool2d(dense, 3, 2, backend="torch")


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("name", ["vgg", "resnet18"])
def test_every_site_of_each_model_is_rewritten(name, placement):
    torch.manual_seed(0)
    model = _randomise_bn(build_model(name, width=4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)

    converted, changes = antialias(model, placement=placement)
    out = converted.eval()(x)

    assert out.shape == expected.shape and torch.isfinite(out).all()
    assert _counts(converted) == EXPECTED_COUNTS[name, placement]
    assert [c.name for c in changes] == ([] if placement == "none" else SITES[name])
    assert all(isinstance(c, SiteChange) and c.description for c in changes)
    # the original is untouched and its weights live on in the copy, under the same keys
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert set(before) <= set(converted.state_dict())
    weights = {p.data_ptr() for p in model.parameters()}
    assert not weights & {p.data_ptr() for p in converted.parameters()}
    kept = sorted(p.sum().item() for p in converted.parameters())
    assert kept == pytest.approx(sorted(p.sum().item() for p in model.parameters()))
    if placement == "none":
        torch.testing.assert_close(out, expected)
    else:
        assert not torch.allclose(out, expected, atol=1e-3)


@pytest.mark.parametrize("placement", ["paper", "blur_before_max", "blur_before_relu"])
@pytest.mark.parametrize("name", ["vgg", "resnet18"])
def test_size_one_filter_reproduces_the_baseline(name, placement):
    """A 1-tap filter is plain subsampling: moving it past pointwise ops changes nothing."""
    torch.manual_seed(1)
    model = _randomise_bn(build_model(name, width=4))
    x = torch.randn(2, 3, 32, 32)
    converted, _ = antialias(model, placement=placement, filter_size=1)
    torch.testing.assert_close(converted.eval()(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "placement", "subsample", "filter_size", "keeps"),
    [
        ("vgg", "paper", "fixed", 1, True),
        ("vgg", "blur_before_max", "fixed", 1, True),
        ("vgg", "blur_before_relu", "fixed", 1, True),  # its max-pools take the paper's form
        ("vgg", "paper", "aps", 1, False),
        ("vgg", "paper", "fixed", 2, False),
        ("resnet18", "paper", "fixed", 1, False),  # strided convs: BN sees the dense map
    ],
)
def test_a_site_says_whether_it_still_computes_what_it_did(
    name, placement, subsample, filter_size, keeps
):
    """A one-tap filter at a max-pool computes the pool itself, in training too (outputs and
    gradients bit for bit): a study counts such a network as the baseline's."""
    torch.manual_seed(1)
    model = build_model(name, width=4)
    converted, changes = antialias(
        build_model(name, width=4), placement=placement, filter_size=filter_size,
        subsample=subsample,
    )  # fmt: skip
    converted.load_state_dict(model.state_dict(), strict=False)
    assert changes and {change.keeps_function for change in changes} == {keeps}
    if keeps:
        x = torch.randn(2, 3, 32, 32, requires_grad=True)
        outputs = [net.train()(x) for net in (model, converted)]
        grads = [torch.autograd.grad(out.square().sum(), x)[0] for out in outputs]
        assert torch.equal(*outputs) and torch.equal(*grads)


class ConvBnReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


@pytest.mark.parametrize("padding", ["reflect", "zeros", "circular"])
@pytest.mark.parametrize("placement", ["paper", "blur_before_relu", "blur_before_conv"])
def test_conv_placements_match_hand_built_references(placement, padding):
    torch.manual_seed(2)
    model = _randomise_bn(ConvBnReLU())
    x = torch.randn(2, 3, 11, 9)  # odd, non-square
    converted, (change,) = antialias(
        model, placement=placement, filter_size=3, padding=padding, example_input=x
    )

    def blur(t: torch.Tensor) -> torch.Tensor:
        return blur_pool2d(t, 3, 2, padding, backend="torch")

    dense = F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)
    if placement == "paper":
        expected = blur(F.relu(model.bn(dense)))
        assert "ReLU fused" in change.description
    elif placement == "blur_before_relu":
        expected = F.relu(blur(model.bn(dense)))
    else:
        expected = F.relu(
            model.bn(F.conv2d(blur(x), model.conv.weight, model.conv.bias, padding=1))
        )
    torch.testing.assert_close(converted.eval()(x), expected, rtol=1e-5, atol=1e-5)
    assert str(change).startswith("conv (conv): ")


class BatchNormAct(nn.BatchNorm2d):
    """BatchNorm that applies its own activation, as timm's BatchNormAct2d: its forward reads
    ``self.training`` (so a graph traced through it would freeze one mode)."""

    def __init__(self, channels: int, act_first: bool = False) -> None:
        super().__init__(channels)
        self.act = nn.ReLU()
        self.act_first = act_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_first:  # not BN → activation: the converter must not split it
            x = self.act(x)
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)  # fmt: skip
        return x if self.act_first else self.act(x)


class SamePaddingConv(nn.Conv2d):
    """A conv that pads itself from the input's size, as timm's Conv2dSame (which torch.fx
    cannot trace through: ``math.ceil`` of a traced size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size, stride = x.shape[-1], self.stride[0]
        total = max((math.ceil(size / stride) - 1) * stride + self.kernel_size[0] - size, 0)
        x = F.pad(x, (total // 2, total - total // 2) * 2)
        return F.conv2d(x, self.weight, self.bias, self.stride)


class ConvBnActBlock(nn.Module):
    def __init__(self, act_first: bool = False, same_padding: bool = True) -> None:
        super().__init__()
        conv = SamePaddingConv(3, 5, 3, stride=2) if same_padding else nn.Conv2d(3, 5, 3, 2, 1)
        self.conv = conv
        self.bn = BatchNormAct(5, act_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


@pytest.mark.parametrize("same_padding", [False, True])
@pytest.mark.parametrize("placement", ["paper", "blur_before_relu"])
def test_batchnorm_with_its_own_activation_and_self_padding_conv(placement, same_padding):
    """The activation a BatchNorm module applies itself is split off, so the blur goes after it
    (the ReLU fused) or before it; the module keeps its training-mode statistics after a
    conversion in eval mode; a conv subclass that pads itself is one site, at stride 1."""
    torch.manual_seed(6)
    model = _randomise_bn(ConvBnActBlock(same_padding=same_padding))
    x = torch.randn(2, 3, 11, 9)
    converted, (change,) = antialias(model, placement=placement, filter_size=3, example_input=x)
    dense = F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)  # stride 1, same size
    bn = model.bn.eval()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return blur_pool2d(t, 3, 2, "reflect", backend="torch")

    if placement == "paper":
        assert change.description.startswith("Conv(stride 1) → BN → ReLU → BlurPool")
        expected = blur(bn(dense))
    else:
        assert change.description == "Conv(stride 1) → BN → BlurPool(stride 2) → ReLU"
        expected = F.relu(blur(F.batch_norm(dense, bn.running_mean, bn.running_var, bn.weight,
                                            bn.bias, False, 0.0, bn.eps)))  # fmt: skip
    torch.testing.assert_close(converted.eval()(x), expected, rtol=1e-5, atol=1e-5)
    statistics = converted.bn.running_mean.clone()
    converted.train()(x)
    assert not torch.equal(converted.bn.running_mean, statistics)


@pytest.mark.parametrize("subsample", ["fixed", "lps"])
def test_every_module_keeps_or_inherits_the_mode_it_had(subsample):
    """A model converted in eval mode stays in eval mode, new modules too (an LPS site left
    in training mode had trained its scorer in an eval forward that took gradients); a
    BatchNorm a recipe froze in a training model stays frozen."""
    model = build_model("resnet18", width=4).eval()
    net, _ = antialias(model, filter_size=3, subsample=subsample)
    assert not any(m.training for m in net.modules())
    model.train()
    model.layer2[0].bn1.eval()
    net, _ = antialias(model, filter_size=3, subsample=subsample)
    frozen = [name for name, m in net.named_modules() if not m.training]
    assert frozen == ["layer2.0.bn1"]


def test_sync_batchnorm_is_a_normalisation_like_batchnorm():
    """A DDP recipe converts BN to SyncBatchNorm first; the blur still goes after its ReLU."""
    torch.manual_seed(15)
    model = _randomise_bn(build_model("resnet18", width=4))
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net, changes = antialias(model, filter_size=3)
    synced_net, synced_changes = antialias(synced, filter_size=3)
    assert [c.description for c in synced_changes] == [c.description for c in changes]
    assert any("BN → ReLU → " in c.description for c in synced_changes)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(synced_net.eval()(x), net.eval()(x))


def test_batchnorm_whose_activation_comes_first_stays_whole():
    model = _randomise_bn(ConvBnActBlock(act_first=True))
    x = torch.randn(2, 3, 11, 9)
    converted, (change,) = antialias(model, filter_size=3, example_input=x)
    assert "no ReLU follows this conv" in change.description
    dense = F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)
    expected = model.bn.eval()(blur_pool2d(dense, 3, 2, "reflect", backend="torch"))
    torch.testing.assert_close(converted.eval()(x), expected)


@pytest.mark.parametrize("norm", [nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True)])
def test_blur_goes_after_the_relu_that_follows_any_normalisation(norm):
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), norm, nn.ReLU())
    x = torch.randn(2, 3, 10, 9)
    converted, (change,) = antialias(model, filter_size=3, example_input=x)
    label = "GN" if isinstance(norm, nn.GroupNorm) else "IN"
    assert change.description.startswith(f"Conv(stride 1) → {label} → ReLU → BlurPool(stride 2)")
    dense = F.relu(norm(F.conv2d(x, model[0].weight, model[0].bias, padding=1)))
    expected = blur_pool2d(dense, 3, 2, backend="torch")
    torch.testing.assert_close(converted.eval()(x), expected, rtol=1e-5, atol=1e-5)


class ConvBnThen(nn.Module):
    """A strided conv, BN, then `activation` as a function or method of the BN's output."""

    def __init__(self, activation) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn(self.conv(x)))


@pytest.mark.parametrize(
    ("activation", "label"),
    [(nn.PReLU(4), "PReLU"), (nn.SELU(), "SELU"), (nn.Sigmoid(), "Sigmoid"), (nn.Tanh(), "Tanh"),
     (nn.Hardtanh(), "Hardtanh"), (nn.Softplus(), "Softplus"), (F.mish, "mish"),
     (torch.sigmoid, "sigmoid"), (lambda h: h.tanh(), "tanh")],
)  # fmt: skip
@pytest.mark.parametrize("placement", ["paper", "blur_before_relu"])
def test_the_blur_finds_any_elementwise_activation(activation, label, placement):
    """The paper's blur goes after the nonlinearity, whichever it is (PReLU's had been taken
    for none, so both placements put the blur straight after the conv, before its BN)."""
    torch.manual_seed(3)
    model = ConvBnThen(activation).eval()
    x = torch.randn(2, 3, 10, 9)
    converted, (change,) = antialias(model, filter_size=3, placement=placement, example_input=x)
    order = ["BN", label, "BlurPool(stride 2)"] if placement == "paper" else [
        "BN", "BlurPool(stride 2)", label]  # fmt: skip
    assert change.description.startswith(" → ".join(["Conv(stride 1)", *order])), change
    dense = model.bn(F.conv2d(x, model.conv.weight, model.conv.bias, padding=1))
    expected = (blur_pool2d(activation(dense), 3, 2) if placement == "paper"
                else activation(blur_pool2d(dense, 3, 2)))  # fmt: skip
    torch.testing.assert_close(converted(x), expected, rtol=1e-5, atol=1e-5)


class ListBlock(nn.Module):
    """Takes a tensor or a list and returns a list, as SelecSLS's blocks do: a graph that
    keeps a block without sites as one call hands the next a traced value, not a list."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, stride, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        if not isinstance(x, list):
            x = [x]
        return [F.relu(self.bn(self.conv(x[0])))]


class First(nn.Module):
    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return x[0]


def test_model_that_needs_tracing_through_every_module_still_converts():
    model = _randomise_bn(nn.Sequential(ListBlock(1), ListBlock(2), First()))
    x = torch.randn(2, 4, 10, 10)
    converted, (change,) = antialias(model, filter_size=3, example_input=x)
    assert change.description.startswith("Conv(stride 1) → BN → ReLU → BlurPool(stride 2)")
    y = converted.eval()(x)
    first = model[0](x)[0]
    dense = F.relu(model[1].bn(F.conv2d(first, model[1].conv.weight, model[1].conv.bias,
                                        padding=1)))  # fmt: skip
    torch.testing.assert_close(y, blur_pool2d(dense, 3, 2, backend="torch"))


class AttentionAfterStem(nn.Module):
    """A torch.nn module that returns a tuple (attention and its weights) after a site."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn_relu()
        self.attention = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        return self.attention(tokens, tokens, tokens)[0].mean(1)


def test_torch_module_that_returns_a_tuple_stays_one_call():
    """A block of one's own that returns a list is traced into (above); torch.nn's own modules
    are not, as torch.fx cannot trace them."""
    converted, (change,) = antialias(AttentionAfterStem(), example_input=torch.randn(2, 3, 8, 8))
    assert change.description.startswith("Conv(stride 1) → BN → ReLU → BlurPool")
    assert isinstance(converted.attention, nn.MultiheadAttention)


def test_model_holding_a_scripted_module_converts():
    """A TorchScript module takes no hooks and cannot be traced: it stays one call."""
    head = torch.jit.script(nn.Sequential(nn.ReLU(), nn.Flatten()))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.MaxPool2d(2), head)
    converted, changes = antialias(model, example_input=torch.randn(2, 3, 16, 16))
    assert [c.name for c in changes] == ["0", "1"]
    assert converted(torch.randn(2, 3, 16, 16)).shape == (2, 64)


class FeatureMaps(nn.Module):
    """A backbone that returns its feature maps by name, as torchvision's
    IntermediateLayerGetter does."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn_relu()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        stem = self.stem(x)
        return OrderedDict(stem=stem, pooled=self.pool(stem))


def test_backbone_that_returns_feature_maps_converts():
    torch.manual_seed(11)
    model = _randomise_bn(FeatureMaps())
    x = torch.randn(2, 3, 12, 10)
    converted, changes = antialias(model, filter_size=3, example_input=x)
    assert [c.name for c in changes] == ["stem.0", "pool"]
    assert not any("no graph" in c.description for c in changes)
    out = converted.eval()(x)
    assert list(out) == ["stem", "pooled"]
    stem = _blurred_stem(model.stem, x)
    torch.testing.assert_close(out["stem"], stem)
    torch.testing.assert_close(
        out["pooled"], max_blur_pool2d(stem, 3, 2, max_kernel=2, backend="torch")
    )


class FunctionalPools(nn.Module):
    """Pools called as functions, as Inception's reduction blocks do, beside a strided conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(x, 3, stride=2, padding=1)
        averaged = F.avg_pool2d(x, 2)
        same = F.max_pool2d(x, 3, 1, 1)  # stride 1: not a site
        indexed, _ = F.max_pool2d(x, 2, return_indices=True)  # for an unpool: left alone
        return torch.cat([self.conv(x), pooled, averaged, same[..., ::2, ::2], indexed], 1)


def test_functional_pools_become_sites():
    torch.manual_seed(8)
    model = FunctionalPools()
    x = torch.randn(2, 3, 12, 10)
    converted, changes = antialias(model, filter_size=1, example_input=x)
    assert [(c.name, c.kind) for c in changes] == [
        ("max_pool2d", "maxpool"), ("avg_pool2d", "avgpool"), ("conv", "conv"),
    ]  # fmt: skip
    # a one-tap blur is plain subsampling: the max-pool computes what it did
    torch.testing.assert_close(converted(x)[:, 4:7], model(x)[:, 4:7], rtol=0, atol=0)
    # the three subsample one input, so they count as one site
    names = [c.name for c in antialias(model, sites=1, example_input=x)[1]]
    assert names == ["max_pool2d", "avg_pool2d", "conv"]


class PoolingBlock(nn.Module):
    """A conv whose block pools with a function, as PyTorch's MNIST example does."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv(x)), 2)


class FunctionalOnly(nn.Module):
    """Downsampling by pooling functions only: in its own forward (``torch.max_pool2d`` too)
    and in a block that holds no site module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.block = PoolingBlock(4, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(F.avg_pool2d(self.block(x), 2).mean((2, 3)))


def test_pooling_functions_are_sites_without_any_site_module():
    """A forward's pooling calls are found wherever they are called; a one-tap filter keeps
    the max-pools' function."""
    torch.manual_seed(11)
    model = FunctionalOnly()
    _, changes = antialias(model, filter_size=1)
    assert [(c.name, c.kind) for c in changes] == [
        ("max_pool2d", "maxpool"), ("block.max_pool2d", "maxpool"), ("avg_pool2d", "avgpool"),
    ]  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    max_only, _ = antialias(model, filter_size=1, sites=2)
    torch.testing.assert_close(max_only(x), model(x))


class PoolingBesideAStem(nn.Module):
    """An untraceable forward that calls a strided stem and a block that pools with a
    function: each is traced on its own, and only the block's graph gains a pool module."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn_relu()
        self.block = PoolingBlock(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if x.sum() > 0:  # data-dependent: torch.fx cannot trace it
            x = -x
        return self.block(x)


class ReductionBlock(PoolingBlock):
    """A block from a package whose name starts with "torch" but is not PyTorch's, as
    torchvision's Inception blocks, which call ``F.max_pool2d``."""

    __module__ = "torchvision.models.inception"


def test_pooling_calls_are_found_in_any_graph_that_gains_a_pool_module():
    """The sites are found again when one graph of several gains a pool module; a block from
    torchvision is traced into as one's own is."""
    torch.manual_seed(12)
    x = torch.randn(2, 3, 16, 16)
    _, changes = antialias(PoolingBesideAStem(), filter_size=3, example_input=x)
    assert [c.name for c in changes] == ["stem.0", "block.max_pool2d"]
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), ReductionBlock(4, 6))
    converted, changes = antialias(model, filter_size=1, example_input=x)
    assert [c.name for c in changes] == ["1.max_pool2d"]
    torch.testing.assert_close(converted(x), model(x))


class HoldsAPoolingBlock(nn.Module):
    """A block that holds no site, only a block below it that pools with a function."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.inner = nn.Sequential(PoolingBlock(4, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.conv(x))


def test_a_pooling_call_nested_below_blocks_without_sites_is_a_site():
    """The graph goes into every module above a block that calls a pooling function (it had
    kept the outermost as one call, and the strided call there went unseen, unwarned); the
    pool module goes in the block that calls it."""
    torch.manual_seed(13)
    model = nn.Sequential(HoldsAPoolingBlock())
    x = torch.randn(2, 3, 16, 16)
    converted, changes = antialias(model, filter_size=1, example_input=x)
    assert [(c.name, c.kind) for c in changes] == [("0.inner.0.max_pool2d", "maxpool")]
    torch.testing.assert_close(converted(x), model(x))


class MaybePool(nn.Module):
    """A pooling call behind data-dependent control flow: torch.fx cannot trace this forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 3, 1, 1) if x.sum() > 0 else x


def test_a_pooling_caller_that_cannot_be_traced_stays_one_call():
    """Tracing into a module that calls a pooling function is a try: where its forward cannot
    be traced, the model's graph holds it as one call, as any other module, and a warning
    names it (a strided call there stays aliased)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.ReLU(), MaybePool())
    with pytest.warns(UserWarning, match=r"module '3' calls a pooling function .*TraceError"):
        _, changes = antialias(model)
    assert [c.name for c in changes] == ["0"]
    assert "ReLU → BlurPool(stride 2)" in changes[0].description


def test_a_model_without_a_site_is_refused():
    """Nothing to anti-alias is an error, not a copy of the baseline labelled anti-aliased."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match="no downsampling site to anti-alias"):
        antialias(model)
    assert antialias(model, placement="none")[1] == []


def test_an_example_the_model_cannot_take_is_named():
    """A bare RuntimeError from deep in the model had named neither argument nor cause."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match=r"fails on example_input of shape \(1, 3, 4, 4\)"):
        antialias(model, example_input=torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("placement", ["paper", "blur_before_conv"])
def test_the_original_networks_weights_load_strictly_into_the_converted_one(placement):
    """A pretrained checkpoint of the network before it was anti-aliased holds every key but
    the blurs' taps, which the converted modules keep from their construction."""
    torch.manual_seed(16)
    trained = _randomise_bn(build_model("resnet18", width=4))
    net, _ = antialias(build_model("resnet18", width=4), filter_size=3, placement=placement)
    net.load_state_dict(trained.state_dict())
    expected, _ = antialias(trained, filter_size=3, placement=placement)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net.eval()(x), expected.eval()(x))
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*fc.weight"):
        net.load_state_dict({k: v for k, v in trained.state_dict().items() if k != "fc.weight"})


def test_a_compiled_model_is_refused_with_what_to_convert():
    compiled = torch.compile(build_model("vgg", width=4))
    with pytest.raises(ValueError, match=r"torch.compile wrapper.*model._orig_mod"):
        antialias(compiled)


def test_what_is_not_a_module_is_refused_by_its_type():
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got str 'vgg'"):
        antialias("vgg")


def test_a_model_on_the_meta_device_is_refused_with_the_reason():
    with torch.device("meta"):
        model = build_model("resnet18", width=4)
    with pytest.raises(ValueError, match=r"model's 'stem.0.weight' is on the meta device: .* CPU"):
        antialias(model)
    cpu_model = build_model("resnet18", width=4)
    with pytest.raises(ValueError, match=r"example_input is on the meta device"):
        antialias(cpu_model, example_input=torch.zeros(2, 3, 32, 32, device="meta"))


def test_a_model_with_extra_state_and_lazy_parameters_converts():
    """The meta check reads parameters and buffers, not the state dict, which holds a
    module's extra state (any object) too."""

    class WithExtraState(nn.Sequential):
        def get_extra_state(self) -> dict:
            return {"version": 2}

        def set_extra_state(self, state: dict) -> None:
            pass

    model = WithExtraState(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.LazyConv2d(4, 3))
    x = torch.randn(1, 3, 12, 12)
    net, changes = antialias(model, example_input=x)
    assert len(changes) == 1 and net(x).shape == model(x).shape


@pytest.mark.parametrize(
    ("pool", "description"),
    [
        (nn.AvgPool2d(3, 2, 1), "AvgPool(3, stride 1, padding 1) → BlurPool(stride 2)"),
        (nn.AvgPool2d(3, 2, 1, count_include_pad=False), "AvgPool(3, stride 1, padding 1) →"),
        (nn.AvgPool2d(4, 2), "AvgPool(4, stride 1, padding 0) → BlurPool(stride 2)"),
        (nn.AvgPool2d(2, 2), "BlurPool(stride 2)"),
        # a sum-pool (a divisor of its own) is a scaled box: kept, with its scale
        (nn.AvgPool2d(2, 2, divisor_override=1), "AvgPool(2, stride 1, padding 0) → BlurPool"),
        # a dense box has no windows past the map for a ceil-mode pool: the paper's form
        (nn.AvgPool2d(3, 2, ceil_mode=True), "BlurPool(stride 2), on the ceil-mode pool's"),
    ],
)
def test_an_average_pool_keeps_its_box_where_a_dense_box_keeps_its_grid(pool, description):
    """AvgPool(k, s) with k != s or padding filters with its box at stride 1 before the blur,
    so a one-tap filter computes the pool itself; AvgPool(k, k), and a ceil-mode pool (whose
    windows past the map a dense box lacks), take the paper's BlurPool."""
    torch.manual_seed(13)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), pool)
    x = torch.randn(2, 3, 14, 11)
    converted, changes = antialias(model, filter_size=1, example_input=x)
    assert changes[0].description.startswith(description)
    if description.startswith("AvgPool"):
        torch.testing.assert_close(converted(x), model(x))


def test_a_ceil_mode_sum_pool_is_refused_by_name():
    """Its scale would go with its box, and a dense box has no ceil windows to keep it in."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(2, ceil_mode=True,
                                                                     divisor_override=1))
    with pytest.raises(ValueError, match=r"average-pool site '1' in ceil mode with divisor_ov"):
        antialias(model, filter_size=3)


class GlobalPoolHead(nn.Module):
    """A strided conv, then a final pool whose window covers the map (``F.avg_pool2d(out, 4)``
    on a CIFAR ResNet's 4×4 map), as a module or as a call."""

    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.pool = None if functional else nn.AvgPool2d(8)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = F.max_pool2d(x, (8, 9), padding=(0, 1)) if self.pool is None else self.pool(x)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("functional", [False, True])
def test_a_global_pool_is_not_a_site(functional):
    """A pool with one window over the whole map does not alias: it is left as it is (a
    blur-pool in its place would no longer average or take the max of the whole map)."""
    torch.manual_seed(9)
    model = GlobalPoolHead(functional)
    x = torch.randn(2, 3, 16, 15)
    converted, changes = antialias(model, filter_size=3, example_input=x)
    assert [c.name for c in changes] == ["conv"]
    seen = {}
    for name in ("conv_blur", "fc"):  # the map the pool takes, and what the pool gave
        converted.get_submodule(name).register_forward_hook(
            lambda _m, args, out, name=name: seen.update({name: (args[0], out)})
        )
    converted(x)
    blurred, pooled = seen["conv_blur"][1], seen["fc"][0]
    expected = blurred.amax((2, 3)) if functional else blurred.mean((2, 3))
    torch.testing.assert_close(pooled, expected)


@pytest.mark.parametrize(
    ("site", "shape"),
    [
        (nn.Conv2d(4, 4, 4, stride=4), (4, 4)),  # a conv is never a global pool
        (nn.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 2)),  # two windows each way
        (nn.MaxPool2d(3, 2), (4, 3)),  # one window, which misses the last row
        (nn.MaxPool2d(3, 3, 1), (3, 3)),  # one padded window, which misses the last row
    ],
)
def test_only_a_pool_whose_one_window_covers_the_map_is_global(site, shape):
    """A patchifying conv down to 1×1 still subsamples, and so does a pool whose windows do
    not each cover the whole map, though it makes one output pixel."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), site)
    x = torch.randn(2, 3, *shape)
    converted, changes = antialias(model, filter_size=3, example_input=x)
    assert [c.name for c in changes] == ["1"]
    assert converted(x).shape == model(x).shape


class TutorialNet(nn.Module):
    """PyTorch's CIFAR-10 tutorial net: one max-pool module, called after convs of 6 and of 16
    channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("subsample", ["fixed", "lps"])
def test_each_call_of_a_shared_pool_is_a_site_of_its_own(subsample):
    """Each call gets a replacement for its own channels (and, under LPS, its own scorer); a
    one-tap blur keeps the net's function."""
    torch.manual_seed(10)
    model = TutorialNet()
    converted, changes = antialias(model, filter_size=1, subsample=subsample)
    assert [c.name for c in changes] == ["pool", "pool2"]
    lps_modules = [m for m in converted.modules() if isinstance(m, PolyphasePool2d)]
    assert len(lps_modules) == (2 if subsample == "lps" else 0)
    x = torch.randn(2, 3, 32, 32)
    if subsample == "fixed":
        torch.testing.assert_close(converted(x), model(x))


class UntraceableTutorialNet(TutorialNet):
    """TutorialNet whose forward branches on the data, so that no graph can split its pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        if x.sum() > 0:
            x = 2 * x
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def test_a_shared_pool_no_graph_can_split_is_refused_by_name():
    """Met at 6 and then 16 channels with no graph to give each call a pool of its own, the
    converted pool (made for one channel count) had failed inside the model's forward."""
    with pytest.raises(ValueError, match=r"site 'pool' is one pool called at 6 and 16 channels"):
        antialias(UntraceableTutorialNet(), filter_size=3)


class TutorialNetPooledAgain(TutorialNet):
    """TutorialNet that ends with a pooling call: one graph gains a pool module and splits a
    shared one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return F.avg_pool2d(x, 2)


class UntraceablePooledTwice(nn.Module):
    """One pool called twice at the same channels, in a forward no graph reaches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        if x.sum() > 0:  # data-dependent: torch.fx cannot trace it
            x = -x
        return self.pool(F.relu(self.conv2(x)))


def test_a_shared_pool_is_split_beside_a_pooling_call_or_kept_at_one_channel_count():
    """A graph that gains a pool module for a pooling call still gives each call of a shared
    pool its own; with no graph, a pool called twice at one channel count is one site, its
    shapes those of its first call."""
    torch.manual_seed(14)
    model = TutorialNetPooledAgain()
    converted, changes = antialias(model, filter_size=1)
    assert [c.name for c in changes] == ["pool", "pool2", "avg_pool2d"]
    x = torch.randn(2, 3, 32, 32)
    assert converted(x).shape == model(x).shape == (2, 16, 2, 2)
    model = UntraceablePooledTwice()
    x = torch.randn(2, 3, 16, 16)
    converted, (change,) = antialias(model, filter_size=3, example_input=x)
    assert change.name == "pool" and "no graph" in change.description
    assert converted(x).shape == model(x).shape


class Shortcut(nn.Module):
    """A strided 1×1 conv → BN that no ReLU follows, as on a ResNet's shortcut."""

    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 1, stride=2, bias=bias)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("padding", ["reflect", "zeros", "circular"])
@pytest.mark.parametrize("placement", ["paper", "blur_before_relu"])
def test_blur_goes_before_a_pointwise_conv_and_computes_the_same(placement, padding, bias):
    """Blur → 1×1 conv is the paper's conv → blur, with the conv on a quarter of the pixels;
    a conv with a bias keeps the blur after it (a blur of the bias near zero padding differs)."""
    torch.manual_seed(3)
    x = torch.randn(2, 4, 11, 9, dtype=torch.float64)
    model = _randomise_bn(Shortcut(bias)).double()
    converted, (change,) = antialias(
        model, placement=placement, filter_size=3, padding=padding, example_input=x
    )
    seen = []
    converted.conv.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape))
    dense = F.conv2d(x, model.conv.weight, model.conv.bias)
    expected = model.bn(blur_pool2d(dense, 3, 2, padding, backend="torch"))
    torch.testing.assert_close(converted.eval()(x), expected, rtol=1e-12, atol=1e-12)
    blurred_first = change.description.startswith("BlurPool")
    assert blurred_first == (not bias)
    assert seen == [(2, 4, 6, 5) if blurred_first else x.shape]


class PooledThrice(nn.Module):
    """One max-pool called after convs of 4, 6 and 8 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, c + 2, 3, padding=1) for c in (2, 4, 6))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = self.pool(conv(x))
        return x


def test_each_of_three_calls_of_a_shared_pool_gets_a_pool_of_its_own():
    model = PooledThrice()
    x = torch.randn(2, 2, 16, 16)
    converted, changes = antialias(model, filter_size=1, example_input=x)
    assert [c.name for c in changes] == ["pool", "pool2", "pool3"]
    torch.testing.assert_close(converted(x), model(x))


def test_a_strided_one_by_one_conv_with_valid_padding_is_blurred_before():
    """``padding="valid"`` is no padding: the blur goes before the 1×1 conv, as with 0."""
    torch.manual_seed(3)
    model = Shortcut(bias=False)
    model.conv = nn.Conv2d(4, 6, 1, stride=2, padding="valid", bias=False)
    model = _randomise_bn(model)
    x = torch.randn(2, 4, 11, 9)
    converted, (change,) = antialias(model, filter_size=3, example_input=x)
    assert change.description.startswith("BlurPool(stride 2) → Conv 1×1(stride 1)")
    expected = model.bn(blur_pool2d(F.conv2d(x, model.conv.weight), 3, 2, backend="torch"))
    torch.testing.assert_close(converted.eval()(x), expected, rtol=1e-5, atol=1e-5)


def test_maxpool_placements_match_hand_built_references():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    x = torch.randn(2, 3, 10, 14)
    features = model[1](model[0](x))
    paper, _ = antialias(model, placement="paper", filter="box", filter_size=2, example_input=x)
    expected = max_blur_pool2d(features, 2, 2, "reflect", filter="box", backend="torch")
    torch.testing.assert_close(paper(x), expected)
    before_max, _ = antialias(model, placement="blur_before_max", example_input=x)
    expected = F.max_pool2d(blur_pool2d(features, 4, 1, "reflect", backend="torch"), 2)
    torch.testing.assert_close(before_max(x), expected)


@pytest.mark.parametrize(
    "pool", [nn.MaxPool2d(2, dilation=2), nn.MaxPool2d(2, return_indices=True)]
)
def test_a_max_pool_that_dilates_or_returns_indices_is_refused_by_name(pool):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), pool)
    with pytest.raises(ValueError, match=r"max-pool site '1' with return_indices or dilation"):
        antialias(model, example_input=torch.randn(1, 3, 8, 8))


class SamePaddingMaxPool(nn.MaxPool2d):
    """A max-pool that pads itself with -inf to ceil(size / stride) outputs, as timm's
    MaxPool2dSame (PNASNet's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size, stride, kernel = x.shape[-1], self.stride[0], self.kernel_size
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        x = F.pad(x, (total // 2, total - total // 2) * 2, value=-math.inf)
        return F.max_pool2d(x, kernel, self.stride)


@pytest.mark.parametrize("size", [9, 10])
def test_maxpool_subclass_keeps_its_own_padding_at_stride_1(size):
    torch.manual_seed(10)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), SamePaddingMaxPool(3, stride=(2, 2)))
    x = torch.randn(2, 3, size, size)
    converted, (change,) = antialias(model, filter_size=3, example_input=x)
    assert change.description.startswith("SamePaddingMaxPool(3, stride 1) → BlurPool(stride 2)")
    dense = F.max_pool2d(F.pad(model[0](x), (1, 1, 1, 1), value=-math.inf), 3, 1)
    expected = blur_pool2d(dense, 3, 2, backend="torch")
    assert expected.shape == model(x).shape
    torch.testing.assert_close(converted(x), expected)


def test_avgpool_becomes_blurpool():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(2))
    x = torch.randn(1, 3, 8, 8)
    converted, (change,) = antialias(model, example_input=x)
    assert change.kind == "avgpool" and _counts(converted) == (1, 0)
    torch.testing.assert_close(converted(x), blur_pool2d(model[0](x), 4, 2, backend="torch"))


@pytest.mark.parametrize("filter_size", [4, 1])
def test_custom_taps_set_the_size_whatever_filter_size_says(filter_size):
    """With ``filter="custom"`` the taps are the filter; ``filter_size`` (4 by default) is not
    used, so it cannot conflict with them."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(2))
    x = torch.randn(1, 3, 8, 8)
    converted, (change,) = antialias(
        model, filter="custom", taps=[1.0, 2.0, 1.0], filter_size=filter_size, example_input=x
    )
    assert not change.keeps_function
    expected = blur_pool2d(model[0](x), None, 2, filter="custom", taps=[1.0, 2.0, 1.0])
    torch.testing.assert_close(converted(x), expected)


def test_a_custom_one_tap_filter_at_a_max_pool_keeps_its_function():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2))
    x = torch.randn(1, 3, 8, 8)
    converted, (change,) = antialias(model, filter="custom", taps=[1.0], example_input=x)
    assert change.keeps_function
    torch.testing.assert_close(converted(x), model(x))


@pytest.mark.parametrize(
    "site", [nn.Conv2d(4, 4, 3, (1, 2), 1), nn.MaxPool2d(2, (1, 2)), nn.AvgPool2d(2, (1, 2))]
)
def test_a_site_that_subsamples_one_axis_only_is_refused_by_name(site):
    """A stride of (1, 2) subsamples: the site is found, and refused, not left aliased."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), site)
    with pytest.raises(ValueError, match=r"site '1' has stride=\(1, 2\): only square strides"):
        antialias(model, example_input=torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, (1, 1), 1), nn.AvgPool2d(3, (1, 1), 1)])
def test_a_pool_whose_stride_is_the_pair_one_one_is_not_a_site(pool):
    """A stride written (1, 1) does not subsample, as a stride of 1 does not."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), pool)
    _, changes = antialias(model, example_input=torch.randn(1, 3, 8, 8))
    assert [c.name for c in changes] == ["0"]


def test_sites_and_stem_select_sites_in_execution_order():
    model = build_model("vgg", width=4)

    def converted(**kwargs) -> list[str]:
        return [c.name for c in antialias(model, **kwargs)[1]]

    assert converted(sites=2) == SITES["vgg"][:2]
    assert converted(antialias_stem=False) == SITES["vgg"][1:]
    assert converted(sites=2, antialias_stem=False) == SITES["vgg"][1:3]
    assert converted(sites=0) == []
    assert converted(sites=len(SITES["vgg"])) == converted()
    with pytest.raises(ValueError, match=r"sites=5: the network has 4 site\(s\); give 0 to 4"):
        converted(sites=5)
    with pytest.raises(ValueError, match=r"sites=4: .* 3 site\(s\) past the stem"):
        converted(sites=4, antialias_stem=False)
    # a residual block's strided conv and shortcut subsample one grid: taken or left together
    resnet = build_model("resnet18", width=4)
    names = [c.name for c in antialias(resnet, sites=1)[1]]
    assert names == ["layer2.0.conv1", "layer2.0.shortcut.0"]
    names = [c.name for c in antialias(resnet, antialias_stem=False, sites=1)[1]]
    assert names == ["layer3.0.conv1", "layer3.0.shortcut.0"]


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: stride on conv1, downsample Sequential on the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5): the stride sits on the 3×3 conv2."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class TorchvisionStyleResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(4, 4)
        self.layer2 = BasicBlock(4, 8, stride=2)
        self.layer3 = Bottleneck(8, 4, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


TORCHVISION_SITES = [
    "conv1",
    "maxpool",
    "layer2.downsample.0",
    "layer2.conv1",
    "layer3.conv2",
    "layer3.downsample.0",
]


@pytest.mark.parametrize("placement", ["paper", "blur_before_relu", "blur_before_conv"])
@pytest.mark.parametrize("size", [32, 37])
def test_torchvision_style_resnet_converts(placement, size):
    torch.manual_seed(4)
    model = _randomise_bn(TorchvisionStyleResNet())
    x = torch.randn(2, 3, size, size)
    converted, changes = antialias(model, placement=placement, example_input=x)
    assert [c.name for c in changes] == TORCHVISION_SITES
    assert _counts(converted) == (6, 0)  # a padded max-pool becomes MaxPool(3, 1, 1) → blur
    assert converted.eval()(x).shape == (2, 10)
    assert "padding 1" in changes[1].description

    kept_stem, changes = antialias(model, antialias_stem=False, example_input=x)
    assert [c.name for c in changes] == TORCHVISION_SITES[1:]
    assert kept_stem.get_submodule("conv1").stride == (2, 2)
    assert kept_stem.eval()(x).shape == (2, 10)


@pytest.mark.parametrize("subsample", ["aps", "lps"])
def test_a_bottlenecks_strided_conv_and_shortcut_keep_one_component(subsample):
    """The 3×3 conv subsamples the output of a 1×1 conv of the block's input, the shortcut the
    input itself: one grid, so one choice, as in a basic block."""
    model = _randomise_bn(TorchvisionStyleResNet())
    converted, _ = antialias(model, filter_size=3, subsample=subsample)
    pools = {n: m for n, m in converted.named_modules() if isinstance(m, PolyphasePool2d)}
    links = {name.split(".")[0]: pool.link for name, pool in pools.items() if pool.link}
    assert sorted(links) == ["layer2", "layer3"]
    for block in ("layer2", "layer3"):
        linked = [pool for name, pool in pools.items() if name.startswith(f"{block}.")]
        assert len(linked) == 2 and all(pool.link is links[block] for pool in linked)


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self, with_conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2 if with_conv else 1, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.sum() > 0:
            x = -x
        return self.pool(F.relu(x))


def test_untraceable_model_falls_back_to_module_replacement():
    x = torch.randn(2, 3, 16, 16)
    converted, changes = antialias(Untraceable(with_conv=True), placement="blur_before_conv")
    assert [c.name for c in changes] == ["conv", "pool"]
    assert all("[module replaced: the model has no graph]" in c.description for c in changes)
    assert converted(x).shape == (2, 4, 4, 4)
    pooled, _ = antialias(Untraceable(with_conv=False), placement="paper")
    assert _counts(pooled) == (0, 1) and pooled(x).shape == (2, 4, 8, 8)


class HoldsAnUntraceable(nn.Module):
    """An untraceable forward around an untraceable module that holds a pool."""

    def __init__(self) -> None:
        super().__init__()
        self.body = Untraceable(with_conv=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent: torch.fx cannot trace it
            x = -x
        return self.body(x)


def test_a_site_in_an_untraceable_module_inside_another_is_replaced_under_its_name():
    x = torch.randn(2, 3, 16, 16)
    converted, (change,) = antialias(HoldsAnUntraceable(), filter_size=3, example_input=x)
    assert change.name == "body.pool"
    assert change.description.endswith("[module replaced: module 'body' has no graph]")
    assert isinstance(converted.body.pool, MaxBlurPool2d) and converted(x).shape == (2, 4, 8, 8)


@pytest.mark.parametrize("placement", ["paper", "blur_before_relu", "blur_before_max"])
def test_untraceable_model_with_graph_placement_is_refused(placement):
    with pytest.raises(
        ValueError, match=rf"placement '{placement}'.*'conv'.*the model has no graph \(TraceError"
    ):
        antialias(Untraceable(with_conv=True), placement=placement)


class AuxiliaryOutput(nn.Module):
    """Returns an auxiliary output in training only, as torchvision's GoogLeNet and Inception
    v3 do: a graph traced in either mode would return the same thing in both."""

    def __init__(self, untraceable: bool = False) -> None:
        super().__init__()
        self.stem = _conv_bn_relu()
        self.pool = nn.MaxPool2d(2)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor):
        x = self.stem(x)
        if self.untraceable and x.sum() > 0:  # data-dependent: torch.fx cannot trace it
            x = x * 1.0
        out = self.pool(x).mean((2, 3))
        return (out, x.mean((2, 3))) if self.training else out


@pytest.mark.parametrize("untraceable", [False, True])
def test_model_that_branches_on_the_mode_keeps_both_modes(untraceable):
    """Its forward stays Python; the stem it calls is traced on its own, so the paper's blur
    still goes after the stem's ReLU."""
    torch.manual_seed(8)
    model = _randomise_bn(AuxiliaryOutput(untraceable))
    x = torch.randn(2, 3, 12, 10)
    converted, (stem, pool) = antialias(model, filter_size=3, example_input=x)
    assert stem.description.startswith("Conv(stride 1) → BN → ReLU → BlurPool(stride 2)")
    assert pool.description.endswith("[module replaced: the model has no graph]")
    expected = max_blur_pool2d(_blurred_stem(model.stem, x), 3, 2, backend="torch")
    torch.testing.assert_close(converted.eval()(x), expected.mean((2, 3)))
    out, aux = converted.train()(x)
    assert out.shape == aux.shape == (2, 4)


class DropoutHead(nn.Module):
    """Passes its mode to a function, as timm's classifier heads do."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn_relu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.stem(x), p=0.5, training=self.training)


def test_mode_passed_to_a_function_is_read_when_the_graph_runs():
    torch.manual_seed(9)
    model = _randomise_bn(DropoutHead())
    x = torch.randn(2, 3, 12, 10)
    converted, (change,) = antialias(model, filter_size=3, example_input=x)
    assert "no graph" not in change.description
    torch.testing.assert_close(converted.eval()(x), _blurred_stem(model.stem, x))
    dropped = converted.train()(x) == 0
    assert 0.25 < dropped.float().mean() < 0.75


class ConvInModeBranchingForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        return x if self.training else x.flip(-1)


def test_conv_whose_relu_lies_in_a_mode_branching_forward_is_refused_with_the_reason():
    with pytest.raises(
        ValueError, match=r"'conv'.*the model has no graph \(its forward branches on"
    ):
        antialias(ConvInModeBranchingForward(), example_input=torch.randn(1, 3, 8, 8))


def test_shape_that_cannot_be_kept_is_refused():
    """Polyphase sampling keeps its rows (floor(9/2) != ceil(9/2)); BlurPool → Conv(stride 1)
    cannot keep a patchifying conv's, and the site is named although the model then fails
    further on (its 16 rows become 1 where the original makes 4, too few for the next conv)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(2))
    with pytest.raises(
        ValueError, match=r"site '1'.*cannot keep its shape; adaptive and learnable polyphase"
    ):
        antialias(model, subsample="aps", example_input=torch.randn(1, 3, 9, 9))
    patchify = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.Conv2d(4, 4, 4, stride=4))
    with pytest.raises(ValueError, match=r"site '0'.*torch.Size.*1, 1.*placement 'paper'"):
        antialias(patchify, placement="blur_before_conv", example_input=torch.randn(1, 3, 16, 16))


def test_converted_model_runs_channels_last():
    torch.manual_seed(5)
    model = _randomise_bn(build_model("resnet18", width=4))
    converted, _ = antialias(model)
    x = torch.randn(2, 3, 32, 32)
    out = converted.eval()(x)
    converted.to(memory_format=torch.channels_last)
    last = converted(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last, out, rtol=1e-4, atol=1e-5)


def _shift_change(model: nn.Module, x: torch.Tensor) -> float:
    """Max |logits(roll(x)) - logits(x)| over odd, even and mixed circular shifts, as a share
    of how much the logits change for another input altogether (a fresh net's logits hardly
    depend on the input, so an absolute bound would say little)."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        other = (model(torch.randn_like(x)) - logits).abs().max().item()
        shifted = max(
            (model(torch.roll(x, shift, dims=(2, 3))) - logits).abs().max().item()
            for shift in [(1, 0), (0, 1), (1, 3), (-5, 2), (7, -9)]
        )
    return shifted / other


@pytest.mark.parametrize("filter_size", [1, 3])
@pytest.mark.parametrize(
    ("name", "placement"),
    [
        ("vgg", "paper"),
        ("resnet18", "paper"),
        ("resnet18", "blur_before_relu"),
        ("resnet18", "blur_before_conv"),
    ],
)
def test_aps_with_circular_padding_is_exactly_shift_invariant(name, placement, filter_size):
    """APS everywhere, circular padding in blurs and convs, a global pool: logits do not move
    under circular shifts; the same net subsampling on the fixed grid does move."""
    torch.manual_seed(7)
    model = build_model(name, width=4, conv_padding="circular")
    x = torch.randn(3, 3, 32, 32)
    options = {"filter_size": filter_size, "padding": "circular", "placement": placement}
    aps, changes = antialias(model, subsample="aps", **options)
    fixed, _ = antialias(model, **options)
    assert all("APS(stride 2)" in change.description for change in changes)
    assert _shift_change(aps, x) < 1e-4
    assert _shift_change(fixed, x) > 0.05


def test_aps_of_a_residual_block_shares_one_grid_between_main_path_and_shortcut():
    torch.manual_seed(8)
    model = build_model("resnet18", width=4, conv_padding="circular")
    converted, _ = antialias(model, filter_size=3, padding="circular", subsample="aps")
    pools = {name: m for name, m in converted.named_modules() if isinstance(m, PolyphasePool2d)}
    assert len(pools) == 6
    for stage in (2, 3, 4):
        main, shortcut = (pools[f"layer{stage}.0.{s}_blur.1"] for s in ("conv1", "shortcut.0"))
        assert main.link is not None and main.link is shortcut.link
    assert len({id(m.link) for m in pools.values()}) == 3
    x = torch.randn(2, 3, 32, 32)
    assert _shift_change(converted, x) < 1e-4
    for pool in pools.values():  # unlinked, each picks on its own: the invariance is lost
        pool.link = None
    assert _shift_change(converted, x) > 0.01


@pytest.mark.parametrize("name", ["vgg", "resnet18"])
def test_lps_with_circular_padding_is_exactly_shift_invariant_in_evaluation(name):
    """As APS, with learned terms that move the choice away from APS's (they start at zero);
    each leading site scores with its own weights, a shortcut follows its main path."""
    torch.manual_seed(9)
    model = build_model(name, width=4, conv_padding="circular")
    lps, changes = antialias(model, filter_size=3, padding="circular", subsample="lps")
    assert all("LPS(stride 2)" in change.description for change in changes)
    pools = [m for m in lps.modules() if isinstance(m, PolyphasePool2d)]
    leaders = [m for m in pools if m.scorer is not None]
    assert len(leaders) == (4 if name == "vgg" else 3) and len(pools) == (4 if name == "vgg" else 6)
    for pool in leaders:
        nn.init.normal_(pool.scorer.logit.weight, std=2.0)
    x = torch.randn(3, 3, 32, 32)
    assert _shift_change(lps, x) < 1e-4
    aps, _ = antialias(model, filter_size=3, padding="circular", subsample="aps")
    with torch.no_grad():
        assert not torch.allclose(lps.eval()(x), aps.eval()(x))


@pytest.mark.parametrize(
    ("pool", "dense"),
    [
        (nn.MaxPool2d(3, 2, 1), "MaxPool(3, stride 1, padding 1 wrapping around)"),
        (nn.MaxPool2d(4, 2, 1), "MaxPool(4, stride 1, padding 1 wrapping around)"),
        (nn.AvgPool2d(4, 2, 1), "AvgPool(4, stride 1, padding 1 wrapping around)"),
    ],
)
def test_a_padded_pool_under_aps_with_circular_padding_is_exactly_shift_invariant(pool, dense):
    """torchvision's MaxPool(3, 2, 1) padded with -inf would see the map's edge; wrapping
    around (as many rows after the map as its window needs, also for an even window), the
    site commutes with circular shifts as an unpadded one does."""
    torch.manual_seed(12)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        pool,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    x = torch.randn(3, 3, 16, 16)
    converted, changes = antialias(
        model, filter_size=3, padding="circular", subsample="aps", example_input=x
    )
    assert changes[0].description.startswith(dense)
    assert _shift_change(converted, x) < 1e-4


def test_aps_max_sites_keep_the_spec_max_unless_the_padding_is_circular():
    model = _randomise_bn(build_model("vgg", width=4))
    converted, changes = antialias(model, filter_size=3, padding="reflect", subsample="aps")
    assert changes[0].description == "MaxBlurPool(max 2, stride 1) → APS(stride 2)"
    site = converted.get_submodule("features.1")
    x = torch.randn(2, 4, 32, 32)
    dense = max_blur_pool2d(x, 3, stride=1, padding="reflect")
    torch.testing.assert_close(site(x), PolyphasePool2d(2)(dense))
    # circular: the max wraps, so a 31-pixel map makes 16 rows where MaxPool(2, 2) made 15
    with pytest.raises(ValueError, match="cannot keep its shape"):
        example = torch.zeros(1, 3, 31, 31)
        antialias(model, padding="circular", subsample="aps", example_input=example)


def test_a_wrapped_max_takes_the_pools_windows_running_past_the_maps_end():
    """Under polyphase sampling with circular padding, MaxPool(2, 2)'s dense max is each window
    of the pool at stride 1, its last rows and columns wrapping to the first: none starts
    before the map."""
    torch.manual_seed(12)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
    x = torch.randn(2, 3, 16, 16)
    converted, (change,) = antialias(
        model, filter_size=3, padding="circular", subsample="aps", example_input=x
    )
    assert change.description.startswith("MaxBlurPool(max 2, wrapping around, stride 1)")
    features = torch.randn(2, 4, 16, 16)
    wrapped = F.pad(features, (0, 1, 0, 1), mode="circular")
    dense = max_blur_pool2d(wrapped, 3, stride=1, padding="circular", backend="torch")
    torch.testing.assert_close(converted.get_submodule("1")(features), PolyphasePool2d(2)(dense))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"placement": "after"}, "placement"),
        ({"subsample": "adaptive"}, "subsample"),
        ({"subsample": "aps", "placement": "blur_before_max"}, "subsample 'aps' needs placement"),
        ({"subsample": "lps", "placement": "blur_before_max"}, "subsample 'lps' needs placement"),
        ({"sites": -1}, "sites"),
        ({"sites": True}, "sites"),
        ({"antialias_stem": 1}, "antialias_stem"),
        ({"filter_size": 0}, "size"),
        ({"padding": "mirror"}, "padding"),
        ({"backend": "cuda"}, "backend"),
    ],
)
def test_bad_arguments_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        antialias(build_model("vgg", width=4), **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["vgg", "resnet18"])
def test_converted_model_compiles_on_cuda(name):
    torch.manual_seed(6)
    model = _randomise_bn(build_model(name, width=8)).cuda()
    converted, _ = antialias(model)
    converted = converted.to(memory_format=torch.channels_last).eval()
    x = torch.randn(4, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(torch.compile(converted)(x), converted(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("subsample", ["aps", "lps"])
def test_polyphase_networks_export_with_their_choice_in_the_graph(subsample):
    """torch.export keeps the per-image choice (and the shortcut's link) as graph ops: the
    exported net matches the eager one on inputs other than the example, shifted ones too."""
    model = build_model("resnet18", width=4, conv_padding="circular")
    net, _ = antialias(model, filter_size=3, padding="circular", subsample=subsample)
    net = _randomise_bn(net)
    exported = torch.export.export(net, (torch.randn(2, 3, 32, 32),)).module()
    x = torch.randn(2, 3, 32, 32)
    for shift in [(0, 0), (1, 3)]:
        shifted = torch.roll(x, shift, dims=(2, 3))
        torch.testing.assert_close(exported(shifted), net(shifted))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_converted_model_exports_with_a_bounded_image_size(layout):
    """torch.export with a named, bounded Dim of the height and width (the README's): the
    reference's products had left guards (is this map one row high?) that the exporter could
    not prove over the range, and the export was refused."""
    torch.manual_seed(15)
    net, _ = antialias(_randomise_bn(build_model("resnet18", width=4)), filter_size=4)
    net = net.to(memory_format=layout).eval()
    size = {2: torch.export.Dim("h", min=32, max=512), 3: torch.export.Dim("w", min=32, max=512)}
    example = torch.randn(2, 3, 32, 32).contiguous(memory_format=layout)
    exported = torch.export.export(net, (example,), dynamic_shapes=(size,)).module()
    for shape in [(2, 3, 45, 37), (2, 3, 32, 33)]:
        x = torch.randn(shape).contiguous(memory_format=layout)
        torch.testing.assert_close(exported(x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3)])
def test_a_pool_kept_on_its_grid_exports_with_a_dynamic_image_size(pool):
    """A floor-mode pool drops an odd map's last row, so its blur-pool is trimmed to the pool's
    rows (DenseNet's transitions): exported with a dynamic size, the trim had been a guard the
    exporter could not prove for odd sizes, and the export was refused."""
    torch.manual_seed(16)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(4, 4, 3)).eval()
    converted, (change,) = antialias(net, filter_size=3)
    assert "on the floor-mode pool's output grid" in change.description
    size = {2: torch.export.Dim("h", min=32, max=512), 3: torch.export.Dim("w", min=32, max=512)}
    exported = torch.export.export(converted, (torch.randn(2, 3, 32, 32),), dynamic_shapes=(size,))
    for shape in [(2, 3, 45, 37), (2, 3, 32, 33)]:
        x = torch.randn(shape)
        torch.testing.assert_close(exported.module()(x), converted(x))
        assert converted(x).shape == net(x).shape


@pytest.mark.parametrize("name", ["vgg", "resnet18"])
def test_converted_models_script(name):
    """TorchScript compiles the graphs (their modules' annotations, strings under
    ``from __future__ import annotations``, are left out of the generated code)."""
    torch.manual_seed(12)
    net, _ = antialias(_randomise_bn(build_model(name, width=4)), filter_size=3)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(torch.jit.script(net)(x), net(x))


def test_scripted_graph_reads_the_mode():
    x = torch.randn(2, 3, 12, 10)
    net, _ = antialias(_randomise_bn(DropoutHead()), filter_size=3, example_input=x)
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted.eval()(x), net.eval()(x))
    assert 0.25 < (scripted.train()(x) == 0).float().mean() < 0.75


@pytest.mark.parametrize("subsample", ["fixed", "lps"])
def test_converted_model_saves_loads_and_copies_after_a_training_step(subsample):
    """`torch.save(model)` loads back (torch.fx rebuilds each graph with the tracer's class)
    and a model copies after a training step (an LPS choice keeps no autograd graph)."""
    import copy
    import io

    torch.manual_seed(13)
    net, _ = antialias(build_model("resnet18", width=4), filter_size=3, subsample=subsample)
    x = torch.randn(2, 3, 32, 32)
    net.train()(x).sum().backward()
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    copied = copy.deepcopy(net)
    for other in (loaded, copied):
        torch.testing.assert_close(other.eval()(x), net.eval()(x))


def test_converted_model_exports_to_onnx_with_dynamic_axes():
    """The legacy exporter with `dynamic_axes` (and `output_names`, as the README says) gives a
    graph that runs at other image sizes."""
    import io

    ort = pytest.importorskip("onnxruntime", reason="running the ONNX graph needs onnxruntime")
    torch.manual_seed(14)
    net, _ = antialias(_randomise_bn(build_model("resnet18", width=4)), filter_size=3)
    buffer = io.BytesIO()
    axes = {"x": {0: "n", 2: "h", 3: "w"}}
    torch.onnx.export(net.eval(), (torch.randn(1, 3, 32, 32),), buffer, dynamo=False,
                      input_names=["x"], output_names=["logits"], dynamic_axes=axes)  # fmt: skip
    session = ort.InferenceSession(buffer.getvalue())
    x = torch.randn(2, 3, 40, 36)
    (out,) = session.run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), net(x), rtol=1e-4, atol=1e-4)


class _ConvOutputUsedTwice(nn.Module):
    """A strided conv whose output feeds its BN -> ReLU and, besides, a sum with their result."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.relu(self.bn(y)) + y


def test_a_conv_whose_output_has_other_users_is_blurred_right_after_it() -> None:
    """The blur goes after the conv's BN and ReLU only when they are its output's one user:
    here the sum reads the conv's output too, so the blur follows the conv itself and every
    user gets the subsampled map (after the ReLU, the sum's other input stayed at stride 1)."""
    model = _ConvOutputUsedTwice().eval()
    x = torch.randn(2, 3, 16, 16)
    converted, (change,) = antialias(model, placement="paper", example_input=x)
    assert change.name == "conv" and "the blur follows it directly" in change.description
    assert converted(x).shape == model(x).shape
