"""Issue 19: every detector asked for scores, decisions or a save before fit says so in one line
(NotFittedError, scikit-learn's name; an AttributeError too, as scikit-learn's is)."""
import numpy as np
import pytest

from inspect_ad.detectors.image import Detector
from inspect_ad.detectors.oneclass import OneClassDetector
from inspect_ad.detectors.tabular import TabularDetector
from inspect_ad.errors import NotFittedError

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
