"""The shape every detector has, whatever it inspects (images, video frames, table rows):

``fit(normal data)`` → ``score_samples(X)`` (higher = more anomalous) → ``threshold_`` (set by
``calibrate`` on normal data the fit did not see) → ``predict(X)`` (a
:class:`~inspect_ad.scoring.calibration.Decision` per sample: "PASS" or "FAIL"), and
``save(path)`` / ``load(path)`` as a bundle (safetensors + JSON, no pickle).

Fitted state ends with ``_`` and is declared on the class (None until fitted), so a detector
used before ``fit`` says so in one line (:class:`~inspect_ad.errors.NotFittedError`) instead of
failing with an AttributeError somewhere inside.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inspect_ad.detectors.bundle import Bundle, load_bundle
from inspect_ad.engine.device import resolve_device
from inspect_ad.errors import ConfigError, InspectError, NotFittedError
from inspect_ad.models import list_models
from inspect_ad.scoring.calibration import conformal_threshold, decisions


class BaseDetector:
    """Mixin for detector dataclasses; subclasses declare ``model_`` and ``calibration_``
    (``field(default=None, init=False)``) and implement fit, score_samples, save and load."""

    family: str = ""
    registry_family: str = ""   # the registry's name for the models this detector takes
    model_: Any = None
    calibration_: dict | None = None

    def _check_model_name(self) -> None:
        names = list_models(self.registry_family)
        if self.model not in names:
            raise ConfigError(f"unknown {self.family} model {self.model!r}; choose one of: {', '.join(names)}")

    @classmethod
    def _load(cls, path: str | Path, device: str) -> Bundle:
        """The bundle at ``path``, refused in one line when it holds another family's model."""
        b = load_bundle(path, resolve_device(device))
        names = list_models(cls.registry_family)
        if b.name not in names:
            article = "an" if cls.family[0] in "aeiou" else "a"
            raise InspectError(f"{path} holds a {b.name!r} model, not {article} {cls.family} model "
                               f"({', '.join(names)}); use the command made for it (e.g. 'inspect-ad video')")
        return b

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

    def _calibration_scores(self, X) -> np.ndarray:
        return np.asarray(self.score_samples(X), dtype=np.float64)

    def calibrate(self, X, target_frr: float = 0.01) -> dict:
        """A threshold from normal data the fit did not see, with the split-conformal guarantee
        of :mod:`inspect_ad.scoring.calibration`; returns the calibration section. It is kept in
        memory: ``save(path)`` writes it into a bundle."""
        scores = self._calibration_scores(X)
        self.calibration_ = {"image_threshold": conformal_threshold(scores, target_frr), "target_frr": target_frr,
                             "n": int(scores.size)}
        return self.calibration_

    @property
    def threshold_(self) -> float:
        """The score above which a sample fails, from :meth:`calibrate`."""
        self.check_is_fitted()
        if not self.calibration_:
            raise InspectError(f"the {self.family} model has no threshold yet; calibrate it on normal data "
                               f"the fit did not see ('inspect-ad calibrate', or calibrate(...))")
        return float(self.calibration_["image_threshold"])

    def predict(self, X) -> np.ndarray:
        """"FAIL" where a sample's score is above the threshold or not a number, else "PASS": a numpy
        string array of :class:`~inspect_ad.Decision` values (``pred == "FAIL"`` and
        ``pred == Decision.FAIL`` both give the booleans)."""
        threshold = self.threshold_
        return decisions(~(np.asarray(self.score_samples(X), dtype=np.float64) <= threshold))
