"""Multi-scale gradient magnitude similarity (MSGMS) as a per-pixel map, differentiable, in torch.

GMS (Xue et al. 2014, "Gradient magnitude similarity deviation") compares the local gradient
magnitudes g of two images, (2·g₁·g₂ + c) / (g₁² + g₂² + c), 1 where they agree. RIAD
(Zavrtanik et al. 2021, a reconstruction method for MVTec AD) averages it over four scales and
uses 1 − MSGMS both as a training term and as the anomaly map: edges a reconstruction misses or
invents (cracks, broken borders) count, while a uniform brightness offset does not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

C = 0.0026            # RIAD's constant for data in [0, 1] (GMSD's 170 on the 0-255 scale, / 255²)
SCALES = (1, 2, 4, 8)  # RIAD: the image and three 2× average-pooled copies


def _prewitt(channels: int, device, dtype) -> Tensor:
    hx = torch.tensor([[1.0, 0.0, -1.0]] * 3, device=device, dtype=dtype) / 3
    return torch.stack([hx, hx.T]).unsqueeze(1).repeat(channels, 1, 1, 1)  # (2C, 1, 3, 3)


def gradient_magnitude(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W) Prewitt gradient magnitude (replicate-padded borders)."""
    c = x.shape[1]
    g = F.conv2d(F.pad(x, [1] * 4, mode="replicate"), _prewitt(c, x.device, x.dtype), groups=c)
    gx, gy = g[:, 0::2], g[:, 1::2]
    return (gx ** 2 + gy ** 2 + 1e-12).sqrt()  # the epsilon keeps the gradient finite on flat areas


def gms_map(x: Tensor, y: Tensor) -> Tensor:
    """(B, C, H, W) pair in [0, 1] -> (B, H, W) GMS, mean over channels (1 = identical edges)."""
    gx, gy = gradient_magnitude(x), gradient_magnitude(y)
    return ((2 * gx * gy + C) / (gx ** 2 + gy ** 2 + C)).mean(dim=1)


def msgms_map(x: Tensor, y: Tensor, scales: tuple[int, ...] = SCALES) -> Tensor:
    """Mean over pooling factors of GMS on s×s average-pooled copies, upsampled to (B, H, W)."""
    maps = []
    for s in scales:
        m = gms_map(F.avg_pool2d(x, s, ceil_mode=True), F.avg_pool2d(y, s, ceil_mode=True))
        if m.shape[-2:] != x.shape[-2:]:
            m = F.interpolate(m.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
        maps.append(m)
    return torch.stack(maps).mean(dim=0)
