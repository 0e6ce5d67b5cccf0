"""From reconstructions to pixel anomaly maps and image scores.

map  = per-pixel squared error (``metric="l2"``, the papers') or 1 − SSIM (``"ssim"``), mean
       over channels, optionally Gaussian-smoothed (σ in pixels of
       the model's input) — smoothing suppresses single-pixel reconstruction noise, which
       otherwise dominates both the map and a max-pooled score;
score = a pooling of the smoothed map at model resolution: ``max`` (default: one defect, however
       small, fails the part) or ``mean`` (whole-image deviation).
Maps are resized back to each input's own size for display and pixel metrics.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from .ssim import ssim_map

POOLINGS = ("max", "mean")
METRICS = ("l2", "ssim")


@dataclass(frozen=True)
class MapConfig:
    sigma: float = 4.0
    pooling: str = "max"
    metric: str = "l2"

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of: {', '.join(POOLINGS)}")
        if self.metric not in METRICS:
            raise ValueError(f"unknown map metric {self.metric!r}; choose one of: {', '.join(METRICS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def squared_error(x: Tensor, recon: Tensor) -> Tensor:
    """(B, C, H, W) pair -> (B, H, W)."""
    return (x - recon).pow(2).mean(dim=1)


def smooth(maps: Tensor, sigma: float) -> Tensor:
    if sigma <= 0:
        return maps
    k = 2 * math.ceil(3 * sigma) + 1
    k = min(k, 2 * (min(maps.shape[-2:]) // 2) - 1) if min(maps.shape[-2:]) < k else k
    return gaussian_blur(maps.unsqueeze(1), [k, k], [sigma, sigma]).squeeze(1)


def pool(maps: Tensor, pooling: str) -> Tensor:
    flat = maps.flatten(1)
    return flat.amax(dim=1) if pooling == "max" else flat.mean(dim=1)


def anomaly_maps(x: Tensor, recon: Tensor, cfg: MapConfig) -> tuple[Tensor, Tensor]:
    """(maps at model resolution, image scores)."""
    raw = squared_error(x, recon) if cfg.metric == "l2" else 1 - ssim_map(recon, x)
    maps = smooth(raw, cfg.sigma)
    return maps, pool(maps, cfg.pooling)


def resize_map(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map at model resolution -> the original image's (H, W), bilinear."""
    if m.shape == tuple(shape):
        return m
    return cv2.resize(m.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
