"""The paper's measurements of a trained classifier (spec §4), batched on the model's device.

Each function takes the model and test tensors (or, for consistency and the shift adversary, the
classes `classes_over_shifts` predicted) and returns plain floats, lists or dicts, so it can be
called on any model, not only inside `run_variant`. Images are processed in chunks of
`batch_size`; shifts are applied per chunk by `ablate.shifts`, never by a Python loop per image.
The model is evaluated in eval mode without autograd, in float32, and its mode is restored.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ablate.modes import evaluating
from ablate.polyphase import ComponentScorer
from ablate.shifts import CropFill, Offsets, ShiftKind, shift_images

EVAL_BATCH = 500


def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    *,
    offsets: Offsets | None = None,
    kind: ShiftKind = "circular",
    pad: int = 0,
    fill: CropFill = "zeros",
    batch_size: int = EVAL_BATCH,
) -> torch.Tensor:
    """Float32 logits of `model` on `x`, each image first shifted by its offset when given.

    `offsets` is one (dh, dw) pair or an N×2 tensor; `kind`, `pad` and `fill` are the shift
    protocol of `ablate.shifts.shift_images`. Shifting chunk by chunk keeps memory at one chunk.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if offsets is not None:
        offsets = torch.as_tensor(offsets, device=x.device)
    chunks = []
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            if offsets is not None:
                off = offsets if offsets.dim() == 1 else offsets[start : start + batch_size]
                xb = shift_images(xb, off, kind, pad=pad, fill=fill)
            chunks.append(model(xb).float())
    return torch.cat(chunks)


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = EVAL_BATCH
) -> float:
    """Clean accuracy, %."""
    _check_labelled(x, y)
    predictions = predict_logits(model, x, batch_size=batch_size).argmax(1)
    return _percent(predictions == y)


def classes_over_shifts(
    model: nn.Module,
    x: torch.Tensor,
    *,
    kind: ShiftKind,
    shift: int,
    pad: int = 0,
    fill: CropFill = "zeros",
    batch_size: int = EVAL_BATCH,
) -> torch.Tensor:
    """N×G predicted class of each image at every offset of [-shift, shift]² (G = (2·shift+1)²,
    row-major from (-shift, -shift)).

    Consistency and the shift adversary both read this one grid of predictions.
    """
    _check_labelled(x)
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    protocol = {"kind": kind, "pad": pad, "fill": fill, "batch_size": batch_size}
    return torch.stack(
        [
            predict_logits(model, x, offsets=offset, **protocol).argmax(1)
            for offset in itertools.product(range(-shift, shift + 1), repeat=2)
        ],
        dim=1,
    )


def consistency(classes: torch.Tensor) -> float:
    """% of images whose two shifted copies get the same class, the two offsets of each image
    drawn independently and uniformly from the grid of `classes_over_shifts` (spec §4).

    Computed as the draw's expected value: the mean over images of Σ_c p_c², p_c the share of
    offsets at which the image gets class c. Drawing one pair per image adds a coin flip per
    image whose noise, at a few hundred images, is as large as what blur changes.
    """
    _check_classes(classes)
    n, offsets = classes.shape
    counts = torch.zeros(n, int(classes.max()) + 1, device=classes.device)
    counts.scatter_add_(1, classes.long(), torch.ones_like(classes, dtype=counts.dtype))
    return 100.0 * ((counts / offsets) ** 2).sum(1).mean().item()


def accuracy_vs_shift(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kind: ShiftKind,
    diagonal: int,
    pad: int = 0,
    fill: CropFill = "zeros",
    batch_size: int = EVAL_BATCH,
) -> tuple[list[float], list[float]]:
    """Accuracy (%) and mean true-class probability at diagonal offsets (d, d), d = 0..diagonal."""
    _check_labelled(x, y)
    if diagonal < 0:
        raise ValueError(f"diagonal must be >= 0, got {diagonal}")
    accuracies, true_probs = [], []
    for d in range(diagonal + 1):
        logits = predict_logits(
            model, x, offsets=(d, d), kind=kind, pad=pad, fill=fill, batch_size=batch_size
        )
        accuracies.append(_percent(logits.argmax(1) == y))
        true_probs.append(logits.softmax(1).gather(1, y[:, None]).mean().item())
    return accuracies, true_probs


def adversarial_accuracy(classes: torch.Tensor, y: torch.Tensor) -> float:
    """% of images classified correctly at every offset of `classes_over_shifts` (the worst case
    over shifts)."""
    _check_classes(classes, y)
    return _percent((classes == y[:, None]).all(1))


def normalised_tv(weight: torch.Tensor) -> torch.Tensor:
    """Normalised total variation of each 2-D kernel of a conv weight (…×kh×kw → …).

    TV(w) = (Σ|w[i+1,j] - w[i,j]| + Σ|w[i,j+1] - w[i,j]|) / Σ|w|; an all-zero kernel gives NaN.
    """
    if weight.dim() < 2:
        raise ValueError(f"weight must end in kh×kw, got shape {tuple(weight.shape)}")
    w = weight.detach().double()
    vertical = (w[..., 1:, :] - w[..., :-1, :]).abs().sum((-2, -1))
    horizontal = (w[..., :, 1:] - w[..., :, :-1]).abs().sum((-2, -1))
    return ((vertical + horizontal) / w.abs().sum((-2, -1))).to(weight.dtype)


def filter_tv(model: nn.Module) -> dict[str, float]:
    """Per conv layer (qualified module name): mean normalised TV of its learned filters.

    1×1 convolutions have no spatial variation and are skipped; all-zero kernels (TV undefined)
    are left out of their layer's mean, and a layer with only such kernels reads NaN. The convs
    of LPS's scorers choose where to subsample and filter no feature: they are left out, so
    runs with and without LPS average the same layers.
    """
    scorers = tuple(
        f"{name}." for name, module in model.named_modules() if isinstance(module, ComponentScorer)
    )
    tv = {}
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.Conv2d)
            and math.prod(module.kernel_size) > 1
            and not name.startswith(scorers)
        ):
            per_filter = normalised_tv(module.weight).flatten()
            defined = per_filter[per_filter.isfinite()]
            tv[name] = defined.mean().item() if defined.numel() else math.nan
    return tv


def _check_labelled(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch N×C×H×W, got shape {tuple(x.shape)}")
    _check_labels(y, x.shape[0])


def _check_classes(classes: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if classes.dim() != 2 or 0 in classes.shape or classes.is_floating_point():
        raise ValueError(
            "classes must be a non-empty N×G tensor of class indices (classes_over_shifts), "
            f"got {classes.dtype} of shape {tuple(classes.shape)}"
        )
    _check_labels(y, classes.shape[0])


def _check_labels(y: torch.Tensor | None, n: int) -> None:
    if y is not None and tuple(y.shape) != (n,):
        raise ValueError(f"y must hold one label per image, shape ({n},), got {tuple(y.shape)}")


def _percent(hits: torch.Tensor) -> float:
    return 100.0 * hits.float().mean().item()
