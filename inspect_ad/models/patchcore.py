"""``patchcore``: a coreset memory of pretrained patch features read by nearest neighbour.

Roth et al., "Towards Total Recall in Industrial Anomaly Detection" (CVPR 2022), the baseline
that users of anomalib would otherwise pick: frozen ImageNet features of two mid-level stages,
each averaged over a p × p neighbourhood (§3.1, "locally aware patch features"), the deeper one
upsampled to the shallower one's grid and concatenated; a greedy coreset of the training
patches (§3.2) is the memory (:class:`~inspect_ad.memory.CoresetMemory`); a test patch's
anomaly is its distance to the nearest slot (§3.3). There is nothing to train: ``fit_memory``
fills the bank from the defect-free images in one pass.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from inspect_ad.models.backbones import FeatureExtractor
from inspect_ad.memory import CoresetMemory
from inspect_ad.checks import Flag, Int, Ints, Number, Odd, Satisfies, Size, Text, as_size, is_int, require, validate
from inspect_ad.models.outputs import FeatureOutput
from inspect_ad.models.protocols import MemoryBankModel
from inspect_ad.ops.grid import resize_grid


@dataclass
class PatchCoreConfig:
    """Where PatchCore leaves a choice, or we changed it, the reason is given.

    * ``backbone`` / ``stages``: the paper uses WideResNet-50 blocks 2 and 3; we have
      efficientnet_lite weights offline, whose timm stages 2 and 3 (stride 8 and 16, 40 + 112
      channels for lite0) are the same depth and were far better on MTD than stages 1 and 2
      (recipes/results/mtd.md, "Pretrained features").
    * ``coreset_ratio``: the share of the candidate patches kept; the paper reports 1-25%,
      1% already near the top (on MTD 1% beat 0.5% slightly, at twice the fit time).
    * ``max_candidates``: the coreset is drawn from every training patch up to this many (MTD at
      256² has 761 × 32 × 32 = 779k); beyond it, each image gives an equal random share. Drawing
      from a random 200k of MTD's 779k cost 0.04 image AUROC at 1%: the greedy selection keeps rare
      normal patches, and a random subsample drops them first.
    * Memory: the bank is at most ``max_slots`` × channels × 4 bytes (16384 × 152 × 4 = 9.5 MiB
      for lite0 stages 2, 3); fitting holds at most ``max_candidates`` × channels × 4 bytes
      (0.6 GB) for the coreset.
    * ``pad_input`` (not in the paper): the input is reflected by one cell of the deepest stage
      (16 px for stages 2, 3) on every side and the features cropped back, so the border cells
      see the part instead of the backbone's zero padding, which an even input gets on the top
      and left only: on the built-in brick at 128 px the bottom and right borders of good
      images' maps were 8% above the interior and 95 of 100 good maps peaked there.
      ``align_grid``: grids are resized from where their cells are (:mod:`inspect_ad.ops.grid`),
      not half a cell off. Both were measured together on the demo (docs/results.md, "The demo").
      Bundles saved before these fields load with both off, as they were made (``LEGACY``).
    """

    in_channels: int = 3
    image_size: int | tuple[int, int] = 256   # one side, or (height, width)
    backbone: str = "efficientnet_lite0"
    stages: tuple[int, ...] = (2, 3)
    patch_size: int = 3               # §3.1: neighbourhood size p = 3
    coreset_ratio: float = 0.01       # §4.2: 1% coreset
    max_slots: int = 16384
    max_candidates: int = 1_000_000
    num_neighbours: int = 1           # §3.3: distance to the nearest patch
    pad_input: bool = True
    align_grid: bool = True
    bank_slots: int = 1               # fitted state: the bank's size, set by fit_memory

    _constraints: ClassVar[dict] = {
        "in_channels": Satisfies("1 or 3 (the backbone reads RGB)", lambda v: is_int(v) and v in (1, 3)),
        "image_size": Size(), "backbone": Text(), "stages": Ints(0), "patch_size": Odd(),
        "coreset_ratio": Number(0, 1, open_low=True), "max_slots": Int(1), "max_candidates": Int(1),
        "pad_input": Flag(), "align_grid": Flag(), "bank_slots": Int(1)}

    def __post_init__(self):
        self.image_size = as_size(self.image_size)   # JSON gives a list
        validate(self)
        require(len(set(self.stages)) == len(self.stages), "stages", self.stages, "distinct backbone stages")
        self.stages = tuple(int(s) for s in self.stages)  # JSON gives a list
        # the k nearest of a bank of at most max_slots: a bound the table cannot hold
        at_most = Int(1, self.max_slots)
        Satisfies(f"an integer from 1 to max_slots={self.max_slots}", at_most.test).check("num_neighbours",
                                                                                          self.num_neighbours)

    def to_dict(self) -> dict:
        return asdict(self)


# what configs saved before a field existed mean by its absence
LEGACY = {"pad_input": False, "align_grid": False}


def local_patches(feats: list[Tensor], patch_size: int, strides: list[int] | None = None) -> Tensor:
    """Each map averaged over patch_size² neighbours, resized to the first map's grid, concatenated.
    ``strides``: the maps' strides, to resize from where their cells are (else half a cell off)."""
    grid = feats[0].shape[-2:]
    out = []
    for k, f in enumerate(feats):
        if patch_size > 1:
            f = F.avg_pool2d(f, patch_size, stride=1, padding=patch_size // 2, count_include_pad=False)
        if f.shape[-2:] != grid:
            f = (resize_grid(f, grid, strides[k] // strides[0]) if strides else
                 F.interpolate(f, size=grid, mode="bilinear", align_corners=False))
        out.append(f)
    return torch.cat(out, dim=1)


def patch_features(backbone: FeatureExtractor, x: Tensor, patch_size: int, pad_input: bool = True,
                   align_grid: bool = True) -> Tensor:
    """(B, C, h, w) locally aware patch features of ``x`` on the finest stage's grid (§3.1; the
    padding and alignment: see :class:`PatchCoreConfig`). A function, so that the fused
    ``mmae_patchcore`` model reads its bank exactly as PatchCore does."""
    strides = backbone.strides
    aligned = strides if align_grid else None
    if not pad_input:
        return local_patches(backbone(x), patch_size, aligned)
    pad, s = max(strides), strides[0]   # one deepest cell; a whole number of the finest
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"   # reflect needs the room
    feats = local_patches(backbone(F.pad(x, (pad,) * 4, mode=mode)), patch_size, aligned)
    o, (h, w) = pad // s, (math.ceil(n / s) for n in x.shape[-2:])
    return feats[..., o:o + h, o:o + w]


def nearest_distance(memory: CoresetMemory, feats: Tensor) -> Tensor:
    """(B, C, h, w) patch features -> (B, h, w) distance to the nearest slot (the mean over the k
    nearest, §3.3)."""
    b, c, h, w = feats.shape
    dist, _ = memory.nearest(feats.movedim(1, -1).reshape(-1, c))
    return dist.mean(dim=1).sqrt().reshape(b, h, w)


@torch.no_grad()
def fill_bank(memory: CoresetMemory, feature_batches: Iterable[Tensor], n_images: int, ratio: float, max_slots: int,
              max_candidates: int, seed: int = 0, progress: bool = True, sharded: bool = False) -> int:
    """Fill ``memory`` with a coreset of the patches of ``feature_batches`` ((B, C, h, w) each, from
    ``n_images`` images in all); at most max_candidates / n_images random patches of each image
    are candidates. Returns the number of slots (see :meth:`PatchCore.fit_memory`)."""
    gen = torch.Generator().manual_seed(seed)
    per_image = max(1, -(-max_candidates // max(1, n_images)))
    pool = []
    for feats in tqdm(feature_batches, desc="memory bank", disable=not progress, unit="batch"):
        flat = feats.movedim(1, -1).reshape(len(feats), -1, feats.shape[1]).cpu()
        for f in flat:
            pool.append(f if len(f) <= per_image else f[torch.randperm(len(f), generator=gen)[:per_image]])
    return memory.fill(torch.cat(pool), ratio, max_slots, seed, max_candidates, sharded)


class PatchCore(nn.Module, MemoryBankModel):
    """PatchCore on a frozen backbone: a greedy coreset of the training patches' features, each
    test patch scored by its distance to the nearest one (see the module docstring)."""

    def __init__(self, config: PatchCoreConfig):
        super().__init__()
        self.config = c = config
        self.backbone = FeatureExtractor(c.backbone, c.stages)
        self.memory = CoresetMemory(c.bank_slots, sum(self.backbone.channels), c.num_neighbours)

    def patch_features(self, x: Tensor) -> Tensor:
        c = self.config
        return patch_features(self.backbone, x, c.patch_size, c.pad_input, c.align_grid)

    def forward(self, x: Tensor) -> FeatureOutput:
        feats = self.patch_features(x)
        amap = nearest_distance(self.memory, feats)
        return FeatureOutput(amap, [feats], stride=self.backbone.strides[0] if self.config.align_grid else None)

    @torch.no_grad()
    def fit_memory(self, batches: Iterable[Tensor], n_images: int, seed: int = 0, progress: bool = True,
                   sharded: bool = False) -> int:
        """Fill the bank from batches of defect-free images; returns the number of slots (also
        recorded in ``config.bank_slots``).
        At most max_candidates / n_images random patches of each image are kept for the coreset.
        ``sharded``: ``batches`` hold this process's share of the ``n_images`` (PatchCore on
        several processes); the processes' coresets are merged into a bank of the size one
        process would fill, the same on every process (:meth:`CoresetMemory.fill`)."""
        c = self.config
        device = next(self.backbone.buffers()).device
        n = fill_bank(self.memory, (self.patch_features(x.to(device)) for x in batches), n_images, c.coreset_ratio,
                      c.max_slots, c.max_candidates, seed, progress, sharded)
        self.memory.to(device)
        self.config = replace(c, bank_slots=n)
        return n
