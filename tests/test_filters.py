"""make_taps: every family against its definition in spec §1, and every rejected argument."""

import math

import pytest
import torch

from kernels.filters import make_taps
from kernels.options import FILTER_FAMILIES

PAPER_BINOMIALS = {
    1: [1],
    2: [1, 1],
    3: [1, 2, 1],
    4: [1, 3, 3, 1],
    5: [1, 4, 6, 4, 1],
    6: [1, 5, 10, 10, 5, 1],
    7: [1, 6, 15, 20, 15, 6, 1],
}


def normalised(values: list[float]) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float64)
    return t / t.sum()


def pascal_row(size: int) -> list[int]:
    """Row ``size - 1`` of Pascal's triangle by repeated convolution with [1, 1]."""
    row = [1]
    for _ in range(size - 1):
        row = [a + b for a, b in zip([0, *row], [*row, 0], strict=True)]
    return row


@pytest.mark.parametrize("size", sorted(PAPER_BINOMIALS))
def test_binomial_matches_the_papers_bin_k(size: int) -> None:
    torch.testing.assert_close(make_taps(size), normalised(PAPER_BINOMIALS[size]))


@pytest.mark.parametrize("size", [8, 9, 13, 20, 61])
def test_binomial_of_any_size_is_a_pascal_row(size: int) -> None:
    torch.testing.assert_close(make_taps(size, "binomial"), normalised(pascal_row(size)))


@pytest.mark.parametrize("size", [1, 2, 3, 6, 9])
def test_box_triangle_and_gaussian_follow_their_formulas(size: int) -> None:
    torch.testing.assert_close(make_taps(size, "box"), normalised([1.0] * size))
    triangle = [min(i + 1, size - i) for i in range(size)]
    torch.testing.assert_close(make_taps(size, "triangle"), normalised(triangle))
    sigma = 0.8
    gauss = [math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    torch.testing.assert_close(make_taps(size, "gaussian", sigma=sigma), normalised(gauss))


@pytest.mark.parametrize("family", [f for f in FILTER_FAMILIES if f != "custom"])
def test_every_family_is_float64_1d_symmetric_and_sums_to_one(family: str) -> None:
    sigma = 1.3 if family == "gaussian" else None
    taps = make_taps(7, family, sigma=sigma)
    assert taps.dtype == torch.float64 and taps.shape == (7,)
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-15)
    torch.testing.assert_close(taps, taps.flip(0))


@pytest.mark.parametrize("size", [1030, 1100, 4096])
def test_a_binomial_of_a_thousand_taps_still_sums_to_one(size: int) -> None:
    """Its unnormalised sum 2**(size-1) is beyond float64: the taps must not come from it."""
    taps = make_taps(size)
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert taps[size // 2].item() == pytest.approx(math.sqrt(2 / (math.pi * (size - 1))), rel=1e-3)


CENTRAL_TAPS = [(3, [0, 1, 0]), (4, [0, 0.5, 0.5, 0]), (5, [0, 0, 1, 0, 0])]


@pytest.mark.parametrize(("size", "centre"), CENTRAL_TAPS)
@pytest.mark.parametrize("sigma", [1e-2, 1e-200])
def test_a_narrow_gaussian_tends_to_its_central_taps(
    size: int, centre: list[float], sigma: float
) -> None:
    """Every tap's exp underflows to 0 long before sigma reaches 0: no 0/0 taps."""
    taps = make_taps(size, "gaussian", sigma=sigma)
    torch.testing.assert_close(taps, torch.tensor(centre, dtype=torch.float64))


def test_large_binomial_is_normalised_before_any_cast_so_fp16_holds_it() -> None:
    taps = make_taps(17)
    assert torch.isfinite(torch.outer(taps, taps).half()).all()
    assert torch.outer(taps, taps).sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("size", "taps"),
    [(None, [1.0, 2.0, 1.0]), (3, [1.0, 2.0, 1.0]), (None, torch.tensor([2.0, -0.5, 3.0]))],
)
def test_custom_taps_are_normalised_copies(size: int | None, taps: object) -> None:
    out = make_taps(size, "custom", taps=taps)
    expected = torch.as_tensor(taps, dtype=torch.float64)
    torch.testing.assert_close(out, expected / expected.sum())
    if isinstance(taps, torch.Tensor):
        out.zero_()
        assert taps.abs().sum() > 0, "make_taps must not alias the caller's tensor"


