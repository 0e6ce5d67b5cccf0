"""The shape every detector has, whatever it inspects (images, video frames, table rows).

``fit(normal data)`` → ``score_samples(X)`` → ``threshold_`` (set by ``calibrate`` on normal data
the fit did not see) → ``predict(X)`` (a :class:`~inspect_ad.scoring.calibration.Decision` per
sample), and ``save(path)`` / ``load(path)`` as a bundle (safetensors + JSON, no pickle).

The contract, for every family:

* **Sign.** ``score_samples`` returns one float per sample, and a higher score is more anomalous
  (the opposite of scikit-learn's ``score_samples``, where higher is more normal): a sample fails
  when its score is above ``threshold_``, or is not a number.
* **One input type per detector.** ``score_samples``, ``calibrate`` and ``predict`` take the same
  ``X``, a collection of samples: image files or arrays (:class:`~inspect_ad.Detector`), videos
  whose frames are the samples (:class:`~inspect_ad.VideoDetector`), rows of a 2-D array
  (:class:`~inspect_ad.TabularDetector`), or an (N, C, H, W) array (:class:`~inspect_ad.OneClassDetector`).
* **Decisions.** ``predict`` gives "PASS", "FAIL", or "INVALID" where a detector can tell that a
  sample is no plausible input at all (:meth:`BaseDetector._screened_scores` is the hook; only
  the image detector screens its inputs today).
* **Fitted state** ends with ``_`` and is declared on the class (None until fitted), so a detector
  used before ``fit`` says so in one line (:class:`~inspect_ad.errors.NotFittedError`) instead of
  failing with an AttributeError somewhere inside.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inspect_ad.checks import Options
from inspect_ad.detectors.bundle import Bundle, load_bundle
from inspect_ad.training.device import resolve_device
from inspect_ad.errors import InspectError, NotFittedError
from inspect_ad.models import list_models
from inspect_ad.scoring.calibration import CALIBRATION_CONSTRAINTS, TARGET_FRR, conformal_threshold, decisions


class BaseDetector:
    """Mixin for detector dataclasses: the threshold, the decisions and the fitted-state guard.

    Subclasses declare ``model_`` and ``calibration_`` (``field(default=None, init=False)``) and
    implement ``fit``, ``score_samples``, ``save`` and ``load``; one that can tell an input is not
    plausible overrides :meth:`_screened_scores`.

    Attributes
    ----------
    family : str
        The detector's kind as a user reads it in messages ("image", "video", ...).
    registry_family : str
        The model registry's name for the models this detector takes (:func:`inspect_ad.models.list_models`).
    model_ : torch.nn.Module or None
        The fitted model; None until ``fit`` or ``load``.
    calibration_ : dict or None
        The calibration section (``image_threshold``, ``target_frr``, ``n``, ...), set by
        :meth:`calibrate`; None until then.
    threshold_ : float
        The score above which a sample fails (read-only, from ``calibration_``).
    """

    family: str = ""
    registry_family: str = ""   # the registry's name for the models this detector takes
    model_: Any = None
    calibration_: dict | None = None

    def _check_model_name(self) -> None:
        Options(*list_models(self.registry_family)).check(f"{self.family} model", self.model)

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
        """Fit on normal data only; returns the detector."""
        raise NotImplementedError

    def score_samples(self, X) -> np.ndarray:
        """One anomaly score per sample of ``X``, as float64: higher = more anomalous."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "BaseDetector":
        raise NotImplementedError

    def _calibration_scores(self, X) -> np.ndarray:
        return np.asarray(self.score_samples(X), dtype=np.float64)

    def calibrate(self, X, target_frr: float = TARGET_FRR) -> dict:
        """A threshold from normal data the fit did not see, with the split-conformal guarantee
        of :mod:`inspect_ad.scoring.calibration`; returns the calibration section. It is kept in
        memory: ``save(path)`` writes it into a bundle."""
        CALIBRATION_CONSTRAINTS["target_frr"].check("target_frr", target_frr)
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

    def _screened_scores(self, X) -> tuple[np.ndarray, np.ndarray | None]:
        """The INVALID hook: the scores :meth:`predict` judges and, per sample, whether it is no
        plausible input at all (None: this family does not screen its inputs). A detector that
        screens overrides this, scoring and screening in one pass over ``X``."""
        return self.score_samples(X), None

    def predict(self, X) -> np.ndarray:
        """One :class:`~inspect_ad.Decision` per sample, as a numpy string array: "FAIL" where the
        score is above ``threshold_`` or not a number, "INVALID" where the sample is no plausible
        input (see :meth:`_screened_scores`), else "PASS". ``pred == "FAIL"`` and
        ``pred == Decision.FAIL`` both give the booleans."""
        threshold = self.threshold_
        scores, invalid = self._screened_scores(X)
        return decisions(~(np.asarray(scores, dtype=np.float64) <= threshold), invalid)
