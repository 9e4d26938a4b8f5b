"""GridOrigins: which map a feature map's grid starts from."""

import torch
import torch.nn.functional as F
from torch import nn

from ablate.grid_origins import GridOrigins


def test_maps_of_one_grid_keep_it_and_subsampling_or_other_grids_start_one():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1)  # a 3×3 weight on a 3×3 map: not an input map
    x = torch.randn(1, 3, 3, 3)
    with GridOrigins() as origins:
        y = torch.relu_(F.batch_norm(conv(x), None, None, training=True))  # in place: same y
        swish = y * torch.sigmoid(y)  # two maps of one grid
        gated = swish * torch.sigmoid(swish.mean(1, keepdim=True))  # an N×1×H×W gate
        summed = gated + x  # a residual sum
        merged = gated.clone()
        merged += x  # the same, in place
        joined = torch.cat([gated, x], 1)
        first, _second = joined.chunk(2, dim=1)
        shuffled = joined.view(1, 2, 3, 3, 3).transpose(1, 2).reshape(1, 6, 3, 3)
        pooled = F.max_pool2d(gated, 2, ceil_mode=True)
        other = torch.randn(1, 3, 3, 3)
        mixed = gated + other  # maps of two grids
        mixed_in_place = gated.clone()
        mixed_in_place += other
    for kept in (y, swish, gated, summed, merged, joined, first, shuffled):
        assert origins.origin(kept) is x
    for start in (pooled, other, mixed, mixed_in_place):
        assert origins.origin(start) is start


class Down(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::2, ::2].contiguous()


def test_a_tensor_the_mode_did_not_see_does_not_take_a_freed_maps_record():
    """A scripted module's output is made where the mode does not look; it may take the id of
    a map freed just before, whose record must not become its own."""
    down = torch.jit.script(Down())
    x = torch.randn(1, 3, 8, 8)
    with GridOrigins() as origins:
        for _ in range(20):  # freed maps whose ids the next tensors may take
            torch.relu(x)
            subsampled = down(x)
            assert origins.origin(subsampled) is subsampled
