"""Adaptive and learnable polyphase sampling: components, choice, shift equivariance, links,
gradients."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from ablate.polyphase import ComponentScorer, PolyphasePool2d, link_phases, polyphase_components


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


def _learned(channels: int, stride: int = 2) -> PolyphasePool2d:
    """An LPS module in evaluation mode whose learned term is not zero (it starts at zero)."""
    pool = PolyphasePool2d(stride, ComponentScorer(channels))
    torch.nn.init.normal_(pool.scorer.logit.weight, std=2.0)
    return pool.eval()


@pytest.mark.parametrize("kind", ["aps", "lps"])
@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("shape", [(12, 12), (6, 18)])
def test_a_circular_shift_of_the_input_only_shifts_the_output(kind, stride, shape):
    """On maps the stride divides (on others the components overlap where they wrap); LPS at
    evaluation."""
    torch.manual_seed(stride)
    x = torch.randn(2, 3, *shape)
    pool = PolyphasePool2d(stride) if kind == "aps" else _learned(3, stride)
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


def test_linked_modules_follow_the_first():
    leader, follower = PolyphasePool2d(2), PolyphasePool2d(2, ComponentScorer(3))
    link_phases([leader, follower])
    assert follower.scorer is None  # a follower never scores
    main = torch.zeros(2, 1, 4, 4)
    main[:, :, 1::2, 1::2] = 1  # the leader picks (1, 1) for both samples
    shortcut = torch.randn(2, 3, 4, 4)
    leader(main)
    assert torch.equal(follower(shortcut), shortcut[:, :, 1::2, 1::2])
    assert "leads a link" in repr(leader) and "follows a linked module" in repr(follower)
    with pytest.raises(RuntimeError, match="ran before"):
        follower(torch.randn(5, 3, 4, 4))  # another batch than the leader's


def test_a_follower_that_runs_first_is_an_error():
    leader, follower = PolyphasePool2d(2), PolyphasePool2d(2)
    link_phases([leader, follower])
    with pytest.raises(RuntimeError, match="ran before the module that chooses"):
        follower(torch.randn(1, 1, 4, 4))


def test_each_thread_follows_the_choice_of_its_own_pass():
    """Two threads running a linked pair at once: one's leader must not choose for the
    other's follower."""
    leader, follower = PolyphasePool2d(2), PolyphasePool2d(2)
    link_phases([leader, follower])
    picks_corner = torch.zeros(1, 1, 4, 4)
    picks_corner[:, :, 1::2, 1::2] = 1
    leader(picks_corner)
    other_thread = ThreadPoolExecutor(1)
    other_thread.submit(leader, torch.ones(1, 1, 4, 4)).result()  # chooses (0, 0) there
    shortcut = torch.randn(1, 3, 4, 4)
    assert torch.equal(follower(shortcut), shortcut[:, :, 1::2, 1::2])
    other_follows = other_thread.submit(follower, shortcut).result()
    assert torch.equal(other_follows, shortcut[:, :, ::2, ::2])
    other_thread.shutdown()


def test_data_parallel_replicas_follow_their_own_leader():
    """nn.DataParallel copies each module's attributes into replicas run one per thread: a
    replica of the leader chooses for the replicas of its followers."""
    leader, follower = PolyphasePool2d(2), PolyphasePool2d(2)
    link_phases([leader, follower])
    leader_copy, follower_copy = (m._replicate_for_data_parallel() for m in (leader, follower))
    picks_corner = torch.zeros(1, 1, 4, 4)
    picks_corner[:, :, 1::2, 1::2] = 1
    shortcut = torch.randn(1, 3, 4, 4)

    def replicas_run() -> torch.Tensor:
        leader_copy(picks_corner)
        return follower_copy(shortcut)

    with ThreadPoolExecutor(1) as replica_thread:
        followed = replica_thread.submit(replicas_run).result()
    assert torch.equal(followed, shortcut[:, :, 1::2, 1::2])


