"""inspect-ad: industrial visual inspection with memory-augmented autoencoders.

The public API, importable from here (loaded on first use, so ``import inspect_ad`` stays light):
the detectors (:class:`Detector` for images, :class:`VideoDetector`, :class:`TabularDetector`,
:class:`OneClassDetector`), the settings they take (:class:`TrainConfig`, :class:`MapConfig`) and
the :class:`Decision` their ``predict`` returns (PASS, FAIL, INVALID; ERROR in reports).
"""
import importlib
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_PUBLIC = {
    "Detector": "inspect_ad.detectors.image",
    "VideoDetector": "inspect_ad.detectors.video",
    "TabularDetector": "inspect_ad.detectors.tabular",
    "OneClassDetector": "inspect_ad.detectors.oneclass",
    "TrainConfig": "inspect_ad.training.loop",
    "MapConfig": "inspect_ad.scoring.anomaly_map",
    "Decision": "inspect_ad.scoring.calibration",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'inspect_ad' has no attribute {name!r}")
