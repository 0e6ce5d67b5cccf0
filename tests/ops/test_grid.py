"""Feature grids resized from where their cells are (inspect_ad/ops/grid.py)."""
import torch
import torch.nn.functional as F

from inspect_ad.ops.grid import resize_grid


def test_a_cell_lands_on_the_pixel_its_convolutions_centre_it_on():
    grid = torch.zeros(1, 1, 16, 16)
    grid[0, 0, 5, 9] = 1.0
    up = resize_grid(grid, (128, 128), 8)[0, 0]
    assert divmod(int(up.argmax()), 128) == (40, 72) and up[40, 72] == 1.0   # cell i at pixel 8·i
    # align_corners=False puts it (8 − 1) / 2 = 3.5 pixels down and right
    old = F.interpolate(grid, size=(128, 128), mode="bilinear", align_corners=False)[0, 0]
    assert old[43:45, 75:77].min() == old.max() > old[40, 72]


def test_the_last_cell_is_held_past_its_centre_and_odd_sizes_fit():
    grid = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 3, 4)
    up = resize_grid(grid, (21, 30), 8)   # 3 × 4 cells of stride 8: centres at 0, 8, 16(, 24)
    assert up.shape == (1, 1, 21, 30)
    assert torch.equal(up[0, 0, 0, 24:], torch.full((6,), 3.0)) and up[0, 0, 0, 4] == 0.5