@pytest.mark.parametrize(
    ("args", "kwargs", "fragments"),
    [
        ((0,), {}, ["filter_size=0", "from 1 to 4096"]),
        ((-2, "box"), {}, ["filter_size=-2"]),
        ((2.5,), {}, ["filter_size=2.5", "integer"]),
        ((True,), {}, ["filter_size=True"]),
        ((3, "lanczos"), {}, ["family='lanczos'", "binomial", "custom"]),
        ((3, "gaussian"), {}, ["sigma=None", "number > 0"]),
        ((3, "gaussian"), {"sigma": 0.0}, ["sigma=0.0", "number > 0"]),
        ((3, "gaussian"), {"sigma": "1"}, ["sigma='1'", "number > 0"]),
        ((3, "gaussian"), {"sigma": True}, ["sigma=True", "number > 0"]),
        ((3, "gaussian"), {"sigma": float("nan")}, ["sigma=nan", "finite"]),
        ((3, "gaussian"), {"sigma": float("inf")}, ["sigma=inf", "finite"]),
        ((3, "box"), {"sigma": 1.0}, ["sigma", "gaussian", "'box'"]),
        ((3, "binomial"), {"taps": [1, 2, 1]}, ["taps", "custom", "'binomial'"]),
        ((None, "custom"), {}, ["taps=None", "custom"]),
        ((None, "custom"), {"taps": [1.0, -1.0]}, ["taps=[1.0, -1.0]", "sum to 0"]),
        ((None, "custom"), {"taps": [0.1, 0.2, -0.3]}, ["sum to 0"]),
        ((None, "custom"), {"taps": [1.0, float("nan")]}, ["taps=[1.0, nan]", "finite"]),
        ((None, "custom"), {"taps": [1.0, float("inf")]}, ["finite"]),
        ((None, "custom"), {"taps": [1, 10**400]}, ["finite"]),  # past float64: no OverflowError
        ((None, "custom"), {"taps": []}, ["taps=[]", "non-empty"]),
        ((None, "custom"), {"taps": [[1.0, 2.0]]}, ["1-D"]),
        ((None, "custom"), {"taps": ["a"]}, ["taps=['a']", "numbers"]),
        ((None, "custom"), {"taps": {1.0, 2.0}}, ["taps={1.0, 2.0}", "1-D list"]),
        ((None, "custom"), {"taps": [1e308, 1e308]}, ["sum overflows"]),
        ((4, "custom"), {"taps": [1, 2, 1]}, ["filter_size=4", "len(taps)=3", "None"]),
        ((0, "custom"), {"taps": [1, 2, 1]}, ["filter_size=0"]),
        ((None, "custom"), {"taps": [True, False, True]}, ["taps=[True, False, True]", "real"]),
        ((None, "custom"), {"taps": [1, True]}, ["taps=[1, True]", "booleans"]),
        ((None, "custom"), {"taps": torch.tensor([True, True])}, ["booleans"]),
        ((None, "custom"), {"taps": [torch.tensor(1.0), torch.tensor(True)]}, ["booleans"]),
        ((None, "custom"), {"taps": torch.tensor([1 + 5j, 2, 1])}, ["complex"]),
        ((None, "custom"), {"taps": torch.ones(3, requires_grad=True)}, ["grad", "detach()"]),
        ((None, "custom"), {"taps": torch.ones(3, device="meta")}, ["meta", "no values"]),
        ((None, "binomial"), {}, ["filter_size=None", "filter_size=None is for"]),
        ((4097, "binomial"), {}, ["filter_size=4097", "from 1 to 4096"]),  # not minutes of work
        ((10**9, "box"), {}, ["filter_size=1000000000", "from 1 to 4096"]),
        ((3, "box"), {"sigma": 0.0}, ["sigma", "gaussian", "'box'"]),  # not taken as unset
        ((None, "custom"), {"taps": [0.0, 0.0]}, ["taps=[0.0, 0.0]", "sum to 0"]),
        ((None, "custom"), {"taps": [-(10**400), 1]}, ["taps=[-inf, 1.0]", "finite"]),
        ((None, "custom"), {"taps": [1e308, -1e308, 1e308]}, ["sum overflows"]),  # not "sum to 0"
        ((2.0, "custom"), {"taps": [1, 1]}, ["filter_size=2.0", "integer"]),
        ((True, "custom"), {"taps": [1.0]}, ["filter_size=True"]),
        (
            (None, "custom"),
            {"taps": [torch.tensor(1.0, requires_grad=True), torch.tensor(2.0)]},
            ["grad", "detach()"],
        ),
    ],
)
def test_bad_arguments_name_the_argument_value_and_what_is_accepted(
    args: tuple, kwargs: dict, fragments: list[str]
) -> None:
    with pytest.raises(ValueError) as error:
        make_taps(*args, **kwargs)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_taps_come_in_float64_whatever_the_type_of_their_arguments() -> None:
    """A numpy sigma does not set the arithmetic's precision; taps given as 0-d tensors or a
    numpy array are read as numbers."""
    np = pytest.importorskip("numpy")
    exact = make_taps(5, "gaussian", sigma=float(np.float16(0.3)))
    torch.testing.assert_close(
        make_taps(5, "gaussian", sigma=np.float16(0.3)), exact, rtol=0, atol=0
    )
    expected = make_taps(None, "custom", taps=[1.0, 2.0])
    for taps in ([torch.tensor(1.0), torch.tensor(2.0)], np.array([1.0, 2.0]), (1, 2)):
        torch.testing.assert_close(make_taps(None, "custom", taps=taps), expected, rtol=0, atol=0)
