"""MMAE: multi-scale memories and attention autoencoder (arXiv:2012.11113), with its two ablations.

* ``mmae``  — K encoders on the input resized by γ^(i-1), one MemAE memory per scale, an
  attention fuser, one pixel-shuffle decoder.
* ``memae`` — the same with K = 1 (MemAE, Gong et al. 2019, on a per-position memory).
* ``ae``    — the same encoders/fuser/decoder without memory (the AE baseline).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from inspect_ad.errors import ConfigError
from inspect_ad.memory import MemAEMemory, MemoryConfig, build_with_memory
from inspect_ad.checks import Flag, Int, Number, PowerOfTwo, Size, as_size, validate
from inspect_ad.memory.config import as_memory_config
from inspect_ad.models.blocks import PixelShuffleDecoder, StridedEncoder, attention_fuse, memory_on_grid
from inspect_ad.models.feature_mmae import FeatureMMAE, FeatureMMAEConfig
from inspect_ad.models.outputs import ReconstructionOutput


@dataclass
class MMAEConfig:
    """Hyperparameters of MMAE and its ablations. Paper values cite the MMAE paper, §4.1.

    Where the paper is silent we chose, and say why:
    * Feature-map size per scale (``grid_stride``): every encoder maps its input to the *same*
      grid, image_size / grid_stride (16×16 at 256), so the memories address each grid position
      (as MemAE does for video) and the fuser can weigh scales per position. Encoder i uses
      log2(grid_stride·γ^(i-1)) stride-2 convs (4, 3, 2, 1, 0 at the defaults) and is bilinearly
      resized to the grid when γ is not a power of 1/2.
    * Latent size (``latent_channels``): the paper's "latent dim 1024" has no stated layout. We
      per grid position would mean 1024 channels × 256 positions per scale, far past a laptop's
      budget, so the default is 64 channels per position (16·16·64 = 16384 values per scale);
      raise it with ``latent_channels`` on a large GPU.
    * Fuser form: per-position softmax over scales of a 1×1 conv on the concatenated
      de-anomalised features, fused = Σ_k a_k F̂_k (a spatial "multi-scale attention").
    * Width: ``base_channels`` doubling per stride-2 conv, capped at ``max_channels``.
    * Slot init (``memory.init_std``, option ``slot_init_std``): N(0, 1). Cosine addressing
      ignores slot norms, so the init only sets the read-out's size; MemAE's code init
      (±1/sqrt(C), ``None`` here) reads out features ~10x smaller than the encoder's and left
      MMAE's loss at 2x the AE's after the same training (recipes/results/synthetic_mmae.md).
    """

    memory_fields: ClassVar[tuple[str, ...]] = MemAEMemory.config_fields

    in_channels: int = 3
    image_size: int | tuple[int, int] = 256   # §4.1: inputs zoomed to 256×256
    num_scales: int = 5                # §4.1: K = 5
    scale_factor: float = 0.5          # §4.1: γ = 0.5 -> resolutions 256, 128, 64, 32, 16
    # §4.1: memory size 60; eq. 4 softmax over raw cosines (logit_scale 1); MemAE eq. 7 λ = 1/N;
    # slot init N(0, 1), see the docstring
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(slots=60, init_std=1.0))
    use_memory: bool = True            # False = AE baseline
    entropy_weight: float = 0.0002     # MemAE eq. 10: α
    latent_channels: int = 64          # see docstring
    grid_stride: int = 16              # see docstring
    base_channels: int = 32
    max_channels: int = 128

    _constraints: ClassVar[dict] = {
        "in_channels": Int(1), "image_size": Size(), "num_scales": Int(1), "scale_factor": Number(0, 1, open_low=True, open_high=True),
        "use_memory": Flag(), "entropy_weight": Number(0), "latent_channels": Int(1), "grid_stride": PowerOfTwo(),
        "base_channels": Int(1), "max_channels": Int(1)}

    def __post_init__(self):
        self.memory = as_memory_config(self.memory, self.memory_fields, "MMAE")
        self.image_size = as_size(self.image_size)   # one side, or (height, width); JSON gives a list
        validate(self)
        # the decoder upsamples the grid by grid_stride, so only such sizes come back whole
        Size(self.grid_stride, f"grid_stride={self.grid_stride}").check("image_size", self.image_size)

    def to_dict(self) -> dict:
        return asdict(self)


class MMAE(nn.Module):
    """MMAE on pixels (and its MemAE and AE ablations): K encoders, one memory per scale, the
    attention fuser and the pixel-shuffle decoder (see :class:`MMAEConfig`)."""

    def __init__(self, config: MMAEConfig):
        super().__init__()
        self.config = c = config
        depth = int(math.log2(c.grid_stride))
        self.encoders = nn.ModuleList(
            StridedEncoder(c.in_channels, c.latent_channels, self.scale_depth(i, depth),
                           c.base_channels, c.max_channels)
            for i in range(c.num_scales))
        self.memories = nn.ModuleList(MemAEMemory.from_config(c.memory, c.latent_channels)
                                      for _ in range(c.num_scales)) if c.use_memory else nn.ModuleList()
        self.fuser = nn.Conv2d(c.num_scales * c.latent_channels, c.num_scales, 1) if c.num_scales > 1 else None
        self.decoder = PixelShuffleDecoder(c.latent_channels, c.in_channels, depth,
                                           c.base_channels, c.max_channels)

    def scale_depth(self, i: int, depth: int) -> int:
        return max(0, round(depth + i * math.log2(self.config.scale_factor)))

    def forward(self, x: Tensor) -> ReconstructionOutput:
        c = self.config
        h, w = x.shape[-2:]
        if h % c.grid_stride or w % c.grid_stride:
            raise ValueError(f"input size {h}×{w} must be a multiple of grid_stride={c.grid_stride}")
        grid = (h // c.grid_stride, w // c.grid_stride)
        encodings = (enc(self.rescale(x, c.scale_factor ** i)) for i, enc in enumerate(self.encoders))
        feats, weights = memory_on_grid(encodings, grid, self.memories)
        fused, attention = attention_fuse(self.fuser, feats)
        return ReconstructionOutput(self.decoder(fused), weights, feats, attention)

    @staticmethod
    def rescale(x: Tensor, factor: float) -> Tensor:
        if factor == 1:
            return x
        # int(): a traced shape is a tensor, and the scales of one model are fixed sizes
        size = (max(1, round(int(x.shape[-2]) * factor)), max(1, round(int(x.shape[-1]) * factor)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


# What the ablations fix, and why: another value is another model (``mmae``).
ABLATIONS = {"memae": ("num_scales", 1, "MemAE is MMAE with K = 1"),
             "ae": ("use_memory", False, "the AE baseline has no memory")}


def build_config(name: str, backbone: str | None = None, **overrides) -> MMAEConfig | FeatureMMAEConfig:
    """The config of a named variant: ``mmae``, ``memae`` (K = 1) or ``ae`` (no memory), on
    pixels (``backbone=None``) or on the features of a pretrained ``backbone``."""
    if name in ABLATIONS:
        key, value, why = ABLATIONS[name]
        if overrides.get(key, value) != value:
            raise ConfigError(f"{key}={overrides[key]!r}: model {name!r} always has {key}={value} ({why}); "
                              f"use --model mmae for other values")
        overrides = {**overrides, key: value}
    if backbone:
        return build_with_memory(FeatureMMAEConfig, backbone=backbone, **overrides)
    return build_with_memory(MMAEConfig, **overrides)


def ablation_options(name: str, options: dict) -> dict:
    """``options`` without the one that ablation ``name`` fixes, for comparisons that pass one set
    of options to ``ae``, ``memae`` and ``mmae`` (``num_scales=3`` is then MMAE's alone)."""
    fixed = ABLATIONS.get(name, (None,))[0]
    return {k: v for k, v in options.items() if k != fixed}


def config_class(overrides: dict) -> type:
    """The feature model's config with a ``backbone``, else the pixel model's."""
    return FeatureMMAEConfig if overrides.get("backbone") else MMAEConfig


def build_model(config: MMAEConfig | FeatureMMAEConfig) -> nn.Module:
    return FeatureMMAE(config) if isinstance(config, FeatureMMAEConfig) else MMAE(config)
