"""Shift helpers and metrics against per-image references and models of known invariance."""

import itertools
import math

import pytest
import torch
from torch import nn

from ablate.metrics import (
    accuracy,
    accuracy_vs_shift,
    adversarial_accuracy,
    classes_over_shifts,
    consistency,
    filter_tv,
    normalised_tv,
    predict_logits,
)
from ablate.polyphase import ComponentScorer, PolyphasePool2d
from ablate.shifts import circular_shift, crop_shift, shift_images


def images(n=6, c=3, h=7, w=9, seed=0, dtype=torch.float32):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def crop_reference(image, dh, dw, pad, fill):
    """One image C×H×W shifted by the crop protocol, by explicit index arithmetic."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    for r, s in itertools.product(range(h), range(w)):
        i, j = r + dh, s + dw
        if fill == "reflect":
            i, j = abs(i) if i < h else 2 * (h - 1) - i, abs(j) if j < w else 2 * (w - 1) - j
        if 0 <= i < h and 0 <= j < w:
            out[:, r, s] = image[:, i, j]
    return out


def shift_reference(image, dh, dw, kind, pad, fill):
    """One image shifted by `kind`'s protocol: torch.roll, or :func:`crop_reference`."""
    if kind == "circular":
        return torch.roll(image, (dh, dw), dims=(-2, -1))
    return crop_reference(image, dh, dw, pad, fill)


class GlobalMeanLinear(nn.Module):
    """Exactly invariant to circular shifts: the logits see only each channel's mean."""

    def __init__(self, channels=3, classes=5):
        super().__init__()
        self.linear = nn.Linear(channels, classes, dtype=torch.float64)

    def forward(self, x):
        return self.linear(x.mean((-2, -1)))


class FlatLinear(nn.Module):
    """Position-dependent: a linear map of the flattened image."""

    def __init__(self, shape=(3, 8, 8), classes=5):
        super().__init__()
        self.linear = nn.Linear(math.prod(shape), classes, dtype=torch.float64)

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.fixture
def test_set():
    torch.manual_seed(0)
    x = images(n=64, h=8, w=8, seed=1, dtype=torch.float64)
    return x


def own_labels(model, x):
    """Labels the model gets right on clean images, half of them then scrambled."""
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::2] = (y[::2] + 1) % 5
    return y


def three_quarters_labels(model, x):
    """Labels the model gets right on the last three quarters of `x` and wrong on the first."""
    with torch.no_grad():
        y = model(x).argmax(1)
    quarter = len(x) // 4
    y[:quarter] = (y[:quarter] + 1) % 5
    return y


# --- shifts -------------------------------------------------------------------------------


def test_circular_shift_matches_per_image_roll_on_layouts():
    x = images()
    offsets = torch.tensor([[1, -2], [0, 0], [-3, 4], [9, -11], [-7, 9], [6, 8]])
    expected = torch.stack(
        [torch.roll(x[i], tuple(offsets[i].tolist()), dims=(-2, -1)) for i in range(6)]
    )
    every_other_row = torch.zeros(6, 3, 14, 9)
    every_other_row[:, :, ::2] = x
    variants = {
        "contiguous": x,
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "strided": every_other_row[:, :, ::2],
    }
    for layout, xv in variants.items():
        assert torch.equal(circular_shift(xv, offsets), expected), layout


@pytest.mark.parametrize("fill", ["zeros", "reflect"])
def test_crop_shift_matches_per_image_reference(fill):
    x = images(n=5, h=6, w=7)
    pad = 3
    offsets = torch.randint(-pad, pad + 1, (5, 2), generator=torch.Generator().manual_seed(3))
    offsets[0] = torch.tensor([pad, -pad])
    out = torch.full_like(x, float("nan"))
    out[:] = crop_shift(x, offsets, pad=pad, fill=fill)
    for i, (dh, dw) in enumerate(offsets.tolist()):
        torch.testing.assert_close(out[i], crop_reference(x[i], dh, dw, pad, fill), rtol=0, atol=0)


@pytest.mark.parametrize("fill", ["zeros", "reflect"])
def test_crop_shift_at_offset_zero_is_identity(fill):
    x = images()
    assert torch.equal(crop_shift(x, (0, 0), pad=4, fill=fill), x)
    assert torch.equal(shift_images(x, (0, 0), "circular"), x)


@pytest.mark.parametrize("fill", ["zeros", "reflect"])
def test_crop_shift_without_padding_is_identity(fill):
    """pad=0 is the crop protocol with no room to shift (the default of `predict_logits`): it
    leaves the images as they are rather than being refused like a negative pad."""
    x = images()
    assert torch.equal(crop_shift(x, (0, 0), pad=0, fill=fill), x)
    assert torch.equal(shift_images(x, torch.zeros(6, 2, dtype=torch.long), "crop"), x)


