"""``mmae_patchcore``: feature MMAE's residual plus PatchCore's nearest-slot distance, each
standardised on the training images, as one map.

Not a model of either paper: a late fusion of two of ours on one frozen backbone. The feature
MMAE (:mod:`inspect_ad.models.feature_mmae`) is trained exactly as ``--model mmae --backbone ...``
is (cached targets, the same objective, the same training loop); then one pass over the training
images fills a PatchCore bank (:func:`~inspect_ad.models.patchcore.fill_bank`, the same
:class:`~inspect_ad.memory.CoresetMemory` and the same patch features as ``--model patchcore``),
and a last pass measures each map's centre and scale on the training images, so that

    map = w₁ · (mmae_map − μ₁) / s₁ + w₂ · (patchcore_map − μ₂) / s₂

The two maps come on the same grid (the finest stage's, stride 8 for lite0 stages 2, 3) and in
units with nothing in common (a cosine distance, a Euclidean one): the standardisation makes one
unit of each "one spread of the good images' values" before they are added.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from inspect_ad.checks import Int, Number, Options
from inspect_ad.errors import InspectError
from inspect_ad.memory import CoresetMemory
from inspect_ad.models.feature_mmae import FeatureMMAE, FeatureMMAEConfig
from inspect_ad.models.outputs import FeatureOutput
from inspect_ad.models.patchcore import PatchCoreConfig, fill_bank, nearest_distance, patch_features
from inspect_ad.models.protocols import MemoryBankModel

NORMALISATIONS = ("std", "quantile")


@dataclass
class MMAEPatchCoreConfig(FeatureMMAEConfig):
    """The feature MMAE's fields (:class:`FeatureMMAEConfig`), PatchCore's bank fields
    (:class:`PatchCoreConfig`, same defaults and reasons), and the fusion's:

    * ``normalisation``: each map's centre is its mean over the training images' cells; its
      scale the standard deviation ("std") or the 99th percentile minus the mean ("quantile":
      the upper tail, where the decisions are). Measured in recipes/results/mmae.md, "Fused model".
    * ``mmae_weight`` / ``patchcore_weight``: w₁, w₂ of the standardised maps (equal by default;
      measured ibid.).
    * ``stats_images``: the training images the statistics are measured on, spread evenly over
      the training set (as the reference maps' 256: enough for a mean over ~260k cells).
    * ``mmae_centre`` ... ``patchcore_scale`` and ``bank_slots``: fitted state, set by
      :meth:`MMAEPatchCore.fit_memory` and saved in the bundle's config.
    * ``bank_pad_input``: the bank's patch features are PatchCore's own, its ``pad_input`` (and
      ``align_grid``) on as ``--model patchcore`` fits today, on the MMAE's backbone stages; the
      MMAE's targets stay unpadded, as the feature MMAE trains.
    """

    bank_pad_input: bool = True
    coreset_ratio: float = PatchCoreConfig.coreset_ratio        # PatchCore §4.2: 1% coreset
    max_slots: int = PatchCoreConfig.max_slots
    max_candidates: int = PatchCoreConfig.max_candidates
    num_neighbours: int = PatchCoreConfig.num_neighbours        # PatchCore §3.3: the nearest patch
    normalisation: str = "std"
    mmae_weight: float = 1.0
    patchcore_weight: float = 1.0
    stats_images: int = 256
    bank_slots: int = 1                 # fitted: the bank's size
    mmae_centre: float = 0.0            # fitted: μ₁
    mmae_scale: float = 1.0             # fitted: s₁
    patchcore_centre: float = 0.0       # fitted: μ₂
    patchcore_scale: float = 1.0        # fitted: s₂

    _constraints: ClassVar[dict] = {
        **FeatureMMAEConfig._constraints,
        **{k: PatchCoreConfig._constraints[k] for k in ("coreset_ratio", "max_slots", "max_candidates", "bank_slots")},
        "normalisation": Options(*NORMALISATIONS), "mmae_weight": Number(0), "patchcore_weight": Number(0),
        "stats_images": Int(1), "mmae_scale": Number(0, open_low=True), "patchcore_scale": Number(0, open_low=True),
        "mmae_centre": Number(-math.inf), "patchcore_centre": Number(-math.inf)}

    def __post_init__(self):
        super().__post_init__()
        # PatchCore's own check of the k nearest against the bank's bound
        PatchCoreConfig(backbone=self.backbone, stages=self.stages, max_slots=self.max_slots,
                        num_neighbours=self.num_neighbours)


def map_statistics(maps: Tensor, normalisation: str) -> tuple[float, float]:
    """(centre, scale) of the training images' map cells; the scale is never 0 (a constant map)."""
    flat = maps.flatten().double()
    centre = float(flat.mean())
    spread = flat.std() if normalisation == "std" else torch.quantile(flat.float(), 0.99).double() - centre
    return centre, max(float(spread), 1e-12)


class MMAEPatchCore(FeatureMMAE, MemoryBankModel):
    """The feature MMAE with a PatchCore bank on its backbone; :meth:`forward` gives the fused map
    (see the module docstring). Trained as the feature MMAE (the detector's training loop calls
    :meth:`reconstruct`), then :meth:`fit_memory` fills the bank and measures the statistics."""

    def __init__(self, config: MMAEPatchCoreConfig):
        super().__init__(config)
        self.bank = CoresetMemory(config.bank_slots, sum(self.backbone.channels), config.num_neighbours)

    def patch_features(self, x: Tensor) -> Tensor:
        c = self.config
        return patch_features(self.backbone, x, c.patch_size, c.bank_pad_input, c.align_grid)

    def maps(self, x: Tensor) -> tuple[FeatureOutput, Tensor]:
        """The feature MMAE's output (its map unstandardised) and the bank's distance map, on one grid."""
        out = self.reconstruct(self.targets(x), x.shape[-2:])
        distance = nearest_distance(self.bank, self.patch_features(x))
        if distance.shape[-2:] != out.anomaly_map.shape[-2:]:   # only for a size not a whole number of cells
            distance = F.interpolate(distance.unsqueeze(1), size=out.anomaly_map.shape[-2:], mode="bilinear",
                                     align_corners=False).squeeze(1)
        return out, distance

    def forward(self, x: Tensor) -> FeatureOutput:
        c = self.config
        out, distance = self.maps(x)
        fused = (c.mmae_weight * (out.anomaly_map - c.mmae_centre) / c.mmae_scale
                 + c.patchcore_weight * (distance - c.patchcore_centre) / c.patchcore_scale)
        return replace(out, anomaly_map=fused)

    @torch.no_grad()
    def fit_memory(self, batches: Iterable[Tensor], n_images: int, seed: int = 0, progress: bool = True,
                   sharded: bool = False) -> int:
        """After training: fill the bank from ``batches`` of the training images (as
        :meth:`PatchCore.fit_memory`), then :meth:`fit_statistics` on them; returns the number of slots."""
        c = self.config
        if sharded:
            raise InspectError("mmae_patchcore fits on one process; drop --nproc")
        device = next(self.backbone.buffers()).device
        n = fill_bank(self.bank, (self.patch_features(x.to(device)) for x in batches), n_images, c.coreset_ratio,
                      c.max_slots, c.max_candidates, seed, progress, sharded)
        self.bank.to(device)
        self.config = replace(c, bank_slots=n)
        self.fit_statistics(batches, n_images)
        return n

    @torch.no_grad()
    def fit_statistics(self, batches: Iterable[Tensor], n_images: int) -> None:
        """Each map's centre and scale (``config.normalisation``) over the cells of ``stats_images``
        of the ``n_images`` in ``batches``, spread evenly. They are the bank's own images, so the
        distances are those of patches the bank has seen, a little lower than a new good part's
        (the MMAE's residuals likewise)."""
        c = self.config
        (mc, ms), (pc, ps) = (map_statistics(m, c.normalisation) for m in self.training_maps(batches, n_images))
        self.config = replace(c, mmae_centre=mc, mmae_scale=ms, patchcore_centre=pc, patchcore_scale=ps)

    @torch.no_grad()
    def training_maps(self, batches: Iterable[Tensor], n_images: int) -> tuple[Tensor, Tensor]:
        """The unstandardised residual and distance maps of ``stats_images`` of the ``n_images`` in
        ``batches``, spread evenly (every k-th image, as the reference maps' are)."""
        device = next(self.backbone.buffers()).device
        was_training = self.training
        self.eval()
        every = max(1, math.ceil(n_images / self.config.stats_images))
        residuals, distances, start = [], [], 0
        for x in batches:
            x, start = x[(-start) % every::every], start + len(x)
            if len(x):
                out, distance = self.maps(x.to(device))
                residuals.append(out.anomaly_map.cpu())
                distances.append(distance.cpu())
        self.train(was_training)
        return torch.cat(residuals), torch.cat(distances)
