"""The shape every detector has, whatever it inspects (images, video frames, table rows):

``fit(normal data)`` → ``score_samples(X)`` (higher = more anomalous) → ``threshold_`` (set by
``calibrate`` on normal data the fit did not see) → ``predict(X)`` (True where a sample
fails), and ``save(path)`` / ``load(path)`` as a bundle (safetensors + JSON, no pickle).

Fitted state ends with ``_`` and is declared on the class (None until fitted), so a detector
used before ``fit`` says so in one line (:class:`~inspect_ad.errors.NotFittedError`) instead of
failing with an AttributeError somewhere inside.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inspect_ad.errors import InspectError, NotFittedError


class BaseDetector:
    """Mixin for detector dataclasses; subclasses declare ``model_`` and ``calibration_``
    (``field(default=None, init=False)``) and implement fit, score_samples, save and load."""

    family: str = ""
    model_: Any = None
    calibration_: dict | None = None

    def check_is_fitted(self) -> None:
        if self.model_ is None:
            name = type(self).__name__
            raise NotFittedError(f"this {name} is not fitted yet; call fit(...) first, or {name}.load(bundle)")

    def fit(self, *args, **kwargs) -> "BaseDetector":
        raise NotImplementedError

    def score_samples(self, X) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "BaseDetector":
        raise NotImplementedError

    @property
    def threshold_(self) -> float:
        """The score above which a sample fails, from :meth:`calibrate`."""
        self.check_is_fitted()
        if not self.calibration_:
            raise InspectError(f"the {self.family} model has no threshold yet; calibrate it on normal data "
                               f"the fit did not see ('inspect-ad calibrate', or calibrate(...))")
        return float(self.calibration_["image_threshold"])

    def predict(self, X) -> np.ndarray:
        """True where a sample fails: its score is above the threshold or not a number."""
        threshold = self.threshold_
        return ~(np.asarray(self.score_samples(X), dtype=np.float64) <= threshold)
