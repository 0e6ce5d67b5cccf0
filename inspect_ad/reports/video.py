"""Frame-level evaluation of a video model on labelled test videos: the pooled frame AUC (per-video
and fitted-range normalisation), the AUC inside each video, each score term's AUC and the speed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn
from tqdm import tqdm

from inspect_ad.data.frames import Video
from inspect_ad.detectors.video import VideoDetector
from inspect_ad.scoring.metrics import auroc
from inspect_ad.scoring.normalize import minmax
from inspect_ad.scoring.video import (RawScores, anomaly_score, load_frames, score_frames, scratch_memory,
                                      updates_at_test_time)


@dataclass
class VideoResult:
    """One test video's frame labels, raw measurements and scores (per-video and, when ranges
    were fitted, against the fitted ranges)."""

    name: str
    labels: np.ndarray
    raw: RawScores
    scores: np.ndarray
    scores_calibrated: np.ndarray | None


def evaluate_videos(model: nn.Module, videos: list[Video], ranges: dict | None = None,
                    test_time_update: bool = True) -> tuple[dict, list[VideoResult]]:
    """Frame-level AUC over all scored test frames, with per-video and (if given) fitted-range
    normalisation (reported as ``frame_auc_calibrated``, the name of the recorded tables); also
    the scoring speed in frames/s (model and scoring, not frame decoding)."""
    results, seconds = [], 0.0
    with scratch_memory(model):
        for video in tqdm(videos, desc="scoring", leave=False):
            raw = score_frames(model, load_frames(model, video), test_time_update)
            seconds += raw.seconds
            cal = anomaly_score(model, raw, ranges) if ranges else None
            results.append(VideoResult(video.name, video.labels, raw, anomaly_score(model, raw), cal))
    keep = [r.raw.scored for r in results]
    labels = np.concatenate([r.labels[k] for r, k in zip(results, keep)])

    def pooled_auc(score) -> float:
        return auroc(labels, np.concatenate([score(r)[k] for r, k in zip(results, keep)]))

    metrics = {"frame_auc": pooled_auc(lambda r: r.scores),
               "frames_scored": int(labels.size),
               "frames_total": int(sum(len(r.labels) for r in results)),
               "fps": float(labels.size / seconds) if seconds else None,
               "test_time_update": bool(test_time_update and updates_at_test_time(model))}
    if ranges:
        metrics["frame_auc_calibrated"] = pooled_auc(lambda r: r.scores_calibrated)
    metrics["per_video_auc"] = per_video_auc(results)
    if not np.isnan(results[0].raw.distance).all():
        # Each term of the MNAD / prototype score alone (per-video g): which one carries the detection.
        metrics["term_auc"] = {"psnr": pooled_auc(lambda r: 1 - minmax(r.raw.psnr)),
                               "distance": pooled_auc(lambda r: minmax(r.raw.distance))}
    return metrics, results


def per_video_auc(results: list[VideoResult]) -> dict[str, float]:
    """Frame AUC inside each video that has both normal and anomalous scored frames. Min–max
    normalisation does not change it, so it shows how well a model separates the frames of one
    video apart from how the videos' score ranges line up in the pooled AUC."""
    out = {}
    for r in results:
        keep = r.raw.scored
        if r.labels is not None and 0 < r.labels[keep].sum() < keep.sum():
            out[r.name] = auroc(r.labels[keep], r.scores[keep])
    return out


def evaluate(det: VideoDetector, videos: list[Video]) -> tuple[dict, list[VideoResult]]:
    """:func:`evaluate_videos` of a fitted detector: its model, fitted ranges and test-time update."""
    det.check_is_fitted()
    return evaluate_videos(det.model_, videos, det.ranges_, det.test_time_update)
