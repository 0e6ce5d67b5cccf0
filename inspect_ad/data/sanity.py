"""Is an image a plausible photo of a part at all? A camera or lighting failure (a black, blank
or blown-out frame) reconstructs easily and would otherwise PASS; such an image is judged
INVALID instead, counted apart from PASS and FAIL.

At fit, :func:`input_stats` records the training images' range of mean grey level, their
smallest contrast and their largest fraction of clipped (0 or 255) pixels; :func:`input_problem`
flags an image far outside that range. Bundles without the record get the fixed checks only.

Both judge the picture at 8 bits (:func:`~inspect_ad.data.io.to_uint8`), whatever the file's depth:
a 16-bit pixel is saturated when it reads 255 there (65407 and above), black when it reads 0.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from inspect_ad.data.io import to_uint8

BLANK_STD = 0.5        # grey levels: below this an 8-bit frame is one flat value
CLIPPED_FRACTION = 0.5  # more than half the pixels at 0 or 255: under- or overexposed
MEAN_MARGIN = 32.0     # grey levels a part's mean may lie outside the training range, at least


def _measure(img: np.ndarray) -> tuple[float, float, float]:
    img = np.ascontiguousarray(to_uint8(img))
    # OpenCV's mean and standard deviation of the uint8 values: 30× numpy's on a float copy
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(img.reshape(-1, 1)))
    return mean, std, float(np.count_nonzero((img == 0) | (img == 255)) / img.size)


def _colour(img: np.ndarray) -> float:
    """Mean difference between an image's channels, in 8-bit grey levels: 0 for a grey image."""
    if img.ndim < 3 or img.shape[2] == 1:
        return 0.0
    img = to_uint8(img).astype(np.int16)
    return float(np.abs(img[..., 0] - img[..., 1]).mean() + np.abs(img[..., 1] - img[..., 2]).mean()) / 2


def input_stats(images: Sequence[np.ndarray]) -> dict:
    """What the training images (uint8 or uint16) look like, for :func:`input_problem` and
    :func:`calibration_problem`."""
    means, stds, clipped = zip(*(_measure(im) for im in images))
    heights, widths = zip(*(im.shape[:2] for im in images))
    return {"mean_min": min(means), "mean_max": max(means), "std_min": min(stds), "clipped_max": max(clipped),
            "height_min": min(heights), "height_max": max(heights), "width_min": min(widths),
            "width_max": max(widths), "colour_min": min(map(_colour, images))}


def input_problem(img: np.ndarray, stats: dict | None = None) -> str | None:
    """Why ``img`` (uint8 or uint16, as read) is not a plausible input, or None if it is."""
    mean, std, clipped = _measure(img)
    stats = stats or {}
    if std < min(BLANK_STD, stats.get("std_min", BLANK_STD) / 4):
        return f"blank frame (every pixel about {mean:.0f}); check the camera and lighting"
    if clipped > max(CLIPPED_FRACTION, stats.get("clipped_max", 0.0) + 0.25):
        return f"{clipped:.0%} of the pixels are black or saturated; check the exposure"
    if "mean_min" in stats:
        margin = max(MEAN_MARGIN, stats["mean_max"] - stats["mean_min"])
        if not stats["mean_min"] - margin <= mean <= stats["mean_max"] + margin:
            return (f"mean grey level {mean:.0f} is far outside the training images' "
                    f"{stats['mean_min']:.0f}-{stats['mean_max']:.0f}; check the camera and lighting")
    return None


CALIBRATION_MARGIN = 16.0   # grey levels a calibration image's mean may lie outside the training range, at least
SIZE_FACTOR = 1.5           # how much larger or smaller than the training images' sides a calibration image's may be


def calibration_problem(img: np.ndarray, stats: dict | None, channels: int) -> str | None:
    """Why ``img`` should not set the thresholds of a model trained on images like ``stats``
    (:func:`input_stats`), or None. Stricter than :func:`input_problem`: a calibration set of
    another kind (grey photos for a colour model, another camera, other lighting) moves the
    threshold for every part judged afterwards; 7 of 7 defects passed after a grey calibration."""
    stats = stats or {}
    grey = _colour(img) == 0.0
    if channels == 3 and grey and stats.get("colour_min", 1.0) > 0:
        return "a grey image, and the model was trained on colour images"
    mean = _measure(img)[0]
    if "mean_min" in stats:
        margin = max(CALIBRATION_MARGIN, (stats["mean_max"] - stats["mean_min"]) / 2)
        if not stats["mean_min"] - margin <= mean <= stats["mean_max"] + margin:
            return (f"mean grey level {mean:.0f}, and the training images' was {stats['mean_min']:.0f}-"
                    f"{stats['mean_max']:.0f}")
    if "height_min" in stats:
        (h, w), f = img.shape[:2], SIZE_FACTOR
        if not (stats["height_min"] / f <= h <= stats["height_max"] * f
                and stats["width_min"] / f <= w <= stats["width_max"] * f):
            return (f"{w}×{h} pixels, and the training images were {stats['width_min']}-{stats['width_max']} × "
                    f"{stats['height_min']}-{stats['height_max']}")
    return None
