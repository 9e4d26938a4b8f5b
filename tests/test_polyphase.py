"""Adaptive polyphase sampling: its components, its choice, shift equivariance, links, grads."""

import pytest
import torch

from ablate.polyphase import PhaseLink, PolyphasePool2d, polyphase_components


def test_components_are_the_subsampling_grids_and_wrap_on_odd_sizes():
    x = torch.randn(2, 3, 8, 6)
    components = polyphase_components(x, 2)
    assert components.shape == (2, 4, 3, 4, 3)
    for index, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert torch.equal(components[:, index], x[:, :, i::2, j::2])
    odd = torch.randn(1, 1, 5, 7)
    wrapped = polyphase_components(odd, 2)
    assert wrapped.shape == (1, 4, 1, 3, 4)
    assert wrapped[0, 3, 0, 2, 3] == odd[0, 0, 0, 0]  # row 5 and column 7 wrap to 0


def test_each_sample_keeps_its_strongest_component():
    x = torch.randn(3, 2, 6, 6) * 0.01
    x[0, :, 1::2, 0::2] += 1  # component (1, 0)
    x[1, :, 0::2, 1::2] -= 1  # (0, 1): the norm, not the sign, decides
    x[2, :, 1::2, 1::2] += 1  # (1, 1)
    out = PolyphasePool2d(2)(x)
    assert torch.equal(out[0], x[0, :, 1::2, 0::2])
    assert torch.equal(out[1], x[1, :, 0::2, 1::2])
    assert torch.equal(out[2], x[2, :, 1::2, 1::2])


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("shape", [(12, 12), (6, 18)])
def test_a_circular_shift_of_the_input_only_shifts_the_output(stride, shape):
    """On maps the stride divides (on others the components overlap where they wrap)."""
    torch.manual_seed(stride)
    x = torch.randn(2, 3, *shape)
    pool = PolyphasePool2d(stride)
    out = pool(x)
    for shift in [(1, 0), (0, 1), (2, 5), (-3, 4)]:
        shifted = pool(torch.roll(x, shift, dims=(2, 3)))
        for sample in range(2):  # each sample may land on its own output shift
            assert any(
                torch.equal(shifted[sample], torch.roll(out[sample], (a, b), dims=(1, 2)))
                for a in range(out.shape[2])
                for b in range(out.shape[3])
            ), (shift, sample)


def test_fixed_subsampling_is_not_shift_equivariant():
    """The contrast that makes the test above meaningful."""
    x = torch.randn(1, 3, 12, 12)
    out, shifted = x[:, :, ::2, ::2], torch.roll(x, (1, 0), dims=(2, 3))[:, :, ::2, ::2]
    assert not any(
        torch.equal(shifted, torch.roll(out, (a, b), dims=(2, 3)))
        for a in range(6)
        for b in range(6)
    )


def test_linked_modules_follow_the_first_to_run():
    link = PhaseLink()
    leader, follower = PolyphasePool2d(2, link), PolyphasePool2d(2, link)
    main = torch.zeros(2, 1, 4, 4)
    main[:, :, 1::2, 1::2] = 1  # the leader picks (1, 1) for both samples
    shortcut = torch.randn(2, 3, 4, 4)
    leader(main)
    assert torch.equal(follower(shortcut), shortcut[:, :, 1::2, 1::2])
    assert link.leader is leader and "linked" in repr(follower)
    with pytest.raises(RuntimeError, match="ran before"):
        follower(torch.randn(5, 3, 4, 4))  # another batch than the leader's


def test_a_follower_that_runs_first_is_an_error():
    link = PhaseLink()
    leader, follower = PolyphasePool2d(2, link), PolyphasePool2d(2, link)
    link.leader = leader
    with pytest.raises(RuntimeError, match="ran before the module that chooses"):
        follower(torch.randn(1, 1, 4, 4))


def test_gradient_flows_to_the_kept_component():
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(PolyphasePool2d(2), (x,))


def test_channels_last_stays_channels_last():
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    out = PolyphasePool2d(2)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, PolyphasePool2d(2)(x.contiguous()))


@pytest.mark.parametrize("stride", [0, -1, 1.5, True])
def test_bad_stride_is_named(stride):
    with pytest.raises(ValueError, match=r"stride=.* expected an integer >= 1"):
        PolyphasePool2d(stride)
