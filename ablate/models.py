"""CIFAR-sized baselines (32×32 inputs) whose downsampling `ablate.antialias` rewrites.

Both are plain networks as the anti-aliasing papers train them: every downsampling is a
max-pool or a strided convolution, so the converter has something to replace. `width` is the
channel count of the first stage; later stages double it. `conv_padding` is the 3×3
convolutions' padding mode: "circular" makes every convolution commute with circular shifts,
which exact shift invariance (adaptive polyphase sampling) needs. Both trace with `torch.fx`.
"""

from __future__ import annotations

from torch import Tensor, nn

MODELS = ("vgg", "resnet18")
CONV_PADDINGS = ("zeros", "circular")


def build_model(
    name: str, *, num_classes: int = 10, width: int = 16, conv_padding: str = "zeros"
) -> nn.Module:
    """A fresh baseline network `name` ("vgg" or "resnet18") for 3-channel 32×32 images."""
    for argument, value in (("num_classes", num_classes), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive int, got {value!r}")
    if conv_padding not in CONV_PADDINGS:
        raise ValueError(f"conv_padding must be one of {CONV_PADDINGS}, got {conv_padding!r}")
    if name == "vgg":
        return VGG(num_classes=num_classes, width=width, conv_padding=conv_padding)
    if name == "resnet18":
        return ResNet18(num_classes=num_classes, width=width, conv_padding=conv_padding)
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, padding_mode: str = "zeros"
) -> nn.Conv2d:
    """3×3 convolution, padding 1 in `padding_mode`, no bias."""
    return nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=1, bias=False, padding_mode=padding_mode
    )


def conv_bn_relu(
    in_channels: int, out_channels: int, stride: int = 1, padding_mode: str = "zeros"
) -> nn.Sequential:
    """3×3 convolution → BatchNorm → ReLU."""
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride, padding_mode),
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