def test_uniform_offset_equals_torch_roll():
    x = images()
    assert torch.equal(shift_images(x, (2, -3), "circular"), torch.roll(x, (2, -3), (-2, -1)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: crop_shift(x, (3, 0), pad=2), "pad=2"),
        (lambda x: crop_shift(x, (0, 0), pad=7, fill="reflect"), "reflect"),
        (lambda x: crop_shift(x, (0, 0), pad=1, fill="edge"), "fill"),
        (lambda x: shift_images(x, (0, 0), "diagonal"), "kind"),
        (lambda x: circular_shift(x, torch.zeros(5, 2, dtype=torch.long)), "offsets"),
        (lambda x: circular_shift(x, (0.5, 1.0)), "integers"),
        (lambda x: circular_shift(x[0], (0, 0)), "N×C×H×W"),
    ],
)
def test_bad_shift_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(images())


# --- accuracy, consistency, adversarial, vs shift ----------------------------------------


def test_invariant_model_is_fully_consistent_and_unbeatable_by_circular_shifts(test_set):
    model = GlobalMeanLinear()
    y = own_labels(model, test_set)
    clean = accuracy(model, test_set, y)
    assert clean == 50
    classes = classes_over_shifts(model, test_set, kind="circular", shift=3)
    assert classes.shape == (64, 49)
    assert consistency(classes) == 100
    assert adversarial_accuracy(classes, y) == clean
    accuracies, _ = accuracy_vs_shift(model, test_set, y, kind="circular", diagonal=4)
    assert accuracies == [clean] * 5


def test_position_dependent_model_scores_less(test_set):
    model = FlatLinear()
    y = own_labels(model, test_set)
    clean = accuracy(model, test_set, y)
    for kind in ("circular", "crop"):
        classes = classes_over_shifts(model, test_set, kind=kind, shift=2, pad=2)
        assert consistency(classes) < 100
        assert adversarial_accuracy(classes, y) < clean


@pytest.mark.parametrize("kind", ["circular", "crop"])
def test_no_shift_is_fully_consistent_and_adversarial_is_clean_accuracy(test_set, kind):
    model = FlatLinear()
    y = own_labels(model, test_set)
    classes = classes_over_shifts(model, test_set, kind=kind, shift=0, pad=2)
    assert classes.shape == (64, 1)
    assert consistency(classes) == 100
    assert adversarial_accuracy(classes, y) == accuracy(model, test_set, y)


@pytest.mark.parametrize(("kind", "fill"), [("circular", "zeros"), ("crop", "reflect")])
def test_shift_grid_metrics_match_per_image_references(test_set, kind, fill):
    """The grid against one image and one offset at a time; consistency against every pair of
    offsets (the two-offset draw enumerated), the adversary against the worst offset."""
    model = FlatLinear()
    y = own_labels(model, test_set)
    offsets = list(itertools.product(range(-2, 3), repeat=2))
    expected = torch.empty(64, len(offsets), dtype=torch.long)
    with torch.no_grad():
        for (g, (dh, dw)), i in itertools.product(enumerate(offsets), range(64)):
            shifted = shift_reference(test_set[i], dh, dw, kind, pad=2, fill=fill)
            expected[i, g] = model(shifted[None]).argmax(1).item()
    classes = classes_over_shifts(
        model, test_set, kind=kind, shift=2, pad=2, fill=fill, batch_size=7
    )
    assert torch.equal(classes, expected)
    agreeing_pairs = (expected[:, :, None] == expected[:, None, :]).double().mean((1, 2))
    assert 0 < agreeing_pairs.min() < 1
    assert consistency(classes) == pytest.approx(100 * agreeing_pairs.mean().item())
    correct_everywhere = (expected == y[:, None]).all(1).double().mean().item()
    assert adversarial_accuracy(classes, y) == pytest.approx(100 * correct_everywhere)


def test_shift_grid_crops_with_the_pad_it_is_given():
    """The grid's crop protocol uses the caller's pad: offsets of ±3 do not fit in a pad of 2
    and are refused, rather than cropped from a pad the grid chose itself."""
    model = FlatLinear()
    x = images(n=2, h=8, w=8, dtype=torch.float64)
    with pytest.raises(ValueError, match="pad=2"):
        classes_over_shifts(model, x, kind="crop", shift=3, pad=2)
    assert classes_over_shifts(model, x, kind="crop", shift=1, pad=2).shape == (2, 9)


def test_accuracy_vs_shift_crops_with_the_pad_it_is_given():
    """As the grid: a diagonal of 3 does not fit in a pad of 2 and is refused."""
    model = FlatLinear()
    x = images(n=2, h=8, w=8, dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="pad=2"):
        accuracy_vs_shift(model, x, y, kind="crop", diagonal=3, pad=2)
    accuracies, _ = accuracy_vs_shift(model, x, y, kind="crop", diagonal=2, pad=2)
    assert len(accuracies) == 3


