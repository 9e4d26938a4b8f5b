"""Whether a call is being scripted, traced, exported, compiled or transformed: what decides
between PyTorch's own ops and the custom ones (with their kernels and hand-written autograd).

A graph (scripted, traced, exported) may record only plain aten ops; ``torch.compile`` traces
the custom ops through their fake implementations; ``torch.func`` transforms and forward-mode
AD support PyTorch's own ops alone. The functions that TorchScript reaches are marked
``torch.jit.unused`` so that a scripted module compiles around them.
"""

import contextlib

import torch
import torch.autograd.forward_ad as fwAD
import torch.fx.experimental._config as shapes_config
from torch.utils._python_dispatch import _get_current_dispatch_mode


def building_graph() -> bool:
    """True while scripting, tracing or exporting, when only plain aten ops may be recorded."""
    return torch.jit.is_scripting() or tracing_or_exporting()


@torch.jit.unused
def tracing_or_exporting() -> bool:
    """Whether ``torch.jit.trace`` or ``torch.export`` is recording the call."""
    return torch.jit.is_tracing() or exporting()


@torch.jit.unused
def exporting() -> bool:
    """Whether torch.export is recording the call, with sizes that may be symbolic. Read from
    the flag torch.export sets, which ``torch.compiler.is_exporting()`` returns: Dynamo in
    torch 2.11 folds that call to True under ``torch.compile`` too, which sent compiled
    modules to the reference ops and broke ``fullgraph=True``; the flag it reads as it is."""
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    return torch.compiler.is_exporting() if flag is None else flag


@torch.jit.unused
def general_sizes_while_exporting() -> contextlib.AbstractContextManager:
    """Where ``torch.export`` records ops on sizes derived from the map's (an output's
    ``ceil(H / stride)``, a max map's ``H - max_kernel + 1``) as for sizes of 2 and more.
    PyTorch asks of every op's output whether each of its sizes is 1 (for its contiguity), and
    of a derived size that a ``Dim``'s range allows to be 1 the answer is a guard (``!= 1``)
    the exporter cannot prove over the range, so it refused ranges down to the sizes the ops
    take (spec §2: any H, W >= 1). PyTorch's size-oblivious mode answers such questions with
    the general case, which its ops keep correct at 1. Torch before 2.7, without the mode,
    keeps the guards."""
    if not exporting() or not hasattr(shapes_config, "backed_size_oblivious"):
        return contextlib.nullcontext()
    return shapes_config.patch(backed_size_oblivious=True)


@torch.jit.unused
def compiling() -> bool:
    """Whether ``torch.compile`` (Dynamo) is tracing the call."""
    return torch.compiler.is_compiling()


@torch.jit.unused
def backward_in_plain_ops(grad: torch.Tensor) -> bool:
    """Whether a backward must be made of PyTorch's own differentiable ops: it builds a graph
    of the gradient (``create_graph``: a gradient penalty), or its gradient is batched by vmap
    (``is_grads_batched``: a vectorized jacobian or hessian)."""
    return torch.is_grad_enabled() or batched(grad)


@torch.jit.unused
def batched(x: torch.Tensor) -> bool:
    """Whether vmap batches ``x`` (torch.func's, or the one behind ``is_grads_batched``): its
    storage and layout cannot be asked for. Never while compiling, whose tracer cannot call
    these checks (it batches with its own rules)."""
    if compiling():
        return False
    functorch = torch._C._functorch
    return functorch.is_batchedtensor(x) or functorch.is_legacy_batchedtensor(x)


@torch.jit.unused
def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, jacfwd) or forward-mode AD is
    on: PyTorch's own ops support them, hand-written autograd.Functions and kernels do not."""
    return torch._C._functorch.maybe_current_level() is not None or fwAD._current_level >= 0


@torch.jit.unused
def held_by_transforms(*tensors: torch.Tensor) -> bool:
    """Whether forward-mode AD or a ``torch.func`` transform holds one of ``tensors``, which
    only PyTorch's own ops can then take: a dual tensor (one with a tangent), one a transform
    wraps (grad, jvp) or batches (vmap), or one needing a gradient under a transform (which
    refuses hand-written autograd.Functions). A plain tensor in a dual level or under a
    transform (a module's buffer, a constant, an input beside a dual one) has no tangent and
    no batch: an op computes on it as it would outside."""
    if not transforms_active():
        return False
    functorch = torch._C._functorch
    under_func = functorch.maybe_current_level() is not None
    for t in tensors:
        if fwAD._current_level >= 0 and fwAD.unpack_dual(t).tangent is not None:
            return True
        if under_func and (functorch.is_functorch_wrapped_tensor(t)
                           or (torch.is_grad_enabled() and t.requires_grad)):  # fmt: skip
            return True
    return False


@torch.jit.unused
def outside_transforms() -> contextlib.AbstractContextManager:
    """Where ops run as outside ``torch.func``'s transforms, for kernels on tensors they do
    not hold (:func:`held_by_transforms`): under a transform, every op's output is wrapped,
    and a launch cannot reach a wrapped buffer's storage."""
    if torch._C._functorch.maybe_current_level() is None:
        return contextlib.nullcontext()
    return torch._C._DisableFuncTorch()


def traced() -> bool:
    """Whether this call is being traced or captured (``torch.compile``, ``torch.export``,
    ``torch.jit.trace``, ``make_fx``, a fake or other dispatch mode): the custom ops must run
    then, for their graph node and fake implementation; the eager path
    (:func:`kernels.ops.common.eager_autograd`) otherwise."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or _get_current_dispatch_mode() is not None)  # fmt: skip
