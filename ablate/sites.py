"""A network's downsampling sites (spec §3): the strided convs and pools, module or function
call, that an example batch runs, in the order it runs them, and the ones a conversion takes.
`ablate.antialias` rewrites them."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.operator_schemas import normalize_function
from torch.nn.parameter import is_lazy

from ablate.grid_origins import GridOrigins
from ablate.modes import evaluating
from ablate.site_graphs import free_name

SiteKind = Literal["maxpool", "conv", "avgpool"]

EXAMPLE_SIZE = 32  # height and width of the default example batch (CIFAR-sized)


@dataclass(frozen=True)
class Site:
    """A downsampling module as the example batch met it."""

    name: str
    kind: SiteKind
    module: nn.Module
    in_shape: torch.Size
    out_shape: torch.Size
    # the map whose grid its input lies on (`ablate.grid_origins`): sites whose inputs start
    # from one map subsample one grid
    origin: torch.Tensor = field(compare=False, repr=False)
    # the channel counts of all its calls (a pool a forward calls twice may meet several)
    channels: tuple[int, ...] = ()

    def square(self, attribute: str) -> int:
        """The module's stride (or kernel, padding) as one int; a BlurPool2d takes one stride."""
        value = _pair(getattr(self.module, attribute))
        if value[0] != value[1]:
            raise ValueError(
                f"site {self.name!r} has {attribute}={value}: only square {attribute}s can be "
                "anti-aliased"
            )
        return value[0]


def _site_kind(module: nn.Module) -> SiteKind | None:
    if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
        return "conv"
    if isinstance(module, nn.MaxPool2d) and _pair(module.stride) != (1, 1):
        return "maxpool"
    if isinstance(module, nn.AvgPool2d) and _pair(module.stride) != (1, 1):
        return "avgpool"
    return None


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def find_sites(model: nn.Module, example: torch.Tensor) -> tuple[list[Site], Any]:
    """The model's sites in the order the example batch runs them, and its output (eval
    mode)."""
    candidates = {name: m for name, m in model.named_modules() if _site_kind(m) is not None}
    calls: dict[str, tuple[torch.Size, torch.Size, torch.Tensor]] = {}
    channels: dict[str, set[int]] = {}
    with GridOrigins() as origins:
        try:
            output = record_calls(model, example, candidates, calls, channels)
        except Exception as error:  # the user's model or example: say which argument
            raise ValueError(
                f"the model fails on example_input of shape {tuple(example.shape)} (too small "
                f"for its downsampling, or not what it takes?): {error}"
            ) from error
    sites = [
        Site(name, _site_kind(candidates[name]), candidates[name], in_shape, out_shape,
              origins.origin(source), tuple(sorted(channels[name])))
        for name, (in_shape, out_shape, source) in calls.items()
    ]  # fmt: skip
    return [site for site in sites if not _pools_globally(site)], output


def _pools_globally(site: Site) -> bool:
    """Whether the site is a pool whose one window covers its whole input (a ResNet's final
    ``F.avg_pool2d(out, 4)`` on a 4×4 map): a global pool, which does not alias, and whose
    output a blur-pool would not keep."""
    if site.kind == "conv" or tuple(site.out_shape[-2:]) != (1, 1):
        return False
    kernel, padding = _pair(site.module.kernel_size), _pair(site.module.padding)
    return all(k - p >= n for k, p, n in zip(kernel, padding, site.in_shape[-2:], strict=True))


def record_calls(
    model: nn.Module,
    example: torch.Tensor,
    modules: dict[str, nn.Module],
    calls: dict[str, tuple[torch.Size, torch.Size, torch.Tensor]],
    channels: dict[str, set[int]] | None = None,
) -> Any:
    """Fill ``calls`` with the input shape, output shape and input tensor of ``modules`` at
    their first call, in call order, and ``channels`` (if given) with the channel counts of
    all their calls, in eval mode; return the model's output. The calls made before an
    exception stay in ``calls``. Holding the inputs keeps them alive, so no two calls' inputs
    can be one tensor unless the model passed the same tensor."""

    def hook(name: str):
        def record(_module: nn.Module, inputs: tuple, output: Any) -> None:
            if isinstance(output, tuple):  # a max-pool's values and indices (return_indices)
                output = output[0]
            calls.setdefault(name, (inputs[0].shape, output.shape, inputs[0]))
            if channels is not None:
                channels.setdefault(name, set()).add(inputs[0].shape[1])

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    try:
        with evaluating(model):
            return model(example)
    finally:
        for handle in handles:
            handle.remove()


