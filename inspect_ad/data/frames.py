"""In-memory videos: a :class:`Video` (frame paths or an array, plus labels) and a
:class:`VideoSet` (training and test videos). Frames are decoded only when a model asks for
them, at the size it asks for."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspect_ad.data.io import read_image, to_uint8
from inspect_ad.errors import InspectError


@dataclass
class Video:
    """One video: ``paths`` to its frames or an ``array`` (T, H, W[, C]) uint8; ``labels`` (T,)
    0/1 for test videos (None for training videos); optional pixel ``masks`` (T, H, W)."""

    name: str
    paths: list[Path] = field(default_factory=list)
    array: np.ndarray | None = None
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.paths)

    def frames(self, size: int, channels: int = 1) -> np.ndarray:
        """(T, channels, size, size) float32 in [-1, 1] (the MNAD / Lai et al. input range)."""
        raw = self.array if self.array is not None else [to_uint8(read_image(p)) for p in self.paths]
        return np.stack([_prepare(f, size, channels) for f in raw])


def _prepare(frame: np.ndarray, size: int, channels: int) -> np.ndarray:
    frame = frame if frame.ndim == 3 else frame[:, :, None]
    if frame.shape[2] == 3 and channels == 1:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)[:, :, None]
    elif frame.shape[2] == 1 and channels == 3:
        frame = np.repeat(frame, 3, axis=2)
    if frame.shape[:2] != (size, size):
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        frame = frame if frame.ndim == 3 else frame[:, :, None]
    return frame.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0


@dataclass
class VideoSet:
    """A video data set: normal training videos and (labelled) test videos."""

    name: str
    train: list[Video]
    test: list[Video]

    def require_test(self) -> "VideoSet":
        if not self.test or any(v.labels is None for v in self.test):
            raise InspectError(f"{self.name}: evaluation needs test videos with frame labels; "
                               "add frame_labels_*.npy (frame folders) or Test/*.m (UCSD original)")
        return self

    def require_train(self) -> "VideoSet":
        if not self.train:
            raise InspectError(f"{self.name}: no training videos found; expected "
                               "training/frames/<video>/*.jpg or Train/Train001/*.tif")
        return self
