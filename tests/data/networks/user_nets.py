"""Networks of a user's own, as a study names them (`model: user_nets:small_cnn`)."""

from torch import nn


def small_cnn(num_classes: int, width: int = 4) -> nn.Module:
    """Takes `width` but not `conv_padding`; one max-pool and one strided conv to anti-alias."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


class KeywordNet(nn.Module):
    """Takes everything as **kwargs and forwards it on, like torchvision's model builders:
    anything but `num_classes` would break it."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__()
        self.body = small_cnn(**kwargs)

    def forward(self, x):
        return self.body(x)


class AuxiliaryOutput(nn.Module):
    """Returns an auxiliary output beside its logits in training, as GoogLeNet does."""

    def __init__(self, num_classes: int, width: int = 4) -> None:
        super().__init__()
        self.body = small_cnn(num_classes, width)

    def forward(self, x):
        logits = self.body(x)
        return (logits, logits) if self.training else logits


def with_dropout(num_classes: int) -> nn.Module:
    """Draws from the random state in training mode."""
    return nn.Sequential(nn.Dropout(0.5), small_cnn(num_classes))


def three_classes(num_classes: int) -> nn.Module:
    return small_cnn(3)


def not_a_network(num_classes: int) -> int:
    return num_classes


def for_large_images(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, num_classes))


def without_classes(width: int) -> nn.Module:
    return small_cnn(10, width)


def positional_classes(num_classes: int, /) -> nn.Module:
    return small_cnn(num_classes)


def frozen_norm(num_classes: int) -> nn.Module:
    """Its batch norm frozen in eval mode, as a fine-tuning recipe might leave it."""
    net = small_cnn(num_classes)
    net[1].eval()
    return net


LAYERS = 3
