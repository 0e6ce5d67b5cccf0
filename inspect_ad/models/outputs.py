"""Typed outputs of the models' forward passes."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ReconstructionOutput:
    """reconstruction: the model's de-anomalised image, same shape as the input.
    weights: addressing weights of each memory (one (Q, N) tensor per scale; empty without memory).
    features: per-scale features after the memory (the decoder's inputs before fusion).
    attention: fuser weights over scales, (B, K, h, w), or None for a single scale.
    """

    reconstruction: Tensor
    weights: list[Tensor] = field(default_factory=list)
    features: list[Tensor] = field(default_factory=list)
    attention: Tensor | None = None


@dataclass
class FeatureOutput:
    """Output of the models that work on pretrained features (``patchcore``, feature MMAE).

    anomaly_map: (B, h, w) per-position discrepancy at the feature grid's resolution (larger =
        more anomalous); scoring resizes it to the input and smooths it.
    features: the backbone's per-scale features (the reconstruction targets).
    reconstructions: per-scale reconstructions of ``features`` (empty for ``patchcore``).
    weights: addressing weights of each memory, as in :class:`ReconstructionOutput`.
    attention: fuser weights over scales (B, K, h, w), or None.
    stride: cell i of ``anomaly_map`` is centred on input pixel stride·i (see
        :mod:`inspect_ad.ops.grid`); None: in the middle of its block (bundles made before that).
    """

    anomaly_map: Tensor
    features: list[Tensor] = field(default_factory=list)
    reconstructions: list[Tensor] = field(default_factory=list)
    weights: list[Tensor] = field(default_factory=list)
    attention: Tensor | None = None
    stride: int | None = None
