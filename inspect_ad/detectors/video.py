"""The video anomaly models as detectors: training on normal videos, the fitted score ranges, and
per-frame scores (how a frame is scored: :mod:`inspect_ad.scoring.video`; frame-level evaluation:
:mod:`inspect_ad.reports.video`)."""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn

from inspect_ad.data.frames import Video
from inspect_ad.detectors.base import BaseDetector
from inspect_ad.detectors.bundle import save_bundle
from inspect_ad.detectors.presets import VIDEO_MODEL, video_train_config
from inspect_ad.models import create_model, make_config
from inspect_ad.scoring.video import RawScores, anomaly_score, load_frames, score_frames, score_ranges
from inspect_ad.training.batches import ClipBatches
from inspect_ad.training.device import describe_device, resolve_device, seed_everything
from inspect_ad.training.loop import TrainConfig, train
from inspect_ad.training.objectives import VideoObjective

log = logging.getLogger(__name__)

# ---- the detector --------------------------------------------------------------------------

def as_videos(videos: Video | Sequence[Video]) -> list[Video]:
    """The detector's input: a list of videos, whose frames are the samples. One Video alone was
    ``score_samples``'s input before every method took the same type; it still works, with a
    FutureWarning."""
    if isinstance(videos, Video):
        warnings.warn("VideoDetector.score_samples, calibrate and predict take a list of videos; passing one "
                      "Video alone is deprecated and will stop working: pass [video]", FutureWarning, stacklevel=3)
        return [videos]
    return list(videos)


@dataclass
class VideoDetector(BaseDetector):
    """A video model as one object: ``fit`` on normal videos (which also fits the score ranges),
    ``score_samples(videos)`` per frame (NaN where a frame has no clip), ``calibrate`` a frame
    threshold on normal videos the fit did not see, ``predict(videos)`` per frame
    (:func:`inspect_ad.reports.video.evaluate_videos` evaluates it on labelled test videos). Every
    method takes a list of videos; their frames are the samples.

    Parameters
    ----------
    model : str, default ``presets.VIDEO_MODEL`` ("mnad-pred")
        The video model: "memae3d", "mnad-recon", "mnad-pred" or "prototype".
    model_options : dict
        The model config's options (a preset's: :func:`~inspect_ad.detectors.presets.video_preset`).
    train_config : TrainConfig, default ``video_train_config(VIDEO_MODEL)``
        Optimisation settings (:func:`~inspect_ad.detectors.presets.video_train_config` gives each preset's).
    test_time_update : bool, default True
        MNAD's memory update while scoring labelled test videos in evaluation (§3.1).

    Attributes
    ----------
    model_ : torch.nn.Module or None
        The fitted model.
    history_ : list of dict
        Per-epoch training losses.
    ranges_ : dict or None
        Min and max of each raw measurement on normal training videos, for scoring a video
        without seeing the rest of it ("fitted ranges").
    calibration_ : dict or None
        The frame threshold from :meth:`calibrate`.
    training_info_ : dict
        What the fit recorded (settings, data, time, device).
    """

    model: str = VIDEO_MODEL
    model_options: dict = field(default_factory=dict)
    train_config: TrainConfig = field(default_factory=lambda: video_train_config(VIDEO_MODEL))
    test_time_update: bool = True

    model_: nn.Module | None = field(default=None, init=False, repr=False)
    history_: list[dict] = field(default_factory=list, init=False, repr=False)
    ranges_: dict | None = field(default=None, init=False, repr=False)
    calibration_: dict | None = field(default=None, init=False, repr=False)
    training_info_: dict = field(default_factory=dict, init=False, repr=False)
    family = registry_family = "video"

    def __post_init__(self):
        self._check_model_name()

    def fit(self, videos: list[Video], progress: bool = True, **info) -> "VideoDetector":
        """Train on normal ``videos`` (the memory updates of MNAD eq. 3 / Lai et al. eq. 12 after
        every step), then fit the score ranges on (up to 4 of) them. ``info`` (data, preset)
        is stored in the bundle's training section."""
        tc = self.train_config
        device = resolve_device(tc.device)
        seed_everything(tc.seed)
        model = create_model(self.model, make_config(self.model, **self.model_options)).to(device)
        frames = [load_frames(model, v) for v in videos]
        start = time.perf_counter()
        self.history_ = train(model, ClipBatches(frames, model.config.clip_length, tc.batch_size, tc.seed), tc,
                              VideoObjective(), progress=progress)
        seconds = time.perf_counter() - start
        self.model_ = model
        self.ranges_ = score_ranges(model, videos)
        self.training_info_ = {**tc.to_dict(), **info, "seconds": round(seconds, 1),
                               "ran_on": describe_device(device)}
        return self

    def score_frames(self, video: Video) -> RawScores:
        """Raw per-frame measurements, without test-time memory updates (the saved model stays as it is)."""
        self.check_is_fitted()
        return score_frames(self.model_, load_frames(self.model_, video), test_time_update=False)

    def score_samples(self, videos: Sequence[Video]) -> np.ndarray:
        """Per-frame anomaly scores against the fitted ranges, the videos' frames one after the
        other (NaN where a frame has no clip); higher = more anomalous."""
        return np.concatenate([anomaly_score(self.model_, self.score_frames(v), self.ranges_)
                               for v in as_videos(videos)])

    def _calibration_scores(self, videos: Sequence[Video]) -> np.ndarray:
        """calibrate() takes normal videos: the scores of their scored frames."""
        scores = self.score_samples(videos)
        return scores[np.isfinite(scores)]

    def save(self, path: str | Path) -> Path:
        self.check_is_fitted()
        return save_bundle(path, self.model_, self.model, self.model_.config,
                           training={**self.training_info_, "history": self.history_}, score_ranges=self.ranges_,
                           **({"calibration": self.calibration_} if self.calibration_ else {}))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "VideoDetector":
        b = cls._load(path, device)
        training = b.sections.get("training", {})
        det = cls(b.name, train_config=TrainConfig.from_saved(training))
        det.model_, det.training_info_ = b.model, {k: v for k, v in training.items() if k != "history"}
        det.ranges_, det.calibration_ = _ranges_and_threshold(b.sections)
        return det


def _ranges_and_threshold(sections: dict) -> tuple[dict | None, dict | None]:
    """Bundles before the detector kept the score ranges under "calibration"."""
    if "score_ranges" in sections:
        return sections["score_ranges"], sections.get("calibration")
    old = sections.get("calibration")
    return (old, None) if old and "image_threshold" not in old else (None, old)