def test_consistency_of_known_class_shares():
    # Image 0: one class everywhere (1); image 1: halves (1/4 + 1/4); image 2: 3 of 4 (9/16 + 1/16).
    classes = torch.tensor([[2, 2, 2, 2], [0, 1, 0, 1], [4, 4, 4, 0]])
    assert consistency(classes) == pytest.approx(100 * (1 + 0.5 + 10 / 16) / 3)
    assert consistency(classes.int()) == consistency(classes)



@pytest.mark.parametrize("batch_size", [1, 7, 500])
def test_accuracy_is_the_share_of_images_whose_top_class_is_the_label(test_set, batch_size):
    """48 of 64 labels are the model's top class: 75 %, at any chunk size; a batch of one image
    scores 0 or 100."""
    model = FlatLinear()
    y = three_quarters_labels(model, test_set)
    assert accuracy(model, test_set, y, batch_size=batch_size) == 75
    assert accuracy(model, test_set[:1], y[:1], batch_size=batch_size) == 0
    assert accuracy(model, test_set[-1:], y[-1:], batch_size=batch_size) == 100


def test_adversarial_accuracy_of_known_grids():
    """Only an image right at every offset counts: not one right at some, nor one never right."""
    classes = torch.tensor([[1, 1, 1], [1, 2, 1], [0, 0, 0], [3, 3, 3]])
    assert adversarial_accuracy(classes, torch.tensor([1, 1, 2, 3])) == 50


def test_accuracy_vs_shift_at_diagonal_zero_is_the_clean_accuracy_alone(test_set):
    model = FlatLinear()
    y = three_quarters_labels(model, test_set)
    accuracies, true_probs = accuracy_vs_shift(model, test_set, y, kind="crop", diagonal=0, pad=2)
    with torch.no_grad():
        probs = model(test_set).softmax(1)
    assert accuracies == [75]
    assert true_probs == [pytest.approx(probs[torch.arange(64), y].mean().item())]


@pytest.mark.parametrize("fill", ["zeros", "reflect"])
def test_accuracy_and_true_prob_vs_shift_match_reference(test_set, fill):
    model = FlatLinear()
    y = own_labels(model, test_set)
    accuracies, true_probs = accuracy_vs_shift(
        model, test_set, y, kind="crop", diagonal=2, pad=3, fill=fill, batch_size=10
    )
    assert len(accuracies) == len(true_probs) == 3
    with torch.no_grad():
        for d in range(3):
            shifted = torch.stack([crop_reference(im, d, d, 3, fill) for im in test_set])
            probs = model(shifted).softmax(1)
            assert accuracies[d] == pytest.approx(
                100 * (probs.argmax(1) == y).double().mean().item()
            )
            assert true_probs[d] == pytest.approx(probs[torch.arange(64), y].mean().item())


def test_metrics_chunking_and_mode_restoration():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5))
    x = images(n=10, h=8, w=8)
    model(x)
    model.train()
    whole = predict_logits(model, x, offsets=(1, 1), kind="crop", pad=1)
    chunked = predict_logits(model, x, offsets=(1, 1), kind="crop", pad=1, batch_size=3)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert model.training


@pytest.mark.parametrize("kind", ["circular", "crop"])
def test_per_image_offsets_follow_their_images_across_chunks(test_set, kind):
    """Image i is shifted by offsets[i] in whichever chunk it falls."""
    model = FlatLinear()
    offsets = torch.randint(-2, 3, (64, 2), generator=torch.Generator().manual_seed(2))
    logits = predict_logits(
        model, test_set, offsets=offsets, kind=kind, pad=2, fill="reflect", batch_size=7
    )
    with torch.no_grad():
        shifted = torch.stack(
            [
                shift_reference(image, int(dh), int(dw), kind, pad=2, fill="reflect")
                for image, (dh, dw) in zip(test_set, offsets, strict=True)
            ]
        )
        torch.testing.assert_close(logits, model(shifted).float())


