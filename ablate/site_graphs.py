"""The `torch.fx` graphs `ablate.antialias` rewrites: of the whole model where it traces, else
of the largest modules beneath it that do.

A graph is kept only when it is sound: it computes the module's output on the example batch,
and it keeps both modes. `torch.fx` runs Python once, at the mode the module is in, so a graph
would freeze a forward's ``self.training``. Where the module passes it to a function
(``F.dropout(x, training=self.training)``, timm's classifier heads), the graph reads the mode
when it runs instead (:class:`TrainingMode`); where the forward branches on it (torchvision's
GoogLeNet and Inception v3 return their auxiliary outputs in training only), it has no sound
graph. Where the model's graph is not sound, each child that holds sites is traced on its own, with
the input the example batch gave it, and so on down; the model keeps its own forward and
calls the traced children. A site no graph reaches can still be replaced as a module.

A graph goes into the modules that hold sites, into those whose forward calls a pooling
function (its strided calls become sites), and into those that return something other than a
tensor on the example batch; every other module, and each site, stays one call
(:class:`SiteTracer`). So a BatchNorm that applies its own activation (timm's BatchNormAct2d)
and a drop-path keep both modes, and a block that tests whether its input is a list (timm's
SelecSLS) receives the list the block before it returns, not one traced value.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from ablate.modes import evaluating, kept_modes

# positional arguments, keyword arguments and output of a module's first call
Call = tuple[tuple, dict[str, Any], Any]


@dataclass
class SiteGraphs:
    """The traced graphs of a model, installed in it: `root` is the graph of the whole model,
    or the model with the graphs of its modules in place of them."""

    root: nn.Module
    graphs: dict[str, fx.GraphModule]  # by qualified module name ("" for the model)
    untraced: dict[str, str]  # why a module that holds sites has no graph, by name
    # why a module whose forward calls a pooling function was not traced into, by name
    callers_left: dict[str, str] = field(default_factory=dict)

    def owner(self, name: str) -> tuple[str, fx.GraphModule | None]:
        """The name of the graph a site lies in and the graph; where none does, the name of
        the innermost module around it that has none, and None."""
        inner = ""
        for prefix in [*self.graphs, *self.untraced]:
            if _within(name, prefix) and len(prefix) >= len(inner):
                inner = prefix
        return inner, self.graphs.get(inner)

    @staticmethod
    def module_label(prefix: str) -> str:
        return f"module {prefix!r}" if prefix else "the model"


class SiteTracer(fx.Tracer):
    """Traces into the modules named in `through` (but torch.nn's own) and those above a
    site; every other module, and each site, stays one call (a site of a Conv2d subclass that
    pads itself, timm's Conv2dSame, is one node however its forward is written). Both sets
    default to empty as torch.fx makes one with no arguments to load a saved graph module."""

    def __init__(self, site_names: Collection[str] = (), through: Collection[str] = ()) -> None:
        super().__init__()
        self.site_names = set(site_names)
        self.through = set(through)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.site_names:
            return True
        if module_qualified_name in self.through and not super().is_leaf_module(
            m, module_qualified_name
        ):  # torch.nn's own modules (an LSTM returns a tuple) stay one call
            return False
        prefix = module_qualified_name + "."
        return not any(name.startswith(prefix) for name in self.site_names)


def trace_site_graphs(
    model: nn.Module,
    site_names: list[str],
    example: torch.Tensor,
    callers: Collection[str] = (),
) -> SiteGraphs:
    """Trace `model`, or where its graph is not sound, the largest modules holding the sites
    named, or the `callers` (modules to trace into: their forwards call pooling functions),
    that trace soundly; install their graphs in the model."""
    if not site_names and not callers:
        return SiteGraphs(model, {}, {})
    holders = {prefix for name in site_names for prefix in _ancestors(name)}
    # a caller, and the modules above it, are traced into (else a block that holds a caller
    # and no site would stay one call, its pooling call unseen)
    reach_callers = {prefix for name in callers for prefix in [*_ancestors(name), name]}
    holders |= reach_callers
    calls, not_tensors = _record_module_calls(model, example, holders)
    through = not_tensors | reach_callers
    graphs: dict[str, fx.GraphModule] = {}
    untraced: dict[str, str] = {}
    fallback: dict[str, str] = {}  # graphs that hold their callers as one call each, and why
    pending = [""]
    while pending:
        prefix = pending.pop(0)
        module = model.get_submodule(prefix)
        sites_inside, call = _inside(site_names, prefix), calls.get(prefix)
        graph, reason = _sound_graph(module, sites_inside, _inside(through, prefix), call)
        if graph is None and _inside(callers, prefix):  # a caller torch.fx cannot trace: one call
            graph, _ = _sound_graph(module, sites_inside, _inside(not_tensors, prefix), call)
            if graph is not None:
                fallback[prefix] = reason
        if graph is not None:
            graphs[prefix] = graph
            continue
        untraced[prefix] = reason
        pending += [
            child for child in (_join(prefix, n) for n, _ in module.named_children())
            if child in holders
        ]  # fmt: skip
    root = graphs.get("", model)
    for prefix, graph in graphs.items():
        if prefix:
            set_submodule(root, prefix, graph)
    left = _callers_left(callers, graphs, fallback, untraced)
    return SiteGraphs(root, graphs, untraced, left)


def _callers_left(
    callers: Collection[str],
    graphs: dict[str, fx.GraphModule],
    fallback: dict[str, str],
    untraced: dict[str, str],
) -> dict[str, str]:
    """The callers no graph traced into (their pooling calls stay as written), and why."""
    left = {}
    for name in callers:
        owner = max((p for p in graphs if p == name or _within(name, p)), key=len, default=None)
        if owner == name or (owner is not None and owner not in fallback):
            continue
        left[name] = fallback[owner] if owner is not None else untraced.get(name, "no graph")
    return left


def _sound_graph(
    module: nn.Module, site_names: set[str], through: set[str], call: Call | None
) -> tuple[fx.GraphModule | None, str]:
    """`module`'s graph by :class:`SiteTracer` when it computes the module's output on its
    call and does not depend on the mode; else None and why not."""
    if call is None:
        return None, "the example batch does not call it"
    try:
        graph = _trace_in_mode(module, site_names, through, training=False)
        graph.training = module.training  # the flag alone: its modules keep theirs
        if not _computes(graph, call):
            return None, "its graph does not compute its output on the example batch"
        if not _read_mode_at_run_time(
            graph, _trace_in_mode(module, site_names, through, training=True)
        ):
            return None, "its forward branches on the training mode, which a graph would freeze"
    except Exception as error:  # user code may raise anything while being traced or run
        return None, f"{type(error).__name__}: {error}"
    return graph, ""


class TrainingMode(nn.Module):
    """Whether it is in training mode: a graph passes this where its module passed
    ``self.training`` (``F.dropout(x, training=self.training)``), which tracing would freeze."""

    def forward(self) -> bool:
        return self.training


def _read_mode_at_run_time(graph: fx.GraphModule, training_graph: fx.GraphModule) -> bool:
    """Whether `graph` (traced in eval mode) and `training_graph` run the same operations on
    the same arguments but the mode (False in `graph`, True in `training_graph`); if so,
    `graph` now reads the mode from a :class:`TrainingMode` at run time."""
    nodes, training_nodes = list(graph.graph.nodes), list(training_graph.graph.nodes)
    if len(nodes) != len(training_nodes):
        return False
    edits: list[tuple[fx.Node, list[Any], Any, list[int]]] = []
    for node, training_node in zip(nodes, training_nodes, strict=True):
        if (node.op, node.target, node.name) != (
            training_node.op, training_node.target, training_node.name,
        ):  # fmt: skip
            return False
        leaves, spec = tree_flatten((node.args, node.kwargs))
        training_leaves, training_spec = tree_flatten((training_node.args, training_node.kwargs))
        if spec != training_spec:
            return False
        modes = []  # the indices of the arguments that are the mode
        for index, (value, training_value) in enumerate(zip(leaves, training_leaves, strict=True)):
            if value is False and training_value is True:
                modes.append(index)
            elif not _same_argument(value, training_value):
                return False
        if modes:
            edits.append((node, leaves, spec, modes))
    if edits:
        _pass_mode(graph, edits)
    return True


def _same_argument(value: Any, other: Any) -> bool:
    if isinstance(value, fx.Node) or isinstance(other, fx.Node):
        return (
            isinstance(value, fx.Node) and isinstance(other, fx.Node) and value.name == other.name
        )
    if isinstance(value, torch.Tensor) or isinstance(other, torch.Tensor):
        return type(value) is type(other) and torch.equal(value, other)
    return type(value) is type(other) and value == other


def _pass_mode(
    graph: fx.GraphModule, edits: list[tuple[fx.Node, list[Any], Any, list[int]]]
) -> None:
    name = free_name(graph, "training_mode")
    graph.add_submodule(name, TrainingMode().train(graph.training))
    first_operation = next(n for n in graph.graph.nodes if n.op != "placeholder")
    with graph.graph.inserting_before(first_operation):
        mode = graph.graph.call_module(name)
    for node, leaves, spec, modes in edits:
        for index in modes:
            leaves[index] = mode
        node.args, node.kwargs = tree_unflatten(leaves, spec)
    graph.recompile()


def _trace_in_mode(
    module: nn.Module, site_names: set[str], through: set[str], *, training: bool
) -> fx.GraphModule:
    with kept_modes(module):
        tracer = SiteTracer(site_names, through)
        graph = tracer.trace(module.train(training))
    for node in graph.nodes:
        if isinstance(node.type, str):
            # an annotation left a string by `from __future__ import annotations`: the code
            # the graph generates would name an unknown type, which TorchScript rejects
            node.type = None
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def _computes(graph: fx.GraphModule, call: Call) -> bool:
    """Whether `graph` gives the recorded output on the recorded arguments (eval mode), in
    the same order if not in the same container (a graph returns a dict for an OrderedDict)."""
    args, kwargs, expected = _cloned(call)
    with evaluating(graph):
        got = tree_flatten(graph(*args, **kwargs))[0]
    expected = tree_flatten(expected)[0]
    return len(got) == len(expected) and all(
        torch.allclose(g, e, equal_nan=True) if isinstance(e, torch.Tensor) else g == e
        for g, e in zip(got, expected, strict=True)
    )


def _record_module_calls(
    model: nn.Module, example: torch.Tensor, names: set[str]
) -> tuple[dict[str, Call], set[str]]:
    """On the example batch (eval mode): the first call of each named module, copied, so that
    in-place operations later in the model do not change what was recorded; and the names of
    the modules whose first output is not a tensor."""
    calls: dict[str, Call] = {}
    inputs: dict[str, tuple[tuple, dict[str, Any]]] = {}
    outputs: dict[str, bool] = {}  # whether the first output is a tensor

    def before(name: str):
        def record(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            if name in names:
                inputs.setdefault(name, _cloned((args, kwargs)))

        return record

    def after(name: str):
        def record(_module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if name in names and name not in calls:
                calls[name] = (*inputs[name], _cloned(output))
            outputs.setdefault(name, isinstance(output, torch.Tensor))

        return record

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule):  # takes no hooks, and stays one call
            continue
        handles.append(module.register_forward_pre_hook(before(name), with_kwargs=True))
        handles.append(module.register_forward_hook(after(name), with_kwargs=True))
    try:
        with evaluating(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return calls, {name for name, tensor in outputs.items() if not tensor and name}


def _cloned(tree: Any) -> Any:
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, tree)


def _inside(names: Collection[str], prefix: str) -> set[str]:
    """The names within module `prefix`, relative to it."""
    return {name[len(prefix) + 1 :] if prefix else name for name in names if _within(name, prefix)}


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` in `root` under the qualified `name`, in place of what is there."""
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent), leaf, module)


def free_name(root: nn.Module, name: str) -> str:
    """`name`, or `name` with the first number from 2 on that no submodule of `root` has."""
    candidate, index = name, 1
    while _has_submodule(root, candidate):
        index += 1
        candidate = f"{name}{index}"
    return candidate


def _has_submodule(root: nn.Module, name: str) -> bool:
    try:
        root.get_submodule(name)
    except AttributeError:
        return False
    return True


def _ancestors(name: str) -> list[str]:
    """The qualified names of the modules above `name`, the model ("") first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts))]


def _within(name: str, prefix: str) -> bool:
    return not prefix or name.startswith(prefix + ".")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
