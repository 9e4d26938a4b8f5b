"""Rewrite a network's downsampling sites into anti-aliased ones (spec §3).

A *site* is an `nn.MaxPool2d`, `nn.Conv2d` or `nn.AvgPool2d` module with a stride above 1, or
a strided `F.max_pool2d` / `torch.max_pool2d` / `F.avg_pool2d` call in a forward that
`torch.fx` traces (given a module of its own; a module whose forward calls one is traced into),
but not a pool whose one window covers its whole input (a global pool does not alias). Each
call of a pool module called more than once in a traced graph is a site of its own. A model
with no site is refused (under every placement but `none`).
Sites are found, in execution order, by running the model once on an example batch (default:
zeros of N×C×32×32, C the first convolution's input channels). What each site becomes:

| placement | max-pool MaxPool(k, s) | strided conv Conv(s) → BN → ReLU | avg-pool AvgPool(k, s) |
|---|---|---|---|
| `paper` | MaxBlurPool(k, s) | Conv(1) → BN → ReLU → BlurPool(s) (ReLU fused) | BlurPool(s)* |
| `blur_before_max` | Blur(1) → MaxPool(k, s) | as `paper` | as `paper` |
| `blur_before_relu` | as `paper` | Conv(1) → BN → BlurPool(s) → ReLU | as `paper` |
| `blur_before_conv` | as `paper` | BlurPool(s) → Conv(1) | as `paper` |
| `none` | unchanged | unchanged | unchanged |

Each ablation placement moves the blur at its own kind of site; the other kinds take the
paper's form (so every site is anti-aliased under every placement but `none`). A max-pool with
padding (torchvision's MaxPool(3, 2, 1)) becomes MaxPool(k, 1, padding) → BlurPool(s), and an
average pool whose kernel is not its stride, that pads, or that sums (`divisor_override`),
AvgPool(k, 1, padding) → BlurPool(s)* (its box kept, as a max-pool keeps its max; a one-tap
filter then computes the pool), unless it is in ceil mode (a ceil-mode sum is refused). A
strided conv that no elementwise activation follows (a block whose ReLU comes after the
addition) becomes Conv(1) → BlurPool(s), the blur directly after the conv; when it is a 1×1
conv without padding or bias (a ResNet's shortcut), BlurPool(s) → Conv(1) instead, as
antialiased-cnns builds it: the same function, with the conv on a quarter of the pixels. The
`SiteChange` says which.

`subsample="aps"` makes every blur-pool that subsamples filter at stride 1 and subsample by
adaptive polyphase sampling (`ablate.polyphase`): Blur(1) → APS(s) in place of BlurPool(s);
a max-pool site becomes MaxBlurPool(k, stride 1) → APS(s), its dense max wrapping around the
map (so that it commutes with circular shifts) when the padding is circular, as does a padded
max-pool's MaxPool(k, 1, padding), which then pads circularly. `subsample="lps"`
does the same with learnable polyphase sampling, LPS(s), whose scorer has its own weights at
each site. Sites that subsample one grid (a residual block's main path and shortcut, also in
a bottleneck, whose strided conv follows a 1×1 conv: `ablate.grid_origins`) share one choice
of component: the site that runs first chooses. With circular padding here
and in the convolutions (`build_model(..., conv_padding="circular")`) and a global pool at the
end, the net is exactly invariant to circular shifts (LPS in evaluation mode).

The *stem* is the first site in execution order (for torchvision's ResNet the 7×7 stride-2
conv, whose max-pool is then the first site converted, as in antialiased-cnns' default).
`antialias_stem=False` leaves it alone; `sites=N` then converts the first N of the remaining
sites. Sites on one grid count as one for both, and are converted or left together (a block
half converted would add an anti-aliased path to an aliased one; under polyphase sampling,
maps of different components): on the CIFAR ResNet-18, whose stem conv has stride 1, the stem
is the first residual block's strided conv and shortcut.

Placing a blur after the ReLU that follows a conv needs the graph of the module that calls
the conv (`ablate.site_graphs`): the model is traced with `torch.fx`, into the modules that
hold sites (the others stay one call each, so a BatchNorm keeps its train and eval behaviour,
and a conv subclass that pads itself, like timm's Conv2dSame, is one site). A forward that
cannot be traced, or that branches on the training mode (GoogLeNet's auxiliary outputs), is
kept as written, and the modules it calls are traced instead. A BatchNorm module that applies
its own activation (timm's BatchNormAct2d) gives it up to a node of its own, so the blur goes
after the activation, as with separate modules; GroupNorm and InstanceNorm count as the BN of
the table. The other forms replace the site module by a module or `nn.Sequential`, which
needs no graph; where no graph reaches a site those still work, and a placement that would
need the graph at a strided conv raises a `ValueError` that names the conv and why its caller
has no graph. Weights are kept (the model is deep-copied, and a conv keeps its parameters
with stride 1), and output shapes are checked against the original on the example batch. A
pool whose grid blur-pool's would miss on some map size (a floor-mode AvgPool(2, 2) on an odd
map, a ceil-mode max-pool) keeps its own (`ablate.pool_grid`); a max-pool subclass, which may
pad itself (timm's MaxPool2dSame), runs at stride 1 before BlurPool(s); BlurPool(s) → Conv(1)
keeps a conv's only when its padding is (k - 1) / 2, and a site that cannot keep its shape is
named in the error.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils._pytree import tree_flatten

from ablate.modes import evaluating
from ablate.polyphase import ComponentScorer, PolyphasePool2d, link_phases
from ablate.pool_grid import PoolGrid, grid_differs
from ablate.site_graphs import SiteGraphs, free_name, set_submodule, trace_site_graphs
from ablate.sites import (
    Site,
    SiteKind,
    check_not_meta,
    choose_sites,
    default_example,
    find_sites,
    one_pool_per_call,
    pool_callers,
    pools_as_modules,
    record_calls,
)
from ablate.variant_config import PLACEMENTS, check_subsample
from kernels import BlurPool2d, MaxBlurPool2d, make_taps

_RELUS = (F.relu, torch.relu, torch.relu_)
# the elementwise nonlinearities a strided conv's blur goes after (or before: blur_before_relu)
_ACTIVATION_MODULES = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
)  # fmt: skip
_ACTIVATION_FUNCTIONS = (
    *_RELUS, F.relu6, F.leaky_relu, F.leaky_relu_, F.prelu, F.rrelu, F.rrelu_, F.elu, F.elu_,
    F.celu, F.celu_, F.selu, F.selu_, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid,
    F.hardtanh, F.hardtanh_, F.sigmoid, F.tanh, F.softplus, F.logsigmoid, F.softsign,
    F.tanhshrink, F.softshrink, F.hardshrink, F.threshold, F.threshold_, torch.sigmoid,
    torch.sigmoid_, torch.tanh, torch.tanh_, torch.selu, torch.selu_, torch.celu, torch.celu_,
    torch.prelu, torch.rrelu, torch.rrelu_,
)  # fmt: skip
_RELU_METHODS = ("relu", "relu_")
_ACTIVATION_METHODS = (*_RELU_METHODS, "sigmoid", "sigmoid_", "tanh", "tanh_")
# the normalisations a strided conv's activation may follow, and how a SiteChange names them
# (_BatchNorm: BatchNorm2d, SyncBatchNorm and lazy BatchNorm alike)
_NORMS_LABELS = ((_BatchNorm, "BN"), (nn.GroupNorm, "GN"), (nn.InstanceNorm2d, "IN"))
_NORMS = tuple(kind for kind, _ in _NORMS_LABELS)


@dataclass(frozen=True)
class SiteChange:
    """One converted site: its qualified module name, its kind and what it became, and whether
    that computes what the site did (`keeps_function`: a one-tap filter at a max-pool)."""

    name: str
    kind: SiteKind
    description: str
    keeps_function: bool = False

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}): {self.description}"


@dataclass(frozen=True)
class _Blur:
    """The filter and subsampling every inserted blur uses; builds the kernels' modules."""

    filter_size: int | None
    padding: str
    filter: str
    taps: Sequence[float] | None
    sigma: float | None
    backend: str
    subsample: str = "fixed"

    @property
    def one_tap(self) -> bool:
        """Whether the filter is a single tap (normalised to 1): no low-pass at all."""
        if self.filter == "custom" and self.taps is not None:
            return len(self.taps) == 1
        return self.filter_size == 1

    def pool(self, channels: int, stride: int, *, relu: bool = False) -> nn.Module:
        """BlurPool(stride), or Blur(1) → APS/LPS(stride) under polyphase sampling."""
        adaptive = self._adaptive(stride)
        blur = BlurPool2d(
            channels, self.filter_size, 1 if adaptive else stride, self.padding, relu=relu,
            **self._kw(),
        )  # fmt: skip
        return nn.Sequential(blur, self._polyphase(channels, stride)) if adaptive else blur

    def max_pool(self, channels: int, stride: int, max_kernel: int) -> nn.Module:
        """MaxBlurPool(stride), or MaxBlurPool(1) → APS/LPS(stride) (see the module's
        docstring)."""
        adaptive = self._adaptive(stride)
        pool: nn.Module = MaxBlurPool2d(
            channels,
            self.filter_size,
            1 if adaptive else stride,
            self.padding,
            max_kernel=max_kernel,
            **self._kw(),
        )
        if not adaptive:
            return pool
        if self.wraps(stride):
            pool = nn.Sequential(_wrap(max_kernel, 0), pool)
        return nn.Sequential(pool, self._polyphase(channels, stride))

    def name(self, stride: int) -> str:
        """What `pool` builds, for a SiteChange."""
        if not self._adaptive(stride):
            return f"BlurPool(stride {stride})"
        return f"Blur(stride 1) → {self.subsample.upper()}(stride {stride})"

    def max_name(self, stride: int, max_kernel: int) -> str:
        """What `max_pool` builds, for a SiteChange."""
        if not self._adaptive(stride):
            return f"MaxBlurPool(max {max_kernel}, stride {stride})"
        wrap = ", wrapping around" if self.wraps(stride) else ""
        return (
            f"MaxBlurPool(max {max_kernel}{wrap}, stride 1) → "
            f"{self.subsample.upper()}(stride {stride})"
        )

    def wraps(self, stride: int) -> bool:
        """Whether a dense max before this blur wraps around the map instead of stopping at
        its edge (or padding with -inf): with circular padding and polyphase sampling, so that
        the site commutes with circular shifts."""
        return self.padding == "circular" and self._adaptive(stride)

    def _adaptive(self, stride: int) -> bool:
        """Whether a blur of this stride subsamples by APS or LPS (stride 1 does not
        subsample)."""
        return self.subsample != "fixed" and stride > 1

    def _polyphase(self, channels: int, stride: int) -> PolyphasePool2d:
        scorer = ComponentScorer(channels) if self.subsample == "lps" else None
        return PolyphasePool2d(stride, scorer)

    def _kw(self) -> dict:
        return {
            "filter": self.filter,
            "taps": self.taps,
            "sigma": self.sigma,
            "backend": self.backend,
        }


