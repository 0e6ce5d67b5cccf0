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
