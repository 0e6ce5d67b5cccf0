"""MMAE on pretrained features: ``--model mmae|memae|ae --backbone efficientnet_lite0``.

The MMAE paper reconstructs pixels; here the same architecture reconstructs the
frozen ImageNet features of the input, where a defect is far easier to tell from a good
surface than in grey levels (``../shared/notes/accuracy-checks.md``):

* K scale encoders: the frozen backbone gives K feature maps (``scale_source``: "stages", K
  backbone stages from one pass; or "input", the same stages on the input resized by γ^(k-1),
  the paper's own multi-scale input), each averaged over a 3 × 3 neighbourhood as in PatchCore;
  a trainable encoder per scale maps it to ``latent_channels`` on one common grid;
* one MemAE memory per scale (the shared core), addressing every grid position;
* the attention fuser (a per-position softmax over scales, as the pixel MMAE);
* one pixel-shuffle decoder from the fused grid that reconstructs every scale's features.

Loss: mean over scales of 1 − cos(f, f̂) per position, plus α · the memories' addressing
entropy (MemAE eq. 10). Map: the same per-position 1 − cos, resized to the finest scale and
averaged over scales. ``memae`` is K = 1, ``ae`` drops the memories, as for the pixel model.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspect_ad.models.backbones import FeatureExtractor
from inspect_ad.memory import MemAEMemory, MemoryConfig
from inspect_ad.checks import (Flag, Int, Ints, Number, Odd, Options, PowerOfTwo, Satisfies, Size, Text, as_size,
                               is_int, require, validate)
from inspect_ad.memory.config import as_memory_config
from inspect_ad.models.blocks import SLOPE, attention_fuse, memory_on_grid
from inspect_ad.models.outputs import FeatureOutput
from inspect_ad.models.patchcore import local_patches
from inspect_ad.models.protocols import FrozenFeatureModel

log = logging.getLogger(__name__)

SCALE_SOURCES = ("stages", "input")
SLOT_INITS = ("random", "data")


@dataclass
class FeatureMMAEConfig:
    """Paper values cite MMAE §4.1 or MemAE; where both are silent we chose, and measured where
    it says so (recipes/results/mtd.md, "Pretrained features (issue 17)"; the demo's brick):

    * ``scale_source`` / ``stages``: "stages" takes K = len(stages) backbone stages from one
      pass (strides 8 and 16 for lite0 stages 2, 3, those of patchcore); "input" runs the backbone
      on the input at K = ``num_scales`` sizes γ^(k-1) and concatenates ``stages`` at each. On MTD
      "input" lost 0.07 AUPRO (run E5), so "stages" is the default.
    * ``grid_stride`` 16 with ``decoder_channels`` 64: the common grid where the memories address
      and the fuser weighs scales. Stages 1+2 on a stride-8 grid with a 128-channel decoder did
      better on the built-in brick (image AUROC 0.951 against 0.901), but on MTD (run E3) it lost
      0.08 image AUROC for +0.08 AUPRO and fit 4.6x slower (212 s against 46 s): addressing every
      stride-8 position is the costly step on a CPU.
    * ``memory.slots`` (option ``memory_slots``) 256: the paper's 60 slots hold grey-level
      patterns, and ImageNet features are more varied (our choice, not measured; 512 slots with
      ``logit_scale`` 10 did not help).
    * ``logit_scale`` 1 is eq. 4's raw cosine; 10 (a sharper read) did not help on MTD.
    * ``kernel_size`` 3: 1 × 1 convolutions (per position, as DFR) did not help on MTD.
    * Loss and map: cosine distance, because feature norms vary with contrast across images and
      stages while their direction carries the pattern (RD4AD's choice); not compared with MSE.
    * Issue 29 (recipes/results/mmae.md; brick 2 seeds at 30 epochs, hazelnut 3 seeds at 100): the
      paper's soft read stays near uniform after training (addressing entropy 4.76 of log 256 = 5.55,
      ~117 non-zero weights per read, largest weight 0.011), so the memory bottlenecks nothing.
      ``memory_top_k`` 4 with ``logit_scale`` 10 makes it one: MemAE's AUPRO rose above the AE's on
      brick seeds 0, 1 and hazelnut but collapsed on brick seed 2 (3-seed brick mean 0.853 ± 0.071
      against the AE's 0.876 ± 0.021), and MMAE's stays 0.02-0.06 under the AE's, whose fuser weighs
      the fine scale 0.997 where MMAE's splits ~0.5 / 0.5 between its reads.
      ``jitter_scale`` 20 (UniAD's α) lowered every model on brick (AE AUPRO 0.884 -> 0.827), 5 was
      neutral; ``slot_init="data"`` spread the reads over more slots but lowered MemAE's AUPRO
      0.913 -> 0.886. None is a default: no setting put MMAE above its ablations.
    """

    memory_fields: ClassVar[tuple[str, ...]] = MemAEMemory.config_fields

    in_channels: int = 3
    image_size: int | tuple[int, int] = 256   # one side, or (height, width)
    backbone: str = "efficientnet_lite0"
    stages: tuple[int, ...] = (2, 3)
    scale_source: str = "stages"
    num_scales: int = 2                # K (§4.1: 5 for pixels; with "stages" it is len(stages))
    scale_factor: float = 0.5          # §4.1: γ = 0.5 ("input" scales only)
    patch_size: int = 3                # PatchCore §3.1 neighbourhood averaging of the targets
    # 256 slots (see docstring; §4.1: 60 for pixels); eq. 4 raw cosines, MemAE eq. 7 λ = 1/N,
    # slots N(0, 1) as the pixel MMAE (see MMAEConfig)
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(slots=256, init_std=1.0))
    use_memory: bool = True            # False = AE ablation
    entropy_weight: float = 0.0002     # MemAE eq. 10: α
    latent_channels: int = 64
    grid_stride: int = 16              # see docstring
    decoder_channels: int = 64
    kernel_size: int = 3               # of the encoders', trunk's and heads' convs (1: per position, as DFR)
    # the map resized from where its cells are (inspect_ad.ops.grid; bundles saved before: False,
    # half a cell off): on the demo, pixel AUROC 0.922 -> 0.948 and AUPRO 0.712 -> 0.772, no retraining
    align_grid: bool = True
    # UniAD (You et al., NeurIPS 2022) §3.3 feature jitter, training only: the encoders read
    # f + ε, ε ~ N(0, (α ||f|| / C)²) per position, with probability p per batch, and the clean f
    # stays the target, so the identity map no longer minimises the loss. 0 = off (MMAE has none).
    jitter_scale: float = 0.0          # UniAD's α (its default 20)
    jitter_prob: float = 1.0           # UniAD's p (its default 1)
    # "random": slots from ``memory.init_std`` (the paper); "data": before training, each memory's
    # slots are its encoder's latents at randomly drawn training positions, so every slot starts
    # where queries are and none is left unread (not in MemAE/MMAE)
    slot_init: str = "random"

    _constraints: ClassVar[dict] = {
        "in_channels": Satisfies("1 or 3 (the backbone reads RGB)", lambda v: is_int(v) and v in (1, 3)),
        "image_size": Size(), "backbone": Text(), "stages": Ints(0), "scale_source": Options(*SCALE_SOURCES),
        "num_scales": Int(1), "scale_factor": Number(0, 1, open_low=True, open_high=True), "patch_size": Odd(),
        "use_memory": Flag(), "entropy_weight": Number(0), "latent_channels": Int(1), "grid_stride": PowerOfTwo(),
        "decoder_channels": Int(1),
        "kernel_size": Odd(),   # "same" padding k // 2 keeps the grid only for odd k
        "align_grid": Flag(), "jitter_scale": Number(0), "jitter_prob": Number(0, 1),
        "slot_init": Options(*SLOT_INITS)}

    def __post_init__(self):
        self.memory = as_memory_config(self.memory, self.memory_fields, "the feature MMAE")
        self.image_size = as_size(self.image_size)   # JSON gives a list
        validate(self)
        require(len(set(self.stages)) == len(self.stages), "stages", self.stages, "distinct backbone stages")
        self.stages = tuple(int(s) for s in self.stages)
        if self.scale_source == "stages":
            if self.num_scales < len(self.stages):
                # kept as it was (recorded runs depend on it), but said: stages=[1,2,3] with K = 2
                # is stages 1+2 (mtd.md, the E3 correction)
                log.warning("num_scales=%d keeps the first %d of stages %s; pass num_scales=%d to use them all",
                            self.num_scales, self.num_scales, list(self.stages), len(self.stages))
                self.stages = self.stages[:self.num_scales]
            self.num_scales = len(self.stages)

    def to_dict(self) -> dict:
        return asdict(self)


def upsampler(c_in: int, c_out: int, steps: int, k: int = 3) -> nn.Sequential:
    """``steps`` × (k×k conv to 4c, PixelShuffle(2), LeakyReLU), then a 1×1 conv to ``c_out``."""
    layers: list[nn.Module] = []
    for _ in range(steps):
        layers += [nn.Conv2d(c_in, 4 * c_in, k, 1, k // 2), nn.PixelShuffle(2), nn.LeakyReLU(SLOPE, inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(c_in, c_out, 1))


def cosine_distance(f: Tensor, g: Tensor) -> Tensor:
    """(B, C, h, w) pair -> (B, h, w) per-position 1 − cos."""
    return 1 - F.cosine_similarity(f, g, dim=1, eps=1e-6)


class FeatureMMAE(nn.Module, FrozenFeatureModel):
    """MMAE (and its MemAE / AE ablations) rebuilding a frozen backbone's features instead of
    pixels (see the module docstring and :class:`FeatureMMAEConfig`)."""

    def __init__(self, config: FeatureMMAEConfig):
        super().__init__()
        self.config = c = config
        self.backbone = FeatureExtractor(c.backbone, c.stages)
        if c.scale_source == "stages":
            channels, strides = self.backbone.channels, self.backbone.strides
        else:
            channels = [sum(self.backbone.channels)] * c.num_scales
            strides = [self.backbone.strides[0] / c.scale_factor ** k for k in range(c.num_scales)]
        self.strides = strides
        self.encoders = nn.ModuleList(self._encoder(ch, s) for ch, s in zip(channels, strides))
        self.memories = nn.ModuleList(MemAEMemory.from_config(c.memory, c.latent_channels)
                                      for _ in channels) if c.use_memory else nn.ModuleList()
        self.fuser = nn.Conv2d(len(channels) * c.latent_channels, len(channels), 1) if len(channels) > 1 else None
        w, k = c.decoder_channels, c.kernel_size
        self.trunk = nn.Sequential(nn.Conv2d(c.latent_channels, w, k, 1, k // 2), nn.LeakyReLU(SLOPE, inplace=True),
                                   nn.Conv2d(w, w, k, 1, k // 2), nn.LeakyReLU(SLOPE, inplace=True))
        self.heads = nn.ModuleList(upsampler(w, ch, max(0, round(math.log2(c.grid_stride / s))), k)
                                   for ch, s in zip(channels, strides))

    def _encoder(self, channels: int, stride: float) -> nn.Sequential:
        """1×1 projection, then stride-2 3×3 convs down to the grid (finer scales only)."""
        c = self.config
        layers: list[nn.Module] = [nn.Conv2d(channels, c.latent_channels, 1), nn.LeakyReLU(SLOPE, inplace=True)]
        for _ in range(max(0, round(math.log2(c.grid_stride / stride)))):
            layers += [nn.Conv2d(c.latent_channels, c.latent_channels, 3, 2, 1), nn.LeakyReLU(SLOPE, inplace=True)]
        if c.kernel_size > 1:
            layers += [nn.Conv2d(c.latent_channels, c.latent_channels, c.kernel_size, 1, c.kernel_size // 2),
                       nn.LeakyReLU(SLOPE, inplace=True)]
        return nn.Sequential(*layers, nn.Conv2d(c.latent_channels, c.latent_channels, 1))

    def targets(self, x: Tensor) -> list[Tensor]:
        """The K per-scale feature maps to reconstruct (frozen: no gradient)."""
        c = self.config
        if c.scale_source == "stages":
            return [local_patches([f], c.patch_size) for f in self.backbone(x)]
        out = []
        for k in range(c.num_scales):
            xk = x if k == 0 else F.interpolate(x, scale_factor=c.scale_factor ** k, mode="bilinear",
                                                 align_corners=False, antialias=True)
            out.append(local_patches(self.backbone(xk), c.patch_size))
        return out

    def forward(self, x: Tensor) -> FeatureOutput:
        return self.reconstruct(self.targets(x), x.shape[-2:])

    def reconstruct(self, targets: list[Tensor], size: tuple[int, int] | None = None) -> FeatureOutput:
        """Encode, address, fuse and decode precomputed :meth:`targets` (training caches them)."""
        c = self.config
        grid = self.grid(targets, size)
        inputs = self.jittered(targets) if self.training and c.jitter_scale > 0 else targets
        latents, weights = memory_on_grid((enc(t) for enc, t in zip(self.encoders, inputs)), grid, self.memories)
        fused, attention = attention_fuse(self.fuser, latents)
        trunk = self.trunk(fused)
        recons = []
        for head, t in zip(self.heads, targets):
            r = head(trunk)
            recons.append(r if r.shape[-2:] == t.shape[-2:] else
                          F.interpolate(r, size=t.shape[-2:], mode="bilinear", align_corners=False))
        return FeatureOutput(self.discrepancy(targets, recons), targets, recons, weights, attention,
                             self.backbone.strides[0] if c.align_grid else None)

    def grid(self, targets: list[Tensor], size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The common grid where the memories address, for an input of ``size`` (default: the
        finest target's cells times their stride)."""
        h, w = size or (targets[0].shape[-2] * self.strides[0], targets[0].shape[-1] * self.strides[0])
        return math.ceil(h / self.config.grid_stride), math.ceil(w / self.config.grid_stride)

    def jittered(self, targets: list[Tensor]) -> list[Tensor]:
        """UniAD's feature jitter (see ``jitter_scale``): the encoders' noisy inputs; draws from
        torch's global generator, which training seeds (``seed_everything``)."""
        c = self.config
        out = []
        for t in targets:
            if float(torch.rand(())) < c.jitter_prob:
                scale = c.jitter_scale * t.norm(dim=1, keepdim=True) / t.shape[1]
                t = t + torch.randn_like(t) * scale
            out.append(t)
        return out

    @torch.no_grad()
    def seed_memories(self, batches, seed: int = 0) -> bool:
        """``slot_init="data"``: set each memory's slots to its encoder's latents (on the common
        grid, as the memory reads them) at positions drawn from ``batches`` of :meth:`targets`
        (seeded by ``seed``); returns whether it did (False without memories or for "random")."""
        c = self.config
        if c.slot_init != "data" or not self.memories:
            return False
        pools: list[list[Tensor]] = [[] for _ in self.memories]
        for targets in batches:
            grid = self.grid(targets)
            for k, (enc, t) in enumerate(zip(self.encoders, targets)):
                z = enc(t.to(self.memories[k].slots.device))
                if z.shape[-2:] != grid:
                    z = F.interpolate(z, size=grid, mode="bilinear", align_corners=False)
                pools[k].append(z.movedim(1, -1).reshape(-1, z.shape[1]))
        gen = torch.Generator().manual_seed(seed)
        for memory, pool in zip(self.memories, pools):
            queries = torch.cat(pool)
            n = memory.slots.shape[0]
            pick = torch.randperm(len(queries), generator=gen)[:n]
            if len(pick) < n:   # fewer positions than slots: repeat them
                pick = pick[torch.arange(n) % len(pick)]
            memory.slots.copy_(queries[pick.to(queries.device)])
        log.info("memory slots seeded from %d training positions", len(queries))
        return True

    @staticmethod
    def discrepancy(targets: list[Tensor], recons: list[Tensor]) -> Tensor:
        """Mean over scales of the per-position cosine distance, on the finest scale's grid."""
        size = max((t.shape[-2:] for t in targets), key=lambda s: s[0] * s[1])
        maps = [cosine_distance(t, r) for t, r in zip(targets, recons)]
        maps = [m if m.shape[-2:] == size else
                F.interpolate(m.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
                for m in maps]
        return torch.stack(maps).mean(dim=0)
