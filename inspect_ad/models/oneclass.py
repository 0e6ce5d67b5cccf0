"""MemAE's image networks for one-class detection (Gong et al., ICCV 2019, §4.1), with the AE and
MemAE-nonSpar baselines (training and scoring: :mod:`inspect_ad.detectors.oneclass`).

Conv2(k, s, c) encoders and Dconv2(k, s, c) decoders, BN + ReLU after every layer but the last.
The memory (the shared :class:`~inspect_ad.memory.MemAEMemory`) addresses the *whole* encoding,
flattened to one C·h·w vector per image (1024 values for both MNIST and CIFAR-10), so a single
slot decodes to a whole prototype image as in the paper's Fig. 3. Registered names:
``ae_mnist``, ``memae_mnist_nonspar``, ``memae_mnist`` and the same with ``cifar10``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from inspect_ad.errors import ConfigError
from inspect_ad.memory import MemAEMemory, MemoryConfig, build_with_memory
from inspect_ad.checks import Flag, Int, Number, Options, is_int, require, validate
from inspect_ad.memory.config import as_memory_config
from inspect_ad.models.outputs import ReconstructionOutput
from inspect_ad.models.registry import ModelSpec, register_model

log = logging.getLogger(__name__)

Layer = tuple[int, int, int]  # (kernel, stride, channels)
MEMORY_LAYOUTS = ("image", "position")


@dataclass
class OneClassConfig:
    """Defaults are the paper's MNIST network (§4.1); :data:`CIFAR10` holds its CIFAR-10 one."""

    memory_fields: ClassVar[tuple[str, ...]] = MemAEMemory.config_fields

    in_channels: int = 1                    # §4.1: MNIST as grey images
    image_size: int = 28
    # §4.1: Conv2(1,2,16)-Conv2(3,2,32)-Conv2(3,2,64)
    encoder: tuple[Layer, ...] = ((1, 2, 16), (3, 2, 32), (3, 2, 64))
    # §4.1: Dconv2(3,2,64)-Dconv2(3,2,32)-Dconv2(3,2,1); the last width is in_channels
    decoder: tuple[Layer, ...] = ((3, 2, 64), (3, 2, 32), (3, 2, 1))
    # §4.1: N = 100 for MNIST (500 for CIFAR-10); eq. 5 cosine, softmax temperature 1 (the paper);
    # init ±1/sqrt(C) (the authors' code, see MemAEMemory.init_std).
    # eq. 7 λ = 1/N, the low end of the paper's [1/N, 3/N]: with cosine addressing the first
    # weights are all ≈ 1/N, so λ = 2/N zeroes every one of them and no gradient reaches the
    # memory (measured: the read collapses and AUROC drops to 0.23 on digit 0). 0 = nonSpar.
    # A logit_scale > 1 lets the addressing become sparse: cosines lie in [-1, 1], so over N slots
    # no weight can exceed e²/(e² + N − 1) (0.07 for N = 100) and the read averages ~40 slots
    # (recipes/results/mnist.md).
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(slots=100, shrink_threshold=0.01))
    # What one memory query is; the paper does not say for images. "image": the whole encoding
    # (C·h·w values), so one slot decodes to a whole digit as in Fig. 3. "position": each of the
    # h·w feature vectors (C values) on its own, as the authors' released MemModule does for video.
    memory_layout: str = "image"
    use_memory: bool = True                 # False: the AE baseline (§4.1)
    entropy_weight: float = 0.0002          # eq. 10 α; 0 for MemAE-nonSpar (§4.1)

    _constraints: ClassVar[dict] = {"in_channels": Int(1), "image_size": Int(1), "memory_layout": Options(*MEMORY_LAYOUTS),
                                    "use_memory": Flag(), "entropy_weight": Number(0)}

    def __post_init__(self):
        self.memory = as_memory_config(self.memory, self.memory_fields, "the one-class MemAE")
        self.encoder = layers("encoder", self.encoder)   # JSON round-trips turn the tuples into lists
        self.decoder = layers("decoder", self.decoder)
        validate(self)
        if len(self.encoder) != len(self.decoder):
            raise ConfigError(f"decoder={self.decoder}: needs as many layers as encoder={self.encoder} (the decoder "
                              f"mirrors the encoder's strides)")
        require(self.decoder[-1][2] == self.in_channels, "decoder", self.decoder,
                f"layers whose last outputs in_channels={self.in_channels}")

    def to_dict(self) -> dict:
        return asdict(self)


# §4.1: CIFAR-10 Conv2(3,2,64)-Conv2(3,2,128)-Conv2(3,2,128)-Conv2(3,2,256),
# Dconv2(3,2,256)-Dconv2(3,2,128)-Dconv2(3,2,128)-Dconv2(3,2,3), N = 500, RGB 32×32.
CIFAR10 = dict(in_channels=3, image_size=32, memory_slots=500, shrink_threshold=1 / 500,
               encoder=((3, 2, 64), (3, 2, 128), (3, 2, 128), (3, 2, 256)),
               decoder=((3, 2, 256), (3, 2, 128), (3, 2, 128), (3, 2, 3)))
DATASETS = {"mnist": {}, "cifar10": CIFAR10}
# The three rows of Table 1 compared here.
VARIANTS = {
    "ae": dict(use_memory=False, entropy_weight=0.0),
    "memae_nonspar": dict(shrink_threshold=0.0, entropy_weight=0.0),
    "memae": {},
}


