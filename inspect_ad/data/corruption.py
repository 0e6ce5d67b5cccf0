"""Synthetic defects pasted onto training images, for training a model to *repair* them.

Not in the memory papers: the reconstructive half of DRAEM (Zavrtanik et al., ICCV 2021) and
RIAD train on corrupted inputs against clean targets. A plain autoencoder learns to copy
whatever it sees, so a real defect comes back in its reconstruction and leaves no error; one
taught to remove smooth random blobs of foreign texture or shade returns the defect-free
surface instead, and the difference shows where the defect was. Defect-free images are all that
is needed: blobs are thresholded smooth noise (a cheap stand-in for DRAEM's Perlin masks), filled
with a shifted copy of another image in the batch or with a flat grey level.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

AREA = (0.005, 0.05)     # blob area as a fraction of the image (MVTec-sized defects)
OPACITY = (0.3, 1.0)     # blend factor β of the pasted fill (DRAEM draws β from [0.1, 1])
NOISE_GRID = 8           # side of the noise grid that is upsampled into the blob field


@dataclass
class SyntheticDefects:
    """``prob``: fraction of training images that get a defect (the rest stay clean, so the
    model still learns to copy a good image)."""

    prob: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"synthetic defect probability must be in [0, 1], got {self.prob}")
        # One stream per fit: deterministic for a seed; a resumed fit draws different defects.
        self._gen = torch.Generator().manual_seed(self.seed)

    def _uniform(self, n: int, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(n, generator=self._gen)

    def masks(self, n: int, size: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
        """(n, 1, H, W) binary masks of smooth random blobs, each covering an area drawn from AREA.
        The draws come from the CPU generator (reproducible anywhere); the upsampling and the sort
        run on ``device``, where on a GPU they cost a fraction of the CPU's ~80 ms per 16×256²."""
        noise = torch.rand(n, 1, NOISE_GRID, NOISE_GRID, generator=self._gen).to(device)
        field = F.interpolate(noise, size=size, mode="bicubic", align_corners=False).flatten(1)
        area = self._uniform(n, *AREA).to(device)
        k = (field.shape[1] * (1 - area)).long().clamp(1, field.shape[1] - 1)
        cut = field.sort(dim=1).values.gather(1, k[:, None])
        return (field > cut).float().view(n, 1, *size)

    def __call__(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> a corrupted copy (the input is not changed)."""
        b, dev = x.shape[0], x.device
        hit = (torch.rand(b, generator=self._gen) < self.prob).float()
        mask = self.masks(b, x.shape[-2:], dev) * (hit * self._uniform(b, *OPACITY)).to(dev).view(b, 1, 1, 1)
        shift = [int(v) for v in torch.randint(1, max(2, min(x.shape[-2:])), (2,), generator=self._gen)]
        other = torch.roll(x.roll(1, dims=0), shifts=shift, dims=(-2, -1))  # another image, moved
        flat = torch.rand(b, 1, 1, 1, generator=self._gen)
        use_flat = torch.rand(b, 1, 1, 1, generator=self._gen) < 0.5
        fill = torch.where(use_flat.to(dev), flat.to(dev, x.dtype), other)
        mask = mask.to(x.dtype)
        return x * (1 - mask) + fill * mask
