"""Which tensor a feature map's pixel grid comes from, found by running the model once.

A map computed from maps of its own height and width that all lie on one grid (a stride-1
conv of one map, a norm, an activation, a gate, a residual sum or a concatenation of maps of
that grid) lies on that grid too; every other map starts a grid of its own: the model's input,
a subsampled map, a sum of maps from different grids. Sites whose inputs lie on one grid
subsample it together: a residual block's strided conv and its shortcut, also where the conv
comes after a 1×1 conv (a bottleneck), so under polyphase sampling they must keep one
component, and `sites=N` takes or leaves them together.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


class GridOrigins(TorchFunctionMode):
    """While active, records for each map (a tensor of 4 or more dimensions, the last two H and
    W) an operation returns the map its grid starts from. Only the maps that start a grid are
    kept alive; a record holds its map weakly, so a tensor that takes a freed map's id (made
    where the mode does not see, by a scripted module) does not take its record."""

    def __init__(self) -> None:
        super().__init__()
        # by id: the map (weakly, to tell it from a later tensor with its freed id) and origin
        self._origins: dict[int, tuple[weakref.ref, torch.Tensor]] = {}

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        # an in-place operation's map is read before the call changes what it holds
        inputs = [t for t in tree_flatten((args, kwargs))[0] if _is_map(t)]
        before = {id(t): self.origin(t) for t in inputs}
        result = func(*args, **kwargs)
        for out in (t for t in tree_flatten(result)[0] if _is_map(t)):
            same_size = [before[id(t)] for t in inputs if t.shape[-2:] == out.shape[-2:]]
            grids = {id(origin): origin for origin in same_size}
            if len(grids) == 1 and next(iter(grids.values())) is not out:
                self._origins[id(out)] = (weakref.ref(out), next(iter(grids.values())))
            else:  # no map of its size, or maps from several grids: a grid of its own
                self._origins.pop(id(out), None)
        return result

    def origin(self, tensor: torch.Tensor) -> torch.Tensor:
        """The map whose grid `tensor` lies on (`tensor` itself if it starts one, or if no
        operation the mode saw made it)."""
        mapped, origin = self._origins.get(id(tensor), (None, tensor))
        return origin if mapped is not None and mapped() is tensor else tensor


def _is_map(value: object) -> bool:
    return (
        isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and value.dim() >= 4
    )
