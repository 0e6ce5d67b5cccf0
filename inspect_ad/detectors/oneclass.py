"""One-class image detection with MemAE's image networks (Gong et al., ICCV 2019, §4.1): train on
one class's images, score every image by its reconstruction error.

Images here are small in-memory arrays (N, C, H, W) in [0, 1] (MNIST, CIFAR-10), not files: the
whole training set sits on the model's device and batches are drawn from it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from inspect_ad.checks import Options
from inspect_ad.detectors.base import BaseDetector
from inspect_ad.detectors.bundle import save_bundle
from inspect_ad.detectors.presets import oneclass_train_config
from inspect_ad.training.batches import TensorBatches
from inspect_ad.training.device import model_device, resolve_device
from inspect_ad.training.loop import TrainConfig, train
from inspect_ad.training.objectives import memae_objective
from inspect_ad.errors import InspectError
from inspect_ad.models import create_model, make_config
from inspect_ad.scoring.normalize import minmax

log = logging.getLogger(__name__)

ERRORS = ("mse", "relative")
ERROR = Options(*ERRORS)


def _on_model_device(model: nn.Module, images: np.ndarray) -> Tensor:
    """The whole (small) image array on the model's device, moved once rather than per batch."""
    return torch.as_tensor(images).to(model_device(model))


@torch.no_grad()
def reconstruction_errors(model: nn.Module, images: np.ndarray, batch_size: int = 256,
                          error: str = "mse") -> np.ndarray:
    """Per-image mean squared reconstruction error (eq. 8 up to a constant). ``error="relative"``
    divides it by the image's mean squared intensity: the squared error grows with the amount of
    ink (a thick 8 leaves more error than a thin 1 however well both are rebuilt); the relative
    error takes that size effect out (on MNIST it helps some digits and hurts others: mnist.md)."""
    ERROR.check("error", error)
    model.eval()
    x = _on_model_device(model, images)
    errs = []
    for i in torch.arange(len(x)).split(batch_size):
        e = ((model(x[i]).reconstruction - x[i]) ** 2).flatten(1).mean(1)
        errs.append(e / (x[i] ** 2).flatten(1).mean(1).clamp_min(1e-12) if error == "relative" else e)
    return torch.cat(errs).cpu().numpy().astype(np.float64)


@torch.no_grad()
def slots_read(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> float:
    """Mean number of memory slots with a non-zero weight per query: how sparse the addressing
    the paper's shrinkage (eq. 7) and entropy loss (eq. 9) aim for really is."""
    if model.memory is None:
        raise InspectError("this model has no memory")
    model.eval()
    x = _on_model_device(model, images)
    counts = [(model(x[i]).weights[0] > 0).sum(1).float() for i in torch.arange(len(x)).split(batch_size)]
    return float(torch.cat(counts).mean())


def scale_scores(errors: np.ndarray) -> np.ndarray:
    """§4.1: reconstruction errors min-max scaled to [0, 1] over the test set (1 = most anomalous)."""
    return minmax(errors)


@dataclass
class OneClassDetector(BaseDetector):
    """One-class detection on small in-memory images (MNIST, CIFAR-10) with MemAE's image networks.

    Parameters
    ----------
    model : str, default "memae_mnist"
        A registered one-class network ("memae_mnist", "ae_cifar10", ...).
    config : dataclass or None, default None
        Its config; None: the registered one with ``model_options``.
    model_options : dict
        The model config's options (when ``config`` is None).
    train_config : TrainConfig, default :func:`oneclass_train_config`
        MemAE §4's optimisation (Adam, lr 1e-4, no weight decay).
    error : {"mse", "relative"}, default "mse"
        The score: mean squared reconstruction error, or that divided by the image's mean
        squared intensity (:func:`reconstruction_errors`).

    Attributes
    ----------
    model_ : torch.nn.Module or None
        The fitted network (the weights of the epoch with the lowest validation error).
    history_ : list of dict
        Per-epoch training and validation losses.
    calibration_ : dict or None
        The threshold from :meth:`calibrate`.

    ``score_samples(images)`` takes an (N, C, H, W) float array in [0, 1] (higher = more anomalous).
    """

    model: str = "memae_mnist"
    config: Any = None
    model_options: dict = field(default_factory=dict)
    train_config: TrainConfig = field(default_factory=oneclass_train_config)
    error: str = "mse"

    model_: nn.Module | None = field(default=None, init=False, repr=False)
    history_: list[dict] = field(default_factory=list, init=False, repr=False)
    calibration_: dict | None = field(default=None, init=False, repr=False)
    family, registry_family = "one-class", "oneclass"

    def __post_init__(self):
        self._check_model_name()
        ERROR.check("error", self.error)

    def fit(self, images: np.ndarray, validation: np.ndarray, progress: bool = False) -> "OneClassDetector":
        """Adam on eq. 10 over normal ``images``; keeps the weights of the epoch with the lowest
        reconstruction error on ``validation`` (the 10% held out in §4.1)."""
        tc = self.train_config
        torch.manual_seed(tc.seed)
        config = self.config if self.config is not None else make_config(self.model, **self.model_options)
        model = create_model(self.model, config).to(resolve_device(tc.device))
        x = _on_model_device(model, images)
        self.history_ = train(model, TensorBatches(x, tc.batch_size, tc.seed), tc,
                              memae_objective(model.config.entropy_weight),
                              validate=lambda m: reconstruction_errors(m, validation).mean(), progress=progress)
        self.model_ = model
        return self

    def score_samples(self, images: np.ndarray) -> np.ndarray:
        self.check_is_fitted()
        return reconstruction_errors(self.model_, images, error=self.error)

    def save(self, path: str | Path) -> Path:
        self.check_is_fitted()
        return save_bundle(path, self.model_, self.model, self.model_.config,
                           training=self.train_config.to_dict(), scoring={"error": self.error},
                           **({"calibration": self.calibration_} if self.calibration_ else {}))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "OneClassDetector":
        b = cls._load(path, device)
        det = cls(b.name, b.config, error=b.sections.get("scoring", {}).get("error", "mse"),
                  train_config=TrainConfig.from_saved(b.sections.get("training", {})))
        det.model_, det.calibration_ = b.model, b.sections.get("calibration")
        return det
