"""The CIFAR-sized baselines: shapes, fx tracing, width, and their downsampling sites."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from ablate.models import MODELS, build_model, model_arguments


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_and_fx_trace_agree(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, width=4).eval()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    traced = fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), out, rtol=1e-5, atol=1e-5)
    channels_last = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_width_scales_channels(name):
    narrow, wide = build_model(name, width=4), build_model(name, width=8)
    first = next(m for m in narrow.modules() if isinstance(m, nn.Conv2d))
    assert first.out_channels == 4
    widest = max(m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d))
    assert widest == 64
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(
        p.numel() for p in narrow.parameters()
    )


def test_downsampling_sites_are_plain_baselines():
    vgg = build_model("vgg", width=4)
    pools = [m for m in vgg.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert all(m.stride == (1, 1) for m in vgg.modules() if isinstance(m, nn.Conv2d))

    resnet = build_model("resnet18", width=4)
    strided = [m for m in resnet.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert sorted(m.kernel_size for m in strided) == [(1, 1)] * 3 + [(3, 3)] * 3
    assert not any(isinstance(m, nn.MaxPool2d) for m in resnet.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in resnet.modules()) == 1 + 8 * 2 + 3


@pytest.mark.parametrize("name", MODELS)
def test_circular_conv_padding_commutes_with_circular_shifts(name):
    """Every 3x3 conv wraps around; the stride-1 stem's output then shifts with the input."""
    torch.manual_seed(1)
    model = build_model(name, width=4, conv_padding="circular").eval()
    padded = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.padding != (0, 0)]
    assert padded and all(m.padding_mode == "circular" for m in padded)
    stem = model.features[0] if name == "vgg" else model.stem
    x = torch.randn(2, 3, 16, 16)
    shifted = stem(torch.roll(x, (3, -5), dims=(2, 3)))
    torch.testing.assert_close(shifted, torch.roll(stem(x), (3, -5), dims=(2, 3)))
    zeros = build_model(name, width=4)
    assert all(m.padding_mode == "zeros" for m in zeros.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "vgg16"}, "model"),
        ({"width": 0}, "width"),
        ({"num_classes": 0}, "num_classes"),
        ({"conv_padding": "reflect"}, "conv_padding"),
        ({"image_size": 15}, "image_size=15 is too small for model 'vgg': it takes images of 16"),
    ],
)
def test_bad_arguments_are_named(kwargs, field):
    arguments = {"name": "vgg", **kwargs}
    with pytest.raises(ValueError, match=field):
        build_model(arguments.pop("name"), **arguments)


def test_a_network_of_your_own_gets_the_arguments_it_names(user_nets):
    """`num_classes` always; `width` and `conv_padding` only where the factory names them (a
    **kwargs factory gets `num_classes` alone: it often forwards them to a stricter class)."""
    small = build_model(f"{user_nets}:small_cnn", num_classes=7, width=6, conv_padding="circular")
    assert small[0].out_channels == 6 and small[-1].out_features == 7
    assert small.training  # the logits check runs in eval mode and leaves the mode as it was
    frozen = build_model(f"{user_nets}:frozen_norm")
    assert [m.training for m in frozen[:3]] == [True, False, True]
    assert model_arguments(f"{user_nets}:small_cnn") == {"num_classes", "width"}
    keyword = build_model(f"{user_nets}:KeywordNet", num_classes=5, width=8)
    assert keyword(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert model_arguments(f"{user_nets}:KeywordNet") == {"num_classes"}
    assert model_arguments("resnet18") == {"num_classes", "width", "conv_padding"}


def test_checking_a_network_changes_neither_its_statistics_nor_the_random_state(user_nets):
    """The training-mode check runs a copy (BatchNorm would update its statistics) with the
    random state kept (dropout would draw from it), so a study's runs stay reproducible."""
    import user_nets as module

    torch.manual_seed(0)
    net = build_model(f"{user_nets}:with_dropout")
    after_build = torch.rand(3)
    torch.manual_seed(0)
    module.with_dropout(num_classes=10)
    torch.testing.assert_close(after_build, torch.rand(3))
    norm = net[1][1]
    assert int(norm.num_batches_tracked) == 0 and torch.all(norm.running_var == 1)


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("resnet", ["'resnet' is unknown", "did you mean 'resnet18'", "package.module:function"]),
        ("user_nets:", ["'user_nets:' is unknown", "package.module:function"]),
        ("no_such_module:net", ["cannot import 'no_such_module'", "PYTHONPATH"]),
        ("user_nets:missing", ["'user_nets' has no attribute 'missing'"]),
        ("user_nets:LAYERS", ["not callable: it is of type int"]),
        ("user_nets:without_classes", ["takes no num_classes argument"]),
        ("user_nets:positional_classes", ["takes no num_classes argument", "by name"]),
        ("user_nets:not_a_network", ["returned an object of type int", "torch.nn.Module"]),
        ("user_nets:three_classes", ["maps 2 images to (2, 3)", "expected (2, 10)"]),
        ("user_nets:for_large_images", ["fails on a batch of 3×32×32 images"]),
        ("user_nets:AuxiliaryOutput", ["returns tuple in training mode", "aux_logits=False"]),
    ],
)
def test_a_bad_network_of_your_own_is_named_with_the_reason(user_nets, name, fragments):
    with pytest.raises(ValueError) as caught:
        build_model(name)
    for fragment in (f"model {name!r}", *fragments):
        assert fragment in str(caught.value)