def _wrap(kernel: int, padding: int) -> nn.CircularPad2d:
    """Circular padding for a dense (stride-1) pool of ``kernel`` whose own padding is
    ``padding``: its windows start ``padding`` rows before the map, as the pool's do, and wrap
    around, so its output has the input's size and moves with a circular shift of it."""
    return nn.CircularPad2d((padding, kernel - 1 - padding) * 2)


def antialias(
    model: nn.Module,
    *,
    filter_size: int = 4,
    padding: str = "reflect",
    placement: str = "paper",
    sites: int | None = None,
    antialias_stem: bool = True,
    filter: str = "binomial",
    taps: Sequence[float] | None = None,
    sigma: float | None = None,
    backend: str = "auto",
    subsample: str = "fixed",
    example_input: torch.Tensor | None = None,
) -> tuple[nn.Module, list[SiteChange]]:
    """Return an anti-aliased copy of `model` and the list of sites it changed.

    `model` itself is left untouched. `filter_size`, `padding`, `filter`, `taps`, `sigma` and
    `backend` configure every blur as in `kernels.BlurPool2d` (with `filter="custom"` the
    length of `taps` is the size and `filter_size` is not used); `subsample` is "fixed" (the
    paper's), "aps" or "lps" (adaptive or learnable polyphase sampling). `example_input` is a
    batch the model accepts, used to find the sites and check shapes (default: zeros,
    N×C×32×32).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r}")
    if isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
        raise ValueError(
            "model is a torch.compile wrapper, whose graphs convert as the compiled code's, "
            "not the model's: anti-alias the model itself (model._orig_mod) and compile the "
            "result"
        )
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    check_subsample(placement, subsample)
    if sites is not None and (isinstance(sites, bool) or not isinstance(sites, int) or sites < 0):
        raise ValueError(f"sites must be None or an int >= 0, got {sites!r}")
    if not isinstance(antialias_stem, bool):
        raise ValueError(f"antialias_stem must be True or False, got {antialias_stem!r}")
    size = None if filter == "custom" else filter_size
    make_taps(size, filter, taps=taps, sigma=sigma, argument="filter")  # bad filter: raise now
    blur = _Blur(size, padding, filter, taps, sigma, backend, subsample)
    blur.pool(1, 2)  # raises on a bad padding or backend

    original, model = model, copy.deepcopy(model)
    if placement == "none":
        return model, []
    example = default_example(model) if example_input is None else example_input
    check_not_meta(model, example)
    found, baseline = find_sites(model, example)
    traced = trace_site_graphs(model, [site.name for site in found], example, pool_callers(model))
    site_names = {site.name for site in found}
    if any(
        [
            pools_as_modules(graph) | one_pool_per_call(graph, prefix, site_names)
            for prefix, graph in traced.graphs.items()
        ]
    ):
        found, baseline = find_sites(traced.root, example)
    if not found:
        raise ValueError(
            f"placement {placement!r}: the model has no downsampling site to anti-alias (a "
            "strided nn.Conv2d, nn.MaxPool2d or nn.AvgPool2d, or a strided F.max_pool2d / "
            "F.avg_pool2d call in a forward torch.fx can trace), on the example batch of shape "
            f"{tuple(example.shape)}; use placement 'none' for it"
        )
    chosen = choose_sites(found, antialias_stem, sites)
    device = example.device
    changes, ends, site_aps = [], [], []
    made: set[PolyphasePool2d] = set()  # the APS/LPS modules of the sites converted so far
    for site in chosen:
        change, end = _convert(traced, site, placement, blur, device)
        changes.append(change)
        ends.append(end)
        site_aps.append([m for m in _polyphase_modules(traced.root) if m not in made])
        made.update(site_aps[-1])
    _link_shared_grids(chosen, site_aps)
    for graph_module in traced.graphs.values():
        graph_module.graph.lint()
        graph_module.recompile()
        graph_module.delete_all_unused_submodules()
    root = traced.root
    _check_shapes(root, example, chosen, ends, _output_shapes(baseline), placement, subsample)
    for name, reason in traced.callers_left.items():
        warnings.warn(
            f"{traced.module_label(name)} calls a pooling function in a forward torch.fx cannot "
            f"trace ({reason}): a strided call there is left as written, not anti-aliased",
            stacklevel=2,
        )
    _take_modes(original, root)
    return root, changes


def _take_modes(original: nn.Module, converted: nn.Module) -> None:
    """Give each module of `converted` the training flag of the module of `original` under its
    name, and a module new there (a blur, a wrapper, a graph's holder of submodules) its
    parent's: a model converted in eval mode stays in eval mode throughout."""
    flags = {name: module.training for name, module in original.named_modules()}
    for name, module in converted.named_modules():
        if name not in flags:
            flags[name] = flags[name.rpartition(".")[0]]
        module.training = flags[name]


def _polyphase_modules(root: nn.Module) -> list[PolyphasePool2d]:
    return [m for m in root.modules() if isinstance(m, PolyphasePool2d)]


def _link_shared_grids(sites: list[Site], site_aps: list[list[PolyphasePool2d]]) -> None:
    """Tie the APS/LPS modules of sites on one grid to one choice of component, made by the
    first site's (sites are in execution order)."""
    groups: dict[int, list[PolyphasePool2d]] = {}
    for site, modules in zip(sites, site_aps, strict=True):
        groups.setdefault(id(site.origin), []).extend(modules)  # the sites hold their origins
    for modules in groups.values():
        if len(modules) > 1:
            link_phases(modules)


def _convert(
    traced: SiteGraphs, site: Site, placement: str, blur: _Blur, device: torch.device
) -> tuple[SiteChange, str]:
    """Rewrite one site; return its SiteChange and the name of the module whose output ends
    the site. A site in a graph is rewritten there, under its name in that graph."""
    stride = site.square("stride")
    channels = site.in_shape[1]
    own_kind = {"blur_before_max": "maxpool", "blur_before_relu": "conv"}.get(placement)
    note = (
        f" (placement {placement!r} changes {own_kind or 'conv'} sites only; this one takes the "
        "paper's form)"
        if placement != "paper" and site.kind != (own_kind or "conv")
        else ""
    )
    prefix, graph_module = traced.owner(site.name)
    caller = traced.module_label(prefix)
    full_name = site.name
    root = traced.root if graph_module is None else graph_module
    if graph_module is None:
        note += f" [module replaced: {caller} has no graph]"
        if len(site.channels) > 1:  # a graph would give each call a pool of its own
            raise ValueError(
                f"site {site.name!r} is one pool called at {' and '.join(map(str, site.channels))} "
                f"channels, in {caller}, which has no graph ({traced.untraced[prefix]}): a "
                "converted pool is made for one channel count; give each call a pool of its "
                f"own, or make {caller} traceable"
            )
    elif prefix:
        site = dataclasses.replace(site, name=site.name[len(prefix) + 1 :])

    if site.kind == "conv" and graph_module is not None:
        description, end = _insert_at_conv(graph_module, site, placement, blur, stride, device)
    elif site.kind == "conv" and placement != "blur_before_conv":
        raise ValueError(
            f"placement {placement!r} puts the blur after the BN/ReLU that follows strided "
            f"conv {site.name!r}, which needs the graph of the module that calls it, but "
            f"{caller} has no graph ({traced.untraced[prefix]}); use placement "
            "'blur_before_conv', or make it traceable"
        )
    else:  # a pool, or a conv with the blur before it where no graph holds it
        replacement, description = _replacement(site, placement, blur, channels, stride)
        set_submodule(root, site.name, replacement.to(device))
        end = site.name
    qualified_end = f"{prefix}.{end}" if graph_module is not None and prefix else end
    keeps = _keeps_function(site, placement, blur)
    return SiteChange(full_name, site.kind, description + note, keeps), qualified_end


def _keeps_function(site: Site, placement: str, blur: _Blur) -> bool:
    """Whether the converted site computes what the site did, exactly and in both modes: a
    max-pool whose blur has one tap, either before it (`blur_before_max`: the identity) or in the
    paper's form on the fixed grid (MaxPool(k, stride s) is MaxPool(k, stride 1) read at every
    s-th row and column, which a one-tap blur-pool does). A subclass of MaxPool2d may pad by its
    stride, and strided convs and average pools change (BN's statistics, the box filter)."""
    if site.kind != "maxpool" or not blur.one_tap:
        return False
    if placement == "blur_before_max":  # (which subsamples on the fixed grid only)
        return True
    return type(site.module) is nn.MaxPool2d and blur.subsample == "fixed"


def _replacement(
    site: Site, placement: str, blur: _Blur, channels: int, stride: int
) -> tuple[nn.Module, str]:
    """The module that takes a pool's place, or a conv's with the blur before it."""
    if site.kind == "avgpool":
        return _convert_avgpool(site, blur, channels, stride)
    if site.kind == "maxpool":
        return _convert_maxpool(site, placement, blur, channels, stride)
    site.module.stride = (1, 1)
    return nn.Sequential(
        blur.pool(channels, stride), site.module
    ), f"{blur.name(stride)} → Conv(stride 1)"


def _convert_maxpool(
    site: Site, placement: str, blur: _Blur, channels: int, stride: int
) -> tuple[nn.Module, str]:
    pool = site.module
    kernel, pad = site.square("kernel_size"), site.square("padding")
    if pool.return_indices or site.square("dilation") != 1:
        raise ValueError(
            f"max-pool site {site.name!r} with return_indices or dilation is not supported"
        )
    if placement == "blur_before_max":
        return nn.Sequential(
            blur.pool(channels, 1), pool
        ), f"Blur(stride 1) → MaxPool({kernel}, stride {stride})"
    if type(pool) is not nn.MaxPool2d:  # a subclass may pad itself (timm's MaxPool2dSame)
        pool.stride = (1, 1)
        own = type(pool).__name__
        return nn.Sequential(pool, blur.pool(channels, stride)), (
            f"{own}({kernel}, stride 1) → {blur.name(stride)}; a subclass of MaxPool2d keeps its "
            "own forward, which may pad the map itself"
        )
    if pad == 0:
        replacement = blur.max_pool(channels, stride, kernel)
        description = blur.max_name(stride, kernel)
    else:
        dense, dense_name = _dense_pool(nn.MaxPool2d, kernel, pad, blur.wraps(stride))
        replacement = nn.Sequential(dense, blur.pool(channels, stride))
        description = f"{dense_name} → {blur.name(stride)}"
    return _on_pool_grid(site, blur, replacement, description, dense=True)


def _dense_pool(
    kind: type[nn.Module], kernel: int, pad: int, wraps: bool, **options: Any
) -> tuple[nn.Module, str]:
    """A pool's window at stride 1, padded as the pool pads or wrapping around the map
    (:func:`_wrap`), and its name for a SiteChange."""
    name = f"{kind.__name__.removesuffix('2d')}({kernel}, stride 1, padding {pad}"
    if wraps:
        dense = nn.Sequential(_wrap(kernel, pad), kind(kernel, 1, **options))
        return dense, f"{name} wrapping around)"
    return kind(kernel, 1, pad, **options), f"{name})"


def _convert_avgpool(site: Site, blur: _Blur, channels: int, stride: int) -> tuple[nn.Module, str]:
    """AvgPool(k, k) → BlurPool(k), the paper's form (the blur's filter takes the box's place);
    a pool with another kernel, with padding or with a divisor of its own (a scaled sum) keeps
    its box at stride 1 before BlurPool(s), as a max-pool keeps its max (its box may be the
    larger low-pass)."""
    pool = site.module
    kernel, pad = site.square("kernel_size"), site.square("padding")
    if pool.ceil_mode and pool.divisor_override is not None:
        raise ValueError(
            f"average-pool site {site.name!r} in ceil mode with divisor_override="
            f"{pool.divisor_override} is not supported: its sum's scale would be lost with its "
            "box, and a dense box has no ceil windows; use floor mode, or no divisor_override"
        )
    if pool.divisor_override is None and ((kernel == stride and pad == 0) or pool.ceil_mode):
        # (a dense box has no ceil windows; a box with a divisor of its own is a scaled sum)
        return _on_pool_grid(
            site, blur, blur.pool(channels, stride), blur.name(stride), dense=False
        )
    dense, dense_name = _dense_pool(
        nn.AvgPool2d, kernel, pad, blur.wraps(stride),
        count_include_pad=pool.count_include_pad, divisor_override=pool.divisor_override,
    )  # fmt: skip
    replacement = nn.Sequential(dense, blur.pool(channels, stride))
    description = f"{dense_name} → {blur.name(stride)}"
    return _on_pool_grid(site, blur, replacement, description, dense=True)


def _on_pool_grid(
    site: Site, blur: _Blur, replacement: nn.Module, description: str, *, dense: bool
) -> tuple[nn.Module, str]:
    """``replacement`` in a :class:`PoolGrid` where its rows can differ from the pool's on some
    map size (a floor-mode pool whose stride does not divide the map, a ceil-mode max-pool).
    ``dense``: ``replacement`` starts with the pool's window at stride 1, which makes
    2·padding - kernel + 1 more rows than it takes.
    Polyphase sampling keeps the blur-pool's rows: trimming them would break its invariance to
    circular shifts, so such a site is refused where its shape changes."""
    kernel, stride, pad = (site.square(name) for name in ("kernel_size", "stride", "padding"))
    ceil_mode = site.module.ceil_mode
    growth = 2 * pad - kernel + 1 if dense else 0
    if blur.subsample != "fixed" or not grid_differs(growth, kernel, stride, pad, ceil_mode):
        return replacement, description
    grid = PoolGrid(
        replacement, kernel, stride, pad, ceil_mode, dense_max=dense and site.kind == "maxpool"
    )
    mode = "ceil" if ceil_mode else "floor"
    return grid, f"{description}, on the {mode}-mode pool's output grid"


def _insert_at_conv(
    graph_module: fx.GraphModule,
    site: Site,
    placement: str,
    blur: _Blur,
    stride: int,
    device: torch.device,
) -> tuple[str, str]:
    """Set the conv's stride to 1 and insert a blur node after its BN → activation chain.

    `paper` puts the blur after the activation (fusing a ReLU into it); `blur_before_relu`
    between BN and the activation. With no activation after the conv, both put it right after
    the conv, or right before it when the two commute (:func:`_is_pointwise`), where it filters
    a quarter as many pixels. `blur_before_conv` puts it before the conv. The conv keeps its
    name (and its weights their state-dict keys). Returns the description and the name of the
    module whose output ends the site (the blur, or the conv when the blur goes before it).
    """
    conv = site.module
    conv.stride = (1, 1)
    channels = conv.out_channels
    name = free_name(graph_module, f"{site.name}_blur")
    graph = graph_module.graph
    description, end = "", name
    for node in [n for n in graph.nodes if n.op == "call_module" and n.target == site.name]:
        bn, act = _bn_activation_chain(graph_module, node)
        head = "Conv(stride 1)" + (f" → {_norm_label(graph_module, bn)}" if bn is not None else "")
        if placement == "blur_before_conv" or (act is None and _is_pointwise(conv)):
            graph_module.add_submodule(name, blur.pool(conv.in_channels, stride))
            with graph.inserting_before(node):
                blurred = graph.call_module(name, (node.args[0],))
            node.args = (blurred, *node.args[1:])
            end = site.name
            description = (
                f"{blur.name(stride)} → Conv(stride 1)"
                if placement == "blur_before_conv"
                else f"{blur.name(stride)} → Conv 1×1(stride 1); no ReLU follows this 1×1 "
                "conv, so the blur goes before it: the same function, on a quarter of the "
                "pixels (as antialiased-cnns does)"
            )
        elif act is None:
            graph_module.add_submodule(name, blur.pool(channels, stride))
            _insert_after(graph, node, name)
            description = (
                f"Conv(stride 1) → {blur.name(stride)}; no ReLU follows this conv, so the "
                "blur follows it directly"
            )
        elif placement == "blur_before_relu":
            graph_module.add_submodule(name, blur.pool(channels, stride))
            _insert_after(graph, bn or node, name)
            description = f"{head} → {blur.name(stride)} → {_label(graph_module, act)}"
        elif _is_relu(graph_module, act):
            graph_module.add_submodule(name, blur.pool(channels, stride, relu=True))
            with graph.inserting_after(act):
                fused = graph.call_module(name, (act.args[0],))
            act.replace_all_uses_with(fused)
            graph.erase_node(act)
            description = f"{head} → ReLU → {blur.name(stride)} (the ReLU fused into the blur)"
        else:
            graph_module.add_submodule(name, blur.pool(channels, stride))
            _insert_after(graph, act, name)
            description = f"{head} → {_label(graph_module, act)} → {blur.name(stride)}"
    graph_module.get_submodule(name).to(device)
    return description, end


def _is_pointwise(conv: nn.Conv2d) -> bool:
    """Whether a blur commutes with ``conv``: a 1×1 conv without padding or bias mixes the
    channels of each pixel alone, as the same linear map everywhere, so filtering every channel
    alike before it or after it gives the same result."""
    return conv.kernel_size == (1, 1) and conv.padding in ((0, 0), "valid") and conv.bias is None


def _bn_activation_chain(
    graph_module: fx.GraphModule, conv: fx.Node
) -> tuple[fx.Node | None, fx.Node | None]:
    """The normalisation node (BatchNorm, GroupNorm or InstanceNorm) and the activation node
    that follow `conv` as its only users."""
    bn = _only_user(conv)
    if bn is None or not (
        bn.op == "call_module" and isinstance(graph_module.get_submodule(bn.target), _NORMS)
    ):
        bn = None
    after = _only_user(bn or conv)
    act = after if after is not None and _is_activation(graph_module, after) else None
    if bn is not None and act is None:
        act = _split_activation(graph_module, bn)
    return bn, act


def _split_activation(graph_module: fx.GraphModule, bn: fx.Node) -> fx.Node | None:
    """The node of the activation a normalisation module applies itself (timm's BatchNormAct2d
    and GroupNormAct), which it gives up to a node of its own after it, so that the blur can
    go after it or before it; None when it holds no activation, or when its output is not its
    activation's output on its output without it (checked on a random batch in eval mode)."""
    module = graph_module.get_submodule(bn.target)
    held = [(n, c) for n, c in module.named_children() if isinstance(c, _ACTIVATION_MODULES)]
    if len(held) != 1:
        return None
    name, activation = held[0]
    like = next(itertools.chain(module.parameters(), module.buffers()), torch.empty(0))
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    channels = module.num_channels if isinstance(module, nn.GroupNorm) else module.num_features
    x = torch.randn(2, channels, 3, 3, device=like.device, dtype=dtype)
    with evaluating(module):
        whole = module(x)
        setattr(module, name, nn.Identity())
        split = activation(module(x))
    if not torch.allclose(whole, split):
        setattr(module, name, activation)
        return None
    act_name = free_name(graph_module, f"{bn.target}_{name}")
    graph_module.add_submodule(act_name, activation)
    _insert_after(graph_module.graph, bn, act_name)
    return _only_user(bn)


def _norm_label(graph_module: fx.GraphModule, node: fx.Node) -> str:
    module = graph_module.get_submodule(node.target)
    return next(label for kind, label in _NORMS_LABELS if isinstance(module, kind))


def _only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _is_activation(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(graph_module.get_submodule(node.target), _ACTIVATION_MODULES)
    if node.op == "call_function":
        return node.target in _ACTIVATION_FUNCTIONS
    return node.op == "call_method" and node.target in _ACTIVATION_METHODS


def _is_relu(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(graph_module.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELUS
    return node.op == "call_method" and node.target in _RELU_METHODS


def _label(graph_module: fx.GraphModule, node: fx.Node) -> str:
    """A short name of the operation a node runs: its module class, function or method."""
    if node.op == "call_module":
        return type(graph_module.get_submodule(node.target)).__name__
    return node.target if isinstance(node.target, str) else node.target.__name__


def _insert_after(graph: fx.Graph, node: fx.Node, module_name: str) -> None:
    """Route every user of `node` through a new call of `module_name`."""
    with graph.inserting_after(node):
        inserted = graph.call_module(module_name, (node,))
    node.replace_all_uses_with(inserted, delete_user_cb=lambda user: user is not inserted)


def _check_shapes(
    model: nn.Module,
    example: torch.Tensor,
    sites: list[Site],
    ends: list[str],
    baseline_out: list[torch.Size],
    placement: str,
    subsample: str,
) -> None:
    """Each converted site's output, and the model's output, keep the original shapes. The
    first site that changes its shape is named even when the model then fails on it (the
    error downstream says less)."""
    modules = {name: model.get_submodule(name) for name in ends}
    calls: dict[str, tuple[torch.Size, torch.Size, torch.Tensor]] = {}
    failure, out_shape = None, None
    try:
        out_shape = _output_shapes(record_calls(model, example, modules, calls))
    except Exception as error:
        failure = error
    for site, end in zip(sites, ends, strict=True):
        if end in calls and calls[end][1] != site.out_shape:
            raise _shape_error(site, calls[end][1], placement, subsample)
    if failure is not None:
        message = f"the anti-aliased model fails on the example batch: {failure}"
        raise ValueError(message) from failure
    for site, end in zip(sites, ends, strict=True):
        if end not in calls:
            raise _shape_error(site, None, placement, subsample)
    if out_shape != baseline_out:
        raise ValueError(f"the anti-aliased model outputs {out_shape}, the original {baseline_out}")


def _output_shapes(output: Any) -> list[torch.Size]:
    """The shapes of the tensors a model outputs: one tensor, or a list, tuple or dict of them
    (a backbone's feature maps)."""
    return [t.shape for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]


def _shape_error(site: Site, got: torch.Size | None, placement: str, subsample: str) -> ValueError:
    hint = ""
    if placement == "blur_before_conv" and site.kind == "conv":
        hint = (
            "; BlurPool(stride s) → Conv(stride 1) keeps a conv's rows only when its kernel k is "
            "odd and its padding (k - 1) / 2; placement 'paper' keeps every conv's"
        )
    elif subsample != "fixed" and site.kind != "conv":
        hint = (
            "; adaptive and learnable polyphase sampling keep their own grid, not trimmed to a "
            "pool's (that would break their invariance to circular shifts): use "
            "subsample='fixed' here, or a floor-mode pool whose stride divides the map"
        )
    return ValueError(
        f"site {site.name!r}: the anti-aliased form outputs {got}, the original "
        f"{site.out_shape} (for input {tuple(site.in_shape)}); this site cannot keep its "
        f"shape{hint}"
    )