def choose_sites(found: list[Site], antialias_stem: bool, sites: int | None) -> list[Site]:
    """The sites to convert: all found but the stem unless `antialias_stem`, and of those the
    first `sites`; sites on one grid (a residual block's strided conv and its shortcut) are
    taken or left together, and count as one."""
    units: dict[int, list[Site]] = {}
    for site in found:
        units.setdefault(id(site.origin), []).append(site)
    kept = list(units.values())[0 if antialias_stem else 1 :]
    if sites is not None and sites > len(kept):
        # more would convert them all, as None does: a study varying sites trains that twice
        stem = "" if antialias_stem else " past the stem (antialias_stem=False)"
        raise ValueError(
            f"sites={sites}: the network has {len(kept)} site(s){stem}; give 0 to {len(kept)}, "
            "or None for all"
        )
    kept = kept if sites is None else kept[:sites]
    names = {site.name for unit in kept for site in unit}
    return [site for site in found if site.name in names]


_FUNCTIONAL_POOLS = {
    F.max_pool2d: nn.MaxPool2d, torch.max_pool2d: nn.MaxPool2d, F.avg_pool2d: nn.AvgPool2d,
}  # fmt: skip


def pool_callers(model: nn.Module) -> list[str]:
    """The modules, other than PyTorch's own, whose forward names a pooling function
    (``F.max_pool2d(x, 2)``): traced into, so that their strided calls become sites."""
    return [name for name, module in model.named_modules() if _names_a_pool_function(module)]


def _names_a_pool_function(module: nn.Module) -> bool:
    if type(module).__module__.startswith("torch."):  # PyTorch's own (a scripted module too)
        return False
    code = getattr(type(module).forward, "__code__", None)
    return code is not None and not {"max_pool2d", "avg_pool2d"}.isdisjoint(code.co_names)


def pools_as_modules(graph_module: fx.GraphModule) -> bool:
    """Give each strided functional max- or average-pool call in the graph (Inception's
    reduction blocks call ``F.max_pool2d``) a module of its own in the module that calls it,
    so that it is a site like any other; whether there was one. Calls whose arguments are
    computed at run time, and max-pools that return their indices, stay as they are."""
    graph, changed = graph_module.graph, False
    for node in list(graph.nodes):
        pool_type = _FUNCTIONAL_POOLS.get(node.target) if node.op == "call_function" else None
        call = pool_type and normalize_function(
            node.target, node.args, node.kwargs, normalize_to_only_use_kwargs=True
        )
        if not call:
            continue
        kwargs = dict(call.kwargs)
        source = kwargs.pop("input")
        kwargs["stride"] = kwargs.get("stride") or None  # F.avg_pool2d's default is []
        if any(isinstance(v, fx.Node) for v in kwargs.values()) or kwargs.get("return_indices"):
            continue
        pool = pool_type(**kwargs)
        if _site_kind(pool) is None:
            continue
        callers = list(node.meta.get("nn_module_stack", {}).values())
        prefix = f"{callers[-1][0]}." if callers else ""
        name = free_name(graph_module, prefix + node.target.__name__)
        graph_module.add_submodule(name, pool)
        with graph.inserting_before(node):
            node.replace_all_uses_with(graph.call_module(name, (source,)))
        graph.erase_node(node)
        changed = True
    if changed:
        graph_module.recompile()
    return changed


def one_pool_per_call(graph_module: fx.GraphModule, prefix: str, site_names: set[str]) -> bool:
    """Give each call of a pool site after its first a copy of the pool in the graph (PyTorch's
    CIFAR tutorial calls one ``self.pool`` after convs of 6 and then 16 channels), so that each
    call is a site, converted for its own channels; whether there was one. A site with
    parameters (a conv applied twice) stays shared."""
    seen, changed = set(), False
    for node in graph_module.graph.nodes:
        qualified = f"{prefix}.{node.target}" if prefix else node.target
        if node.op != "call_module" or qualified not in site_names:
            continue
        pool = graph_module.get_submodule(node.target)
        if node.target not in seen or next(pool.parameters(), None) is not None:
            seen.add(node.target)
            continue
        node.target = free_name(graph_module, node.target)
        graph_module.add_submodule(node.target, copy.deepcopy(pool))
        changed = True
    if changed:
        graph_module.recompile()
    return changed


def default_example(model: nn.Module) -> torch.Tensor:
    """Zeros shaped like a CIFAR batch for the model's first convolution."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError("model has no nn.Conv2d to size an example batch from: pass example_input")
    weight = conv.weight
    return torch.zeros(
        2, conv.in_channels, EXAMPLE_SIZE, EXAMPLE_SIZE, device=weight.device, dtype=weight.dtype
    )


def check_not_meta(model: nn.Module, example: torch.Tensor) -> None:
    """Refuse tensors without values: the conversion runs the model to find its sites and
    checks each graph against the module it replaces."""
    named = itertools.chain(model.named_parameters(), model.named_buffers())
    tensors = {f"model's {name!r}": t for name, t in named if not is_lazy(t)}
    tensors["example_input"] = example
    meta = next((name for name, t in tensors.items() if t.is_meta), None)
    if meta is not None:
        raise ValueError(
            f"{meta} is on the meta device: antialias runs the model on the example batch to "
            "find its sites and check its graphs, so it needs tensors with values; convert on "
            "the CPU (or any real device) and move the model afterwards"
        )