def test_metrics_restore_each_submodule_mode():
    """A frozen (eval-mode) BatchNorm inside a training model stays frozen after evaluation."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5))
    x = images(n=4, h=8, w=8)
    model(x)
    model.train()
    model[1].eval()
    accuracy(model, x, torch.zeros(4, dtype=torch.long))
    assert [m.training for m in model] == [True, False, True, True]


def test_metrics_reject_bad_inputs(test_set):
    model = FlatLinear()
    with pytest.raises(ValueError, match="y must"):
        accuracy(model, test_set, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must be a non-empty batch N×C×H×W, got shape \(0,"):
        accuracy(model, test_set[:0], torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must be a non-empty batch N×C×H×W, got shape \(3,"):
        accuracy(model, test_set[0], torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        predict_logits(model, test_set, batch_size=0)
    with pytest.raises(ValueError, match=r"x must be a non-empty batch N×C×H×W, got shape \(3,"):
        classes_over_shifts(model, test_set[0], kind="circular", shift=1)
    with pytest.raises(ValueError, match=r"y must hold one label per image, shape \(64,\)"):
        accuracy_vs_shift(model, test_set, torch.zeros(3, dtype=torch.long), kind="circular",
                          diagonal=1)  # fmt: skip
    with pytest.raises(ValueError, match="shift must be >= 0, got -1"):
        classes_over_shifts(model, test_set, kind="circular", shift=-1)
    with pytest.raises(ValueError, match="classes must be a non-empty N×G"):
        consistency(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="classes must be"):
        consistency(torch.zeros(4, 9))
    with pytest.raises(ValueError, match="y must hold one label per image, shape \\(4,\\)"):
        adversarial_accuracy(torch.zeros(4, 9, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="diagonal must be >= 0, got -1"):
        accuracy_vs_shift(model, test_set, torch.zeros(64, dtype=torch.long), kind="circular",
                          diagonal=-1)  # fmt: skip
    with pytest.raises(ValueError, match=r"weight must end in kh×kw, got shape \(3,\)"):
        normalised_tv(torch.ones(3))


# --- filter smoothness --------------------------------------------------------------------


def test_tv_of_a_known_kernel_and_of_a_constant_is_exact():
    w = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    # vertical |2-0| + |3-1| = 4, horizontal |1-0| + |3-2| = 2, Σ|w| = 6
    assert normalised_tv(w).item() == pytest.approx(1.0)
    assert normalised_tv(torch.full((4, 3, 5, 5), -0.7)).abs().max() == 0


def test_tv_of_a_half_precision_kernel_is_its_float64_tv_rounded_once():
    """Sums of differences accumulated in bf16 lose most of their digits; TV is computed in
    float64 and rounded to the weight's dtype only at the end, so a bf16 layer's smoothness is
    the same number as that of its float64 copy."""
    g = torch.Generator().manual_seed(0)
    w = (0.3 + 0.05 * torch.randn(4, 3, 7, 7, generator=g)).bfloat16()
    tv = normalised_tv(w)
    assert tv.dtype == torch.bfloat16
    assert torch.equal(tv, normalised_tv(w.double()).bfloat16())


def test_tv_grows_with_noise():
    noise = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    levels = [normalised_tv(1.0 + scale * noise).mean().item() for scale in (0.01, 0.1, 0.5, 2.0)]
    assert levels == sorted(levels) and levels[0] > 0


def test_tv_matches_loop_reference():
    w = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tv = normalised_tv(w)
    for o, i in itertools.product(range(2), range(3)):
        k = w[o, i]
        diffs = sum(abs(k[r + 1, s] - k[r, s]) for r in range(3) for s in range(5)) + sum(
            abs(k[r, s + 1] - k[r, s]) for r in range(4) for s in range(4)
        )
        assert tv[o, i].item() == pytest.approx((diffs / k.abs().sum()).item())


def test_filter_tv_names_layers_and_skips_pointwise_convs():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, (1, 3))),
        nn.Conv2d(2, 2, 3),
    )
    with torch.no_grad():
        model[0].weight.fill_(0.3)
        model[0].weight[0].zero_()  # all-zero filters are left out of the mean
        model[2].weight.zero_()  # a dead layer has no smoothness, not a perfect one
    tv = filter_tv(model)
    assert set(tv) == {"0", "1.1", "2"}
    assert tv["0"] == 0 and math.isnan(tv["2"])
    assert tv["1.1"] == pytest.approx(normalised_tv(model[1][1].weight).mean().item())



def test_filter_tv_measures_two_tap_kernels():
    """A 2×1 kernel varies vertically: only 1×1 convolutions are skipped."""
    model = nn.Sequential(nn.Conv2d(1, 1, (2, 1), bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 3.0]).view(1, 1, 2, 1))
    assert filter_tv(model) == {"0": pytest.approx(0.5)}  # |3 - 1| / (1 + 3)

def test_filter_tv_leaves_out_the_lps_scorers_convs():
    """They choose the grid and filter no feature: LPS runs average the same layers as others."""
    scored = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        PolyphasePool2d(2, scorer=ComponentScorer(4)),
        nn.Conv2d(4, 2, 3),
    )
    assert set(filter_tv(scored)) == {"0", "2"}
    # only the scorer's own submodules: layer 10 is measured though its name begins with "1"
    beside = nn.Sequential(
        nn.Conv2d(3, 4, 3), ComponentScorer(4), *[nn.Identity()] * 8, nn.Conv2d(4, 2, 3)
    )
    assert set(filter_tv(beside)) == {"0", "10"}