def test_linked_modules_saved_by_an_earlier_version_load(monkeypatch):
    """Its links named their leader and held the last choice; its modules had no `leads`."""
    import pickle

    from ablate import polyphase

    leader, follower = PolyphasePool2d(2), PolyphasePool2d(2)
    link_phases([leader, follower])
    for module in (leader, follower):
        del module.leads
    monkeypatch.setattr(polyphase.PhaseLink, "__getstate__",
                        lambda link: {"leader": leader, "choice": None})  # fmt: skip
    saved = [pickle.dumps([leader, follower]), pickle.dumps([follower, leader])]
    monkeypatch.undo()
    for blob in saved:
        modules = pickle.loads(blob)
        loaded_leader = next(m for m in modules if m.link is not None and m.leads)
        loaded_follower = next(m for m in modules if m is not loaded_leader)
        picks_corner = torch.zeros(1, 1, 4, 4)
        picks_corner[:, :, 1::2, 1::2] = 1
        loaded_leader(picks_corner)
        shortcut = torch.randn(1, 3, 4, 4)
        assert torch.equal(loaded_follower(shortcut), shortcut[:, :, 1::2, 1::2])
        assert "follows a linked module" in repr(loaded_follower)


@pytest.mark.parametrize("scorer", [None, ComponentScorer(2)])
def test_runs_under_vmap(scorer):
    """Per-sample work (`torch.func.vmap(grad(...))`) batches the choice."""
    pool = PolyphasePool2d(2, scorer)
    x = torch.randn(3, 1, 2, 6, 4)
    out = torch.func.vmap(pool)(x)
    torch.testing.assert_close(out, torch.stack([pool(sample) for sample in x]))


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


@pytest.mark.parametrize("tau", [0, -1.0, float("nan")])
def test_bad_temperature_is_named(tau):
    with pytest.raises(ValueError, match=r"tau=.* expected a temperature > 0"):
        PolyphasePool2d(2, ComponentScorer(1), tau=tau)


def test_the_scorer_permutes_its_logits_as_a_shift_permutes_the_components():
    torch.manual_seed(3)
    scorer = _learned(5).scorer
    x = torch.randn(3, 5, 8, 10)
    logits = scorer(polyphase_components(x, 2))
    shifted = scorer(polyphase_components(torch.roll(x, (1, 1), dims=(2, 3)), 2))
    torch.testing.assert_close(shifted, logits[:, [3, 2, 1, 0]])  # (i, j) -> (i+1, j+1) mod 2
    assert logits.dtype == torch.float32 and logits.std() > 0.01


def test_lps_starts_as_aps_and_its_learned_term_changes_the_choice():
    torch.manual_seed(4)
    x = torch.randn(64, 4, 6, 6)
    fresh = PolyphasePool2d(2, ComponentScorer(4)).eval()
    assert torch.equal(fresh(x), PolyphasePool2d(2)(x))
    assert not torch.equal(_learned(4)(x), PolyphasePool2d(2)(x))


def test_lps_in_training_keeps_its_evaluation_choice_and_trains_only_its_scorer():
    """The straight-through gradient reaches the scorer; the input's gradient is that of the
    kept component alone, as if the choice were fixed."""
    torch.manual_seed(5)
    pool = _learned(2)
    x = torch.randn(64, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(64, 2, 2, 2, dtype=torch.float64)
    kept = pool.eval()(x)
    (pool.train()(x) * weights).sum().backward()
    assert torch.equal(pool(x), kept)
    assert pool.scorer.conv.weight.grad.abs().sum() > 0
    assert pool.scorer.logit.weight.grad.abs().sum() > 0
    fixed = x.detach().clone().requires_grad_()
    choice = pool.eval().choose(polyphase_components(fixed.detach(), 2)).argmax(dim=1)
    picked = polyphase_components(fixed, 2)[torch.arange(64), choice]
    (picked * weights).sum().backward()
    torch.testing.assert_close(x.grad, fixed.grad)


def test_lps_scores_inputs_of_any_float_dtype():
    pool = _learned(3)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert pool(x).dtype == torch.float64
    assert torch.autograd.gradcheck(pool, (x.requires_grad_(),))
