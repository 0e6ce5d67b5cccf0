"""Issue 19: every detector asked for scores, decisions or a save before fit says so in one line
(NotFittedError, scikit-learn's name; an AttributeError too, as scikit-learn's is)."""
import numpy as np
import pytest

from inspect_ad.detectors.base import BaseDetector
from inspect_ad.detectors.image import Detector
from inspect_ad.detectors.oneclass import OneClassDetector
from inspect_ad.detectors.tabular import TabularDetector
from inspect_ad.detectors.video import VideoDetector
from inspect_ad.errors import InspectError, NotFittedError

DETECTORS = {  # an unfitted detector and an input it would take once fitted
    "image": (lambda: Detector("mmae", 32), [np.zeros((32, 32), np.uint8)]),
    "one-class": (lambda: OneClassDetector("memae_mnist"), np.zeros((2, 1, 28, 28), np.float32)),
    "tabular": (lambda: TabularDetector("memae_fc"), np.zeros((2, 120), np.float32)),
}


CALLS = {
    "score_samples": lambda det, x, tmp_path: det.score_samples(x),
    "predict": lambda det, x, tmp_path: det.predict(x),
    "save": lambda det, x, tmp_path: det.save(tmp_path / "bundle"),
}


CASES = [pytest.param(make, x, call, id=f"{d}-{c}") for d, (make, x) in DETECTORS.items() for c, call in CALLS.items()]


@pytest.mark.parametrize("make,x,call", CASES)
def test_use_before_fit_is_one_line_not_fitted_error(tmp_path, make, x, call):
    det = make()
    with pytest.raises(NotFittedError) as e:
        call(det, x, tmp_path)
    assert isinstance(e.value, AttributeError)
    message = str(e.value)
    assert "\n" not in message and "fit" in message and type(det).__name__ in message, message
    assert not (tmp_path / "bundle").exists()


class _Fixed(BaseDetector):
    """A detector whose scores and screening are given: the base class's decisions alone."""

    family = "test"

    def __init__(self, scores, invalid=None, threshold=1.0):
        self.model_, self.calibration_ = object(), {"image_threshold": threshold}
        self.scores, self.invalid = np.asarray(scores, dtype=np.float64), invalid

    def score_samples(self, X):
        return self.scores

    def _screened_scores(self, X):
        return self.scores, self.invalid


def test_predict_fails_scores_above_the_threshold_and_not_a_number():
    assert _Fixed([0.5, 1.0, 1.5, np.nan]).predict(None).tolist() == ["PASS", "PASS", "FAIL", "FAIL"]


def test_the_invalid_hook_overrides_the_score():
    det = _Fixed([0.5, 1.5, np.nan], invalid=np.array([True, True, False]))
    assert det.predict(None).tolist() == ["INVALID", "INVALID", "FAIL"]


@pytest.mark.parametrize("cls", [Detector, VideoDetector, TabularDetector, OneClassDetector])
def test_every_detector_takes_its_threshold_and_decisions_from_the_base_class(cls):
    assert "threshold_" not in vars(cls) and "predict" not in vars(cls)


def test_a_detector_without_a_threshold_says_how_to_calibrate():
    det = _Fixed([0.5])
    det.calibration_ = None
    with pytest.raises(InspectError, match="no threshold yet; calibrate it"):
        det.predict(None)
