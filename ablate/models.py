"""CIFAR-style baselines (designed for 32×32 inputs; any size from 16 works) whose downsampling
`ablate.antialias` rewrites, and your own networks, named by import path.

Both baselines are plain networks as the anti-aliasing papers train them: every downsampling is a
max-pool or a strided convolution, so the converter has something to replace. `width` is the
channel count of the first stage; later stages double it. `conv_padding` is the 3×3
convolutions' padding mode: "circular" makes every convolution commute with circular shifts,
which exact shift invariance (adaptive polyphase sampling) needs. Both trace with `torch.fx`.

Any other network enters a study as `model: package.module:function`: a function (or an
`nn.Module` class) that takes `num_classes` and returns a network mapping N×3×S×S images to
N×`num_classes` logits, one tensor in training mode too (S is the dataset's image size: 32
unless a `folder` dataset sets `image_size`). It gets `width` and `conv_padding` too when it
names them as parameters. The module is imported where the run happens, so it must be
importable there (the folder the study is started from is on the path, and spawned workers
inherit it).
"""

from __future__ import annotations

import copy
import difflib
import importlib
import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ablate.modes import evaluating

MODELS = ("vgg", "resnet18")
#: The smallest image side a built-in network takes (VGG's four 2× pools leave 16 pixels one).
MIN_IMAGE_SIZE = {"vgg": 16}
CONV_PADDINGS = ("zeros", "circular")
#: What `build_model` can pass to a network's factory; a factory of your own gets what it names.
FACTORY_ARGUMENTS = ("num_classes", "width", "conv_padding")
ACCEPTED = f"one of {MODELS} or 'package.module:function', a function that builds your network"


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    width: int = 16,
    conv_padding: str = "zeros",
    image_size: int = 32,
) -> nn.Module:
    """A fresh network `name` for 3-channel `image_size`² images: a baseline ("vgg" or
    "resnet18") or the one your factory `package.module:function` builds (module docstring),
    checked to map such images to `num_classes` logits."""
    for argument, value in (
        ("num_classes", num_classes), ("width", width), ("image_size", image_size)
    ):  # fmt: skip
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive int, got {value!r}")
    if conv_padding not in CONV_PADDINGS:
        raise ValueError(f"conv_padding must be one of {CONV_PADDINGS}, got {conv_padding!r}")
    check_image_size(name, image_size)
    if name in MODELS:
        network = VGG if name == "vgg" else ResNet18
        model = network(num_classes=num_classes, width=width, conv_padding=conv_padding)
    else:
        offered = {"num_classes": num_classes, "width": width, "conv_padding": conv_padding}
        factory = model_factory(name)
        model = factory(**{key: offered[key] for key in factory_arguments(factory)})
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model {name!r} returned an object of type {type(model).__name__}: expected a "
                "torch.nn.Module"
            )
    _check_logits(model, name, num_classes, (3, image_size, image_size))
    return model


def check_image_size(name: str, image_size: int) -> None:
    """Raise ValueError where a built-in network cannot take `image_size`² images (a factory's
    network is checked when it is built)."""
    smallest = MIN_IMAGE_SIZE.get(name, 1)
    if image_size < smallest:
        raise ValueError(
            f"image_size={image_size} is too small for model {name!r}: it takes images of "
            f"{smallest} pixels and up"
        )


def check_model_name(name: str) -> str:
    """`name` if it is a baseline or a factory that imports and takes `num_classes`; else a
    ValueError that says what is accepted (the network itself is checked when it is built)."""
    if name not in MODELS:
        model_factory(name)
    return name


