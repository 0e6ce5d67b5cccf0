"""What one training step minimises, per family: ``objective(model, batch) -> (loss, parts)``.

The losses themselves are functions of :mod:`inspect_ad.models.losses` (and
:func:`~inspect_ad.models.video.video_loss`); an objective only wires a batch to them.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from inspect_ad.models.losses import feature_loss, memae_loss
from inspect_ad.models.video import update_memory, video_loss


def memae_objective(entropy_weight: float, ssim_weight: float = 0.0, gms_weight: float = 0.0,
                    corrupt: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """Reconstruct the batch (MemAE eq. 10 and its extensions). ``corrupt`` (e.g.
    :class:`~inspect_ad.data.corruption.SyntheticDefects`) alters the input only: the target stays
    the clean image, so the model learns to repair what it changed."""
    def loss(model: nn.Module, x: torch.Tensor):
        return memae_loss(model(corrupt(x) if corrupt else x), x, entropy_weight, ssim_weight, gms_weight)
    return loss


def feature_objective(entropy_weight: float):
    """Feature MMAE: rebuild the backbone's cached per-scale features (a list of tensors)."""
    def loss(model: nn.Module, targets: list[torch.Tensor]):
        return feature_loss(model.reconstruct(targets), entropy_weight)
    return loss


class VideoObjective:
    """A clip -> the model's input and targets (``split_clip``) -> its paper's loss; after each
    optimiser step the MNAD / prototype memories update their items (MNAD eq. 3, Lai et al. 2021 eq. 12)."""

    def __init__(self):
        self._out = None

    def __call__(self, model: nn.Module, clip: torch.Tensor):
        x, targets = model.split_clip(clip)
        self._out = model(x)
        return video_loss(model, self._out, targets)

    def after_step(self, model: nn.Module) -> None:
        update_memory(model, self._out)