def layers(name: str, value) -> tuple[Layer, ...]:
    """(kernel, stride, channels) triples of positive integers, as tuples."""
    ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(
        isinstance(layer, (tuple, list)) and len(layer) == 3 and all(is_int(v) and v >= 1 for v in layer)
        for layer in value)
    require(ok, name, value, "a non-empty list of [kernel, stride, channels] triples of integers >= 1")
    return tuple(tuple(int(v) for v in layer) for layer in value)


def conv_size(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def bn_relu(layer: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(layer, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class OneClassAE(nn.Module):
    """Plain conv encoder -> (optional) MemAE memory over the whole encoding -> deconv decoder."""

    def __init__(self, config: OneClassConfig):
        super().__init__()
        self.config = c = config
        sizes = [c.image_size]
        enc, ch = [], c.in_channels
        for k, s, out in c.encoder:
            enc.append(bn_relu(nn.Conv2d(ch, out, k, s, k // 2), out))
            sizes.append(conv_size(sizes[-1], k, s))
            ch = out
        self.encoder = nn.Sequential(*enc)
        self.latent_shape = (ch, sizes[-1], sizes[-1])
        self.decoder = self._decoder(ch, sizes[::-1][1:])
        dim = int(np.prod(self.latent_shape)) if c.memory_layout == "image" else ch
        self.memory = MemAEMemory.from_config(c.memory, dim) if c.use_memory else None

    def _decoder(self, ch: int, targets: list[int]) -> nn.Sequential:
        """Deconvs whose output_padding lands each layer on the mirrored encoder size."""
        layers, size = [], self.latent_shape[1]
        for i, ((k, s, out), target) in enumerate(zip(self.config.decoder, targets)):
            pad = k // 2
            extra = target - ((size - 1) * s - 2 * pad + k)
            if not 0 <= extra < s:
                raise ConfigError(f"decoder={self.config.decoder}: layer {i} cannot reach the mirrored encoder "
                                  f"size {target} from {size}; choose kernels and strides that mirror the encoder's")
            deconv = nn.ConvTranspose2d(ch, out, k, s, pad, output_padding=extra)
            last = i == len(self.config.decoder) - 1
            layers.append(deconv if last else bn_relu(deconv, out))
            ch, size = out, target
        return nn.Sequential(*layers)

    def decode(self, z: Tensor) -> Tensor:
        """(B, C·h·w) or (B, C, h, w) encodings -> images; with the "position" layout a (B, C)
        slot is repeated at every position."""
        if self.config.memory_layout == "position" and z.dim() == 2:
            z = z[:, :, None, None].expand(-1, -1, *self.latent_shape[1:])
        return self.decoder(z.reshape(-1, *self.latent_shape))

    def forward(self, x: Tensor) -> ReconstructionOutput:
        z = self.encoder(x)
        if self.memory is None:
            return ReconstructionOutput(self.decoder(z), [], [z])
        read = self.memory(z.flatten(1) if self.config.memory_layout == "image" else z)
        return ReconstructionOutput(self.decode(read.features), [read.weights], [read.features])


def build_config(dataset: str, variant: str, **overrides) -> OneClassConfig:
    return build_with_memory(OneClassConfig, **{**DATASETS[dataset], **VARIANTS[variant], **overrides})


def model_name(dataset: str, variant: str) -> str:
    """``memae_nonspar`` on ``mnist`` -> ``memae_mnist_nonspar`` (the registered name)."""
    if variant == "memae_nonspar":
        return f"memae_{dataset}_nonspar"
    return f"{variant}_{dataset}"


_TINY = dict(image_size=16, memory_slots=8, shrink_threshold=1 / 8)
_TINY_LAYERS = {
    "mnist": dict(encoder=((1, 2, 4), (3, 2, 4), (3, 2, 8)), decoder=((3, 2, 8), (3, 2, 4), (3, 2, 1))),
    "cifar10": dict(encoder=((3, 2, 4), (3, 2, 8)), decoder=((3, 2, 8), (3, 2, 3))),
}


def _example(cfg: OneClassConfig) -> Tensor:
    return torch.rand(2, cfg.in_channels, cfg.image_size, cfg.image_size)


for _dataset in DATASETS:
    for _variant in VARIANTS:
        register_model(ModelSpec(model_name(_dataset, _variant), partial(build_config, _dataset, _variant),
                                 # the variant's own values last: tiny nonSpar keeps λ = 0
                                 OneClassAE, {**_TINY, **_TINY_LAYERS[_dataset], **VARIANTS[_variant]}, _example,
                                 family="oneclass"))


@torch.no_grad()
def decode_slots(model: OneClassAE, slots: list[int] | None = None) -> Tensor:
    """Fig. 3: decode single memory items (each slot read alone, weight 1) into images."""
    if model.memory is None:
        raise ValueError("this model has no memory to decode")
    model.eval()
    items = model.memory.slots if slots is None else model.memory.slots[list(slots)]
    return model.decode(items)


__all__ = ["OneClassConfig", "OneClassAE", "CIFAR10", "DATASETS", "VARIANTS", "build_config", "model_name",
           "decode_slots"]
