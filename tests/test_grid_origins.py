"""GridOrigins: which map a feature map's grid starts from, through one-input steps only."""

import torch
import torch.nn.functional as F
from torch import nn

from ablate.grid_origins import GridOrigins


def test_one_input_steps_keep_the_grid_and_merges_or_subsampling_start_one():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1)  # a 3×3 weight on a 3×3 map: not an input map
    x = torch.randn(1, 3, 3, 3)
    with GridOrigins() as origins:
        y = torch.relu_(F.batch_norm(conv(x), None, None, training=True))  # in place: same y
        z = y * torch.sigmoid(y.mean((2, 3), keepdim=True))  # a 1×1 gate keeps the grid
        summed = z + x
        merged = z.clone()
        merged += x  # a merge in place
        joined = torch.cat([z, x], 1)
        pooled = F.max_pool2d(z, 2, ceil_mode=True)
    assert origins.origin(y) is x and origins.origin(z) is x
    for start in (summed, merged, joined, pooled):
        assert origins.origin(start) is start