def model_arguments(name: str) -> frozenset[str]:
    """Which of FACTORY_ARGUMENTS the network `name` is built with (all, for the baselines)."""
    if name in MODELS:
        return frozenset(FACTORY_ARGUMENTS)
    return factory_arguments(model_factory(name))


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The callable that `package.module:function` names (dotted attributes allowed)."""
    module_name, colon, attribute = name.partition(":")
    if not colon or not module_name or not attribute:
        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"model {name!r} is unknown{hint}: expected {ACCEPTED}")
    try:
        factory = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"model {name!r}: cannot import {module_name!r} ({err}); the module must be "
            "importable where the run happens (the current folder or PYTHONPATH)"
        ) from err
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"model {name!r}: {module_name!r} has no attribute {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"model {name!r} is not callable: it is of type {type(factory).__name__}")
    if "num_classes" not in factory_arguments(factory):
        raise ValueError(
            f"model {name!r} takes no num_classes argument: a factory must take it (by name or "
            "through **kwargs) and return a network with that many outputs"
        )
    return factory


def factory_arguments(factory: Callable[..., nn.Module]) -> frozenset[str]:
    """FACTORY_ARGUMENTS that `factory` names as parameters; `num_classes` also when it takes
    **kwargs (which are often forwarded to a class that rejects the others)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): offer the minimum
        return frozenset({"num_classes"})
    named = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        named.add("num_classes")
    return frozenset(named.intersection(FACTORY_ARGUMENTS))


def _check_logits(
    model: nn.Module, name: str, num_classes: int, image_shape: tuple[int, int, int]
) -> None:
    """Raise ValueError unless `model` maps a batch of `image_shape` images to one logit per
    class; evaluated in eval mode, so batch-norm statistics stay as they are, and each module's
    mode is restored after."""
    try:
        with evaluating(model):
            out = model(torch.zeros(2, *image_shape))
    except Exception as err:  # any failure of user code is a bad model setting
        raise ValueError(
            f"model {name!r} fails on a batch of {'×'.join(map(str, image_shape))} images: {err}"
        ) from err
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"model {name!r} maps 2 images to {got}: expected (2, {num_classes}), one logit per "
            "class"
        )
    out = _training_output(model, image_shape)
    if not isinstance(out, Tensor):
        raise ValueError(
            f"model {name!r} returns {type(out).__name__} in training mode: expected the logits "
            "tensor it returns in evaluation, which is what training takes (a network with "
            "auxiliary outputs, such as torchvision's GoogLeNet or Inception v3: build it "
            "without them, aux_logits=False)"
        )


def _training_output(model: nn.Module, image_shape: tuple[int, int, int]) -> object:
    """`model`'s output in training mode, computed by a copy with the random state kept: the
    check changes neither its BatchNorm statistics nor what training will draw."""
    trainee = copy.deepcopy(model).train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        return trainee(torch.zeros(2, *image_shape))


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, padding_mode: str = "zeros"
) -> nn.Conv2d:
    """3×3 convolution, padding 1 in `padding_mode`, no bias."""
    return nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=1, bias=False, padding_mode=padding_mode
    )


def conv_bn_relu(in_channels: int, out_channels: int, padding_mode: str = "zeros") -> nn.Sequential:
    """3×3 convolution (stride 1) → BatchNorm → ReLU."""
    return nn.Sequential(
        conv3x3(in_channels, out_channels, padding_mode=padding_mode),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class VGG(nn.Module):
    """VGG-11-style: conv-BN-ReLU blocks, four MaxPool(2, 2) sites (32 → 2), global pool, linear.

    Stage layout in units of `width`: [1] M [2] M [4, 4] M [8, 8] M.
    """

    STAGES = ((1,), (2,), (4, 4), (8, 8))

    def __init__(self, num_classes: int = 10, width: int = 16, conv_padding: str = "zeros") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage in self.STAGES:
            for multiple in stage:
                layers.append(conv_bn_relu(channels, multiple * width, padding_mode=conv_padding))
                channels = multiple * width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity or 1×1 conv-BN shortcut; ReLU after the sum."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, conv_padding: str = "zeros"
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride, conv_padding)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels, padding_mode=conv_padding)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3×3 stride-1 stem, four stages of two BasicBlocks, global pool, linear.

    Stages have width, 2·width, 4·width, 8·width channels; stages 2–4 open with a stride-2
    block (strided 3×3 conv and strided 1×1 shortcut conv), so 32 → 4 over six sites.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, conv_padding: str = "zeros") -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, width, padding_mode=conv_padding)
        stages = []
        channels = width
        for index in range(4):
            out_channels = width * 2**index
            stride = 1 if index == 0 else 2
            stages.append(
                nn.Sequential(
                    BasicBlock(channels, out_channels, stride, conv_padding),
                    BasicBlock(out_channels, out_channels, conv_padding=conv_padding),
                )
            )
            channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))
