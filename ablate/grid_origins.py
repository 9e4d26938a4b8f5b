"""Which tensor a feature map's pixel grid comes from, found by running the model once.

A map computed from one map of its own height and width, by a stride-1 conv, a norm or an
activation, lies on that map's grid; following such steps back ends at the map the grid
starts from: the model's input, a subsampled map, or a sum or concatenation of several maps.
Sites whose inputs start from one map subsample one grid: a residual block's strided conv and
its shortcut, also where the conv comes after a 1×1 conv (a bottleneck), so under polyphase
sampling they must keep one component, and `sites=N` takes or leaves them together.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


class GridOrigins(TorchFunctionMode):
    """While active, records for each 4-D tensor an operation returns the one 4-D input of the
    same height and width it was computed from (parameters aside), where there is exactly one.
    An in-place operation that merges another map into its input (``out += identity``) makes
    that input a map of its own."""

    def __init__(self) -> None:
        super().__init__()
        self._parents: dict[int, torch.Tensor] = {}
        self._kept: list[torch.Tensor] = []  # alive, so that no two tensors share an id

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            same_grid = [
                t
                for t in tree_flatten((args, kwargs))[0]
                if isinstance(t, torch.Tensor)
                and not isinstance(t, nn.Parameter)
                and t.dim() == 4
                and t.shape[-2:] == out.shape[-2:]
            ]
            if len(same_grid) == 1 and same_grid[0] is not out:  # one map in, a new one out
                self._parents[id(out)] = same_grid[0]
                self._kept += [out, same_grid[0]]
            elif len(same_grid) > 1:  # maps merged, in place too: a grid of its own
                self._parents.pop(id(out), None)
        return out

    def origin(self, tensor: torch.Tensor) -> torch.Tensor:
        """The map whose grid `tensor` lies on (`tensor` itself if it starts one)."""
        while id(tensor) in self._parents:
            tensor = self._parents[id(tensor)]
        return tensor
