"""What a model declares about how it is fitted, so that a detector asks its class rather than
guessing from its attributes. A model inherits the base class whose method it implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable

from torch import Tensor


class MemoryBankModel(ABC):
    """Fitted by filling a memory bank in one pass over the defect-free training images, with no
    gradient step (PatchCore): the detector calls :meth:`fit_memory` instead of the training loop.
    A model that is also a :class:`FrozenFeatureModel` (``mmae_patchcore``) is trained first, then
    filled: its bank's statistics need the trained model."""

    @abstractmethod
    def fit_memory(self, batches: Iterable[Tensor], n_images: int, seed: int = 0, progress: bool = True,
                   sharded: bool = False) -> int:
        """Fill the bank from ``batches`` of preprocessed images; returns the number of slots."""


class FrozenFeatureModel(ABC):
    """Trained to rebuild the features of a frozen backbone: :meth:`targets` depends on the image
    alone, so the detector computes it once per training image instead of once per epoch."""

    @abstractmethod
    def targets(self, x: Tensor) -> list[Tensor]:
        """The per-scale feature maps the model reconstructs (no gradient)."""
