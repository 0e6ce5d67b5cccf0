"""Structural similarity (Wang et al. 2004) as a per-pixel map, differentiable, in torch.

Used both as a training term and as an anomaly map: SSIM compares local means, contrasts and
structure, so it flags texture and edge changes that a squared error of similar magnitude hides
(the SSIM-autoencoder of Bergmann et al., one of MMAE's baselines)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

C1, C2 = 0.01 ** 2, 0.03 ** 2  # the usual constants for data in [0, 1]


def _gauss_kernel(window: int, sigma: float, channels: int, device, dtype) -> Tensor:
    ax = torch.arange(window, device=device, dtype=dtype) - (window - 1) / 2
    g = torch.exp(-(ax ** 2) / (2 * sigma ** 2))
    k = torch.outer(g, g)
    return (k / k.sum()).expand(channels, 1, window, window).contiguous()


def ssim_map(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """(B, C, H, W) pair in [0, 1] -> (B, H, W) SSIM, mean over channels (1 = identical)."""
    c = x.shape[1]
    k = _gauss_kernel(window, sigma, c, x.device, x.dtype)
    pad = window // 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.pad(t, [pad] * 4, mode="reflect"), k, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2))
    return s.mean(dim=1)
