"""Resizing a CNN's feature grid to pixels where its cells really are.

A stride-2 convolution with an odd kernel k and padding k // 2 (every stride-2 layer of the timm
backbones used here) centres output i on input pixel 2i, so a stage of total stride s centres cell
i on pixel s·i. Bilinear resizing with ``align_corners=False`` assumes cell i covers pixels
s·i .. s·i + s − 1 with its centre at s·i + (s − 1)/2: the map it gives is shifted (s − 1)/2
pixels down and right (3.5 px at stride 8), the last cell smeared over the bottom and right
borders. :func:`resize_grid` samples cell y/s at pixel y instead, and holds the last cell's value
over the s − 1 pixels past its centre.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize_grid(x: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """(B, C, h, w) cells centred at stride·i -> (B, C, H, W) pixels (bilinear between centres)."""
    h, w = x.shape[-2:]
    H, W = size
    up = F.interpolate(x, size=((h - 1) * stride + 1, (w - 1) * stride + 1), mode="bilinear", align_corners=True)
    up = F.pad(up, (0, max(0, W - up.shape[-1]), 0, max(0, H - up.shape[-2])), mode="replicate")
    return up[..., :H, :W]
