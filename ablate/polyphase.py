"""Adaptive and learnable polyphase sampling: subsample on a grid chosen per image.

Subsampling by s keeps one of the s² polyphase components of a map, the one on the grid that
starts at (0, 0). A circular shift of the input permutes the components (and shifts them), so
the fixed choice sees a different component after a shift. Choosing the component from the
components themselves, with a score that a circular shift of a component does not change, makes
the choice move with the input: a circular shift of the input then only shifts the output, and
a net whose every layer commutes with circular shifts (circular padding throughout) and that
ends in a global pool becomes exactly invariant to circular shifts. Two scores:

- APS, adaptive polyphase sampling (Chaman & Dokmanić, "Truly Shift-Invariant Convolutional
  Neural Networks", CVPR 2021): the component's l2 norm.
- LPS, learnable polyphase sampling (Rojas-Gomez et al., "Learnable Polyphase Sampling for Shift
  Invariant and Equivariant Convolutional Networks", NeurIPS 2022): a logit per component,
  here the log of its l2 norm plus a small network's learned term (`ComponentScorer`), which
  starts at zero: LPS starts as APS and learns where to choose otherwise (a scorer without
  the norm starts with dead units and ties on deep maps, where the choice cannot follow a
  shift). Training and evaluation keep the component of largest logit, so the net trains as
  the function it is evaluated as; in training the softmax of the logits at temperature `tau`
  carries the gradient back (the straight-through estimator), to the scorer only. The paper
  instead draws the component by Gumbel-softmax in training and lets the gradient reach the
  features through the scores too. Measured on the synthetic data (a width-8 ResNet-18 with
  circular padding, batches of 128, lr 0.05): this choice's training loss follows APS's
  (leaving the chance plateau within 200 steps), the paper's was still leaving it at step 800.
  The plateau's length is fickle there (a constant 1-pixel circular shift of the training
  images stretched the fixed grid's from under 200 steps to about 600), so this is a reason to
  prefer the deterministic choice, not proof that the paper's cannot train.

Component (i, j) of an H × W map is the map rolled by (-i, -j), subsampled from (0, 0), so every
component is ceil(H/s) × ceil(W/s) (the size blur-pool outputs). Exactness needs s to divide
H and W: on other maps the components wrap around and overlap. Ties go to the first component
in row-major order.

Two subsamplings of the same input grid must pick the same component, or their sum mixes grids:
a residual block subsamples its main path and its shortcut. `link_phases` ties such modules
together: the first (the one a model runs first) chooses in every forward pass, and the others
take its choice of that pass.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kernels.layout import memory_format_of
from kernels.tracing import batched

_TINY = torch.finfo(torch.float32).tiny  # the log of an all-zero component's norm stays finite


class PhaseLink:
    """The choice of the leading module in the current forward pass, taken by the others.

    The choice is kept per thread (threads that run the model at once, and the replicas of
    `nn.DataParallel`, each follow their own pass) and is not part of the model: a copy or a
    pickle of the model starts without one (in training it holds the scorer's autograd graph,
    which a deep copy refuses).
    """

    def __init__(self) -> None:
        self._pass = threading.local()

    @property
    def choice(self) -> torch.Tensor | None:
        return getattr(self._pass, "choice", None)

    @choice.setter
    def choice(self, choice: torch.Tensor) -> None:
        self._pass.choice = choice

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()
        leader = state.get("leader")  # a link saved by an earlier version named its leader
        if leader is not None:  # (which may be loading yet: its attributes written directly)
            vars(leader)["leads"] = True


class ComponentScorer(nn.Module):
    """LPS's learned term of a component's logit, unchanged by a circular shift of it.

    A circular 3 × 3 convolution, ReLU, the mean over the map and a linear layer, shared by the
    components: a circular shift of the input permutes the scores as it permutes the components.
    The linear layer starts at zero.
    """

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = max(8, channels // 4) if hidden is None else hidden
        self.conv = nn.Conv2d(channels, hidden, 3, padding=1, padding_mode="circular")
        self.logit = nn.Linear(hidden, 1, bias=False)  # a bias shifts every logit alike
        nn.init.zeros_(self.logit.weight)

    def forward(self, components: torch.Tensor) -> torch.Tensor:
        """(N, K, C, h, w) components -> (N, K) float32 logits."""
        n, k = components.shape[:2]
        features = F.relu(self.conv(components.flatten(0, 1).to(self.conv.weight.dtype)))
        return self.logit(features.mean(dim=(2, 3))).view(n, k).float()


class PolyphasePool2d(nn.Module):
    """Subsample by `stride` keeping, per sample, the polyphase component of highest score.

    Without `scorer` the score is the l2 norm (APS); with one, the log of the norm plus the
    scorer's term (LPS; in training the softmax at temperature `tau` carries the gradient to
    the scorer). Linked by `link_phases`, a follower takes its leader's choice and has no
    scorer of its own.
    """

    leads = False  # whether it chooses for its link (the default of modules saved without it)

    def __init__(self, stride: int = 2, scorer: nn.Module | None = None, tau: float = 1.0) -> None:
        super().__init__()
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride={stride!r} is invalid: expected an integer >= 1")
        if not tau > 0:
            raise ValueError(f"tau={tau!r} is invalid: expected a temperature > 0")
        self.stride = stride
        self.scorer = scorer
        self.tau = tau
        self.link: PhaseLink | None = None
        self.leads = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        components = polyphase_components(x, self.stride)
        link = self.link
        if link is not None and not self.leads:
            if link.choice is None or link.choice.shape[0] != x.shape[0]:
                raise RuntimeError(
                    "a linked PolyphasePool2d ran before the module that chooses its component"
                )
            choice = link.choice
        else:
            choice = self.choose(components)
            if link is not None:
                link.choice = choice
        picked = _pick(components, choice)
        if batched(x):  # vmap's batches have no layout to keep
            return picked
        return picked.contiguous(memory_format=memory_format_of(x))

    def choose(self, components: torch.Tensor) -> torch.Tensor:
        """One-hot (N, K) weights of the component each sample keeps."""
        if self.scorer is None:
            return _one_hot_argmax(components.flatten(2).norm(dim=2), components.dtype)
        components = components.detach()  # the choice's gradient trains the scorer only
        norms = components.flatten(2).norm(dim=2).float()
        scores = norms.clamp_min(_TINY).log() + self.scorer(components)
        hard = _one_hot_argmax(scores, components.dtype)
        if not self.training:
            return hard
        soft = F.softmax(scores / self.tau, dim=1)
        return hard - soft.detach() + soft  # the choice forward, the softmax's gradient back

    def extra_repr(self) -> str:
        if self.link is not None and not self.leads:
            return f"stride={self.stride}, follows a linked module"
        kind = "aps" if self.scorer is None else f"lps, tau={self.tau}"
        return f"stride={self.stride}, {kind}" + (", leads a link" if self.link else "")


def link_phases(modules: Sequence[PolyphasePool2d]) -> None:
    """Make the first of `modules` choose for all of them; the others drop their scorers."""
    link = PhaseLink()
    for module in modules:
        module.link = link
        module.leads = module is modules[0]
        if not module.leads:
            module.scorer = None


def _one_hot_argmax(scores: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, K) one-hot of each row's largest score, by a scatter (`F.one_hot` checks its
    indices' range, which `torch.func.vmap` cannot batch)."""
    hot = torch.zeros_like(scores, dtype=dtype)  # (made like the scores, batched with them)
    return hot.scatter(1, scores.argmax(dim=1, keepdim=True), 1.0)


def _pick(components: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """The chosen component of each sample; through the weights when they carry a gradient
    (LPS in training), by indexing otherwise."""
    if choice.requires_grad:
        return torch.einsum("nk,nk...->n...", choice.to(components.dtype), components)
    rows = torch.arange(components.shape[0], device=components.device)
    return components[rows, choice.argmax(dim=1)]


def polyphase_components(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The stride² components of (N, C, H, W) `x` as (N, stride², C, ceil(H/s), ceil(W/s))."""
    return torch.stack(
        [
            torch.roll(x, (-i, -j), dims=(2, 3))[:, :, ::stride, ::stride]
            for i in range(stride)
            for j in range(stride)
        ],
        dim=1,
    )
