"""From reconstructions to pixel anomaly maps and image scores.

map  = per-pixel squared error (``metric="l2"``, the papers'), 1 − SSIM (``"ssim"``) or
       1 − multi-scale gradient magnitude similarity (``"gms"``, RIAD's map), mean
       over channels, optionally Gaussian-smoothed (σ in pixels of
       the model's input) — smoothing suppresses single-pixel reconstruction noise, which
       otherwise dominates both the map and a max-pooled score;
score = a pooling of the smoothed map at model resolution: ``max`` (default: one defect, however
       small, fails the part) or ``mean`` (whole-image deviation).
``scales`` (default (1,); not in the papers) averages the squared error of the images
       average-pooled by each factor, upsampled back: at factor s the error compares s×s local
       means, so a region whose mean grey level is off (a hole, a stain) counts and texture the
       reconstruction cannot copy pixel by pixel counts less;
``standardize`` (``"off"`` by default; not in the papers) turns each map value into a z-score
       against the same pixel's values on defect-free training images, (map − μ) / σ, so places
       that are hard to reconstruct on every good part (borders, streaks) stop dominating the max.
       ``"map"``: maps and scores are z-scores. ``"score"``: only the image score is (the max of
       the z-map); the heatmap stays the error itself. On MTD z-scores lift image AUROC but lower
       AUPRO (recipes/results/mtd.md), so ``"score"`` keeps the better of each.
Maps are resized back to each input's own size for display and pixel metrics.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inspect_ad.checks import Ints, Number, Options, validate
from inspect_ad.errors import ConfigError, InspectError
from inspect_ad.ops.gms import msgms_map
from inspect_ad.ops.grid import resize_grid
from inspect_ad.models.outputs import FeatureOutput, ReconstructionOutput
from inspect_ad.ops.ssim import ssim_map

POOLINGS = ("max", "mean")
METRICS = ("l2", "ssim", "gms")
STANDARDIZE = ("off", "map", "score")


@dataclass(frozen=True)
class MapConfig:
    """How a model's output becomes a pixel anomaly map and an image score (see the module docstring).

    Parameters
    ----------
    sigma : float, default 4.0
        Gaussian smoothing of the map, in pixels of the model's input; 0: none. In [0, 1000].
    pooling : {"max", "mean"}, default "max"
        How the smoothed map becomes the image score: its maximum (one defect, however small,
        fails the part) or its mean (whole-image deviation).
    metric : {"l2", "ssim", "gms"}, default "l2"
        What a reconstruction is compared with its input by: squared error, 1 − SSIM or
        1 − multi-scale gradient magnitude similarity. Feature models give their own map.
    standardize : {"off", "map", "score"}, default "off"
        Z-scores against reference maps of defect-free images: for the map and the score, for
        the score only, or not at all.
    scales : tuple of int, default (1,)
        Average-pooling factors whose squared errors are averaged ("l2" only).
    """

    sigma: float = 4.0
    pooling: str = "max"
    metric: str = "l2"
    standardize: str = "off"
    scales: tuple[int, ...] = (1,)

    _constraints: ClassVar[dict] = {
        "sigma": Number(0, 1000), "pooling": Options(*POOLINGS), "metric": Options(*METRICS),
        "standardize": Options(*STANDARDIZE), "scales": Ints(1)}

    def __post_init__(self):
        if isinstance(self.standardize, bool):      # bundles before "score" existed saved a bool
            object.__setattr__(self, "standardize", "map" if self.standardize else "off")
        validate(self)
        object.__setattr__(self, "scales", tuple(int(v) for v in self.scales))   # JSON gives a list
        if self.metric != "l2" and self.scales != (1,):
            raise ConfigError("--map-scales applies to the l2 map metric only (gms is multi-scale by "
                              "definition); drop --map-scales or use --map-metric l2")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def standardized(self) -> bool:
        """Whether scoring needs reference maps."""
        return self.standardize != "off"

    def raw_settings(self) -> tuple:
        """What the unstandardized map depends on: reference maps are stale once this changes."""
        return self.metric, self.sigma, self.scales


def parse_scales(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), for command lines."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InspectError(f"map scales {text!r} are not a comma-separated list of whole numbers "
                           "(e.g. 1,2,4)") from None


def squared_error(x: Tensor, recon: Tensor) -> Tensor:
    """(B, C, H, W) pair -> (B, H, W)."""
    return (x - recon).pow(2).mean(dim=1)


def multiscale_squared_error(x: Tensor, recon: Tensor, scales: tuple[int, ...]) -> Tensor:
    """Mean over factors s of the squared error of s×s average-pooled images, upsampled to (B, H, W)."""
    maps = []
    for s in scales:
        if s == 1:
            maps.append(squared_error(x, recon))
            continue
        err = squared_error(F.avg_pool2d(x, s, ceil_mode=True), F.avg_pool2d(recon, s, ceil_mode=True))
        up = F.interpolate(err.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)
        maps.append(up.squeeze(1))
    return torch.stack(maps).mean(dim=0)


def raw_map(x: Tensor, recon: Tensor, cfg: MapConfig) -> Tensor:
    """The unsmoothed (B, H, W) map of ``cfg.metric``; larger = more anomalous."""
    if cfg.metric == "l2":
        return multiscale_squared_error(x, recon, cfg.scales)
    return 1 - (ssim_map(recon, x) if cfg.metric == "ssim" else msgms_map(recon, x))


def gaussian_kernel_size(sigma: float, height: int, width: int) -> int:
    """±3σ, odd; on a map narrower than that, the widest odd size below its side (reflect
    padding needs the map to be wider than half the kernel)."""
    k = 2 * math.ceil(3 * sigma) + 1
    return min(k, 2 * (min(height, width) // 2) - 1) if min(height, width) < k else k


@functools.lru_cache(maxsize=8)   # 2 × 4 MiB at 1024²
def blur_matrix(n: int, k: int, sigma: float) -> Tensor:
    """(n, n) matrix B with B @ v = v convolved with the normalised k-tap Gaussian, the border
    reflected (torchvision's ``gaussian_blur``: same taps, same padding)."""
    half = (k - 1) * 0.5
    taps = torch.exp(-0.5 * (torch.linspace(-half, half, k) / sigma).pow(2))
    taps = taps / taps.sum()
    src = (torch.arange(n).view(-1, 1) + torch.arange(k).view(1, -1) - k // 2).abs()
    src = torch.where(src > n - 1, 2 * (n - 1) - src, src)
    return torch.zeros(n, n).scatter_add_(1, src, taps.expand(n, k).contiguous())


def smooth(maps: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (B, H, W) maps as two matrix products, B_H · M · B_Wᵀ: on the 2-core CPU
    4-6× faster than torchvision's 2-D convolution at 256² and still 1.5-2.5× at 512²-2048²,
    nearer a float64 blur than it (within 5e-6 of the map's range against its 4e-5), and a
    constant in an exported graph."""
    if sigma <= 0:
        return maps
    h, w = maps.shape[-2:]
    k = gaussian_kernel_size(sigma, h, w)
    rows, cols = blur_matrix(h, k, float(sigma)), blur_matrix(w, k, float(sigma))
    return rows.to(maps) @ maps @ cols.to(maps).t()


def smooth_image_map(m: np.ndarray, sigma: float) -> np.ndarray:
    """:func:`smooth` of one (H, W) map of a photo's size (a stitched one), by OpenCV's separable
    blur: the same taps and reflected border, without (H, H) and (W, W) matrices at 4000×3000."""
    if sigma <= 0:
        return m
    k = gaussian_kernel_size(sigma, *m.shape)
    return cv2.GaussianBlur(m, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)


def pool(maps: Tensor, pooling: str) -> Tensor:
    flat = maps.flatten(1)
    return flat.amax(dim=1) if pooling == "max" else flat.mean(dim=1)


def anomaly_maps(x: Tensor, recon: Tensor, cfg: MapConfig,
                 reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(maps at model resolution, image scores) of a reconstruction; ``reference`` is the
    (2, H, W) mean and std from :func:`reference_maps`, required when ``cfg.standardized``."""
    return finish_maps(raw_map(x, recon, cfg), cfg, reference)


def model_maps(x: Tensor, out: ReconstructionOutput | FeatureOutput, cfg: MapConfig,
               reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """:func:`anomaly_maps` from a model's output: a reconstruction is compared with ``x`` by
    ``cfg.metric``; a feature model's own map is resized (bilinear) to the input, from where its
    cells are (:func:`~inspect_ad.ops.grid.resize_grid`) when the model says."""
    if isinstance(out, FeatureOutput):
        grid = out.anomaly_map.unsqueeze(1)
        raw = (resize_grid(grid, x.shape[-2:], out.stride) if out.stride else
               F.interpolate(grid, size=x.shape[-2:], mode="bilinear", align_corners=False)).squeeze(1)
        return finish_maps(raw, cfg, reference)
    return anomaly_maps(x, out.reconstruction, cfg, reference)


def finish_maps(raw: Tensor, cfg: MapConfig, reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Smooth a (B, H, W) raw map, standardize it if asked, and pool it into image scores."""
    maps = smooth(raw, cfg.sigma)
    if not cfg.standardized:
        return maps, pool(maps, cfg.pooling)
    if reference is None or reference.shape[-2:] != maps.shape[-2:]:
        raise ValueError("standardized maps need reference maps of the model's resolution")
    z = (maps - reference[0]) / reference[1]
    return (z if cfg.standardize == "map" else maps), pool(z, cfg.pooling)


def reference_maps(maps: Tensor, floor: float = 0.1) -> Tensor:
    """Per-pixel mean and std of (N, H, W) defect-free maps, stacked to (2, H, W). The std is
    floored at ``floor`` × its mean so that pixels that never vary do not turn noise into
    huge z-scores."""
    if len(maps) < 2:
        raise ValueError("reference maps need at least 2 defect-free images")
    mean, std = maps.mean(dim=0), maps.std(dim=0)
    return torch.stack([mean, std.clamp_min(floor * float(std.mean()) + 1e-12)])
