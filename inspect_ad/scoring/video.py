"""Per-frame scoring of the video anomaly models: the clips each frame is scored from, the raw
measurements and the anomaly score they make.

Which frame a clip scores (and so which frames get no score):

* ``memae3d``: the 16-frame cuboid centred on frame u (frames u-8 .. u+7), clamped to the video
  at its ends so every frame is scored (MemAE §4.2: "the cuboid centering on it").
* ``mnad-recon``: the frame itself, every frame scored.
* ``mnad-pred`` / ``prototype``: frames u-4 .. u-1 predict frame u; the first 4 frames of each
  video have no score and are left out of the AUC, as in the MNAD authors' evaluation code.

Scores (higher = more anomalous):

* MemAE: g(e_u), e_u the cuboid's reconstruction MSE (MemAE eq. 11 is 1 − this).
* MNAD / prototype: λ(1 − g(PSNR)) + (1 − λ) g(D) (MNAD eq. 16, Lai et al. eq. 25 written as
  1 − regularity); without memory, 1 − g(PSNR) (MNAD Table 2's baseline).

``g`` is either the papers' min–max normalisation over each test video ("per-video") or a
min–max over *score ranges* fitted once on normal training videos ("fitted ranges"), which
scores a single clip without seeing the rest of its video. (Older bundles call those ranges
"calibration"; in this project calibration means a pass/fail threshold, as for images.)
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from inspect_ad.data.frames import Video
from inspect_ad.errors import InspectError
from inspect_ad.models.video import MNAD, MemAE3D, per_sample_distance
from inspect_ad.scoring.metrics import psnr
from inspect_ad.scoring.normalize import minmax
from inspect_ad.training.batches import clip_batch
from inspect_ad.training.device import model_device

PSNR_CAP = 100.0   # dB for a perfect prediction, so min–max stays finite


# ---- what each model scores ------------------------------------------------------------------

def scores_cuboids(model: nn.Module) -> bool:
    """MemAE-3D scores a frame by the reconstruction error of the cuboid centred on it; the 2D
    models by the PSNR of the frame they rebuild or predict (and the memory distance)."""
    return isinstance(model, MemAE3D)


def updates_at_test_time(model: nn.Module) -> bool:
    """MNAD's items follow the test video (§3.1); MemAE's and the prototype model's memories are fixed."""
    return isinstance(model, MNAD) and model.memory is not None


# ---- clips ---------------------------------------------------------------------------------

def load_frames(model: nn.Module, video: Video) -> np.ndarray:
    c = model.config
    frames = video.frames(c.image_size, c.in_channels)
    if len(frames) < c.clip_length:
        raise InspectError(f"video {video.name} has {len(frames)} frames; "
                           f"this model needs at least {c.clip_length} per clip")
    return frames


def scored_clips(model: nn.Module, n_frames: int) -> list[tuple[int, int]]:
    """(frame index, clip start) for every frame the model scores (see module docstring)."""
    length = model.config.clip_length
    if scores_cuboids(model):
        return [(u, min(max(u - length // 2, 0), n_frames - length)) for u in range(n_frames)]
    return [(s + length - 1, s) for s in range(n_frames - length + 1)]


# ---- scoring -------------------------------------------------------------------------------

@dataclass
class RawScores:
    """Per-frame raw measurements of one video; NaN where a frame has no clip.
    psnr: dB of the reconstructed / predicted frame (MNAD, prototype).
    distance: mean query-to-nearest-item distance (eq. 14 / 22), NaN without memory.
    error: MemAE cuboid MSE.
    """

    psnr: np.ndarray
    distance: np.ndarray
    error: np.ndarray
    seconds: float = 0.0

    @property
    def scored(self) -> np.ndarray:
        return ~(np.isnan(self.psnr) & np.isnan(self.error))


def regular_score(prediction: Tensor, target: Tensor) -> Tensor:
    """MNAD eq. 6–7 per sample on [0, 1] images: Σ W_ij ‖Î−I‖²_ij with W = normalised 1 − e^{−err}."""
    err = ((prediction - target) / 2).pow(2).flatten(1)
    w = 1 - torch.exp(-err)
    return (w * err).sum(1) / w.sum(1).clamp_min(1e-12)


def frame_psnr(prediction: Tensor, target: Tensor) -> list[float]:
    pairs = zip(((prediction + 1) / 2).cpu().numpy(), ((target + 1) / 2).cpu().numpy())
    return [min(psnr(p, t, data_range=1.0), PSNR_CAP) for p, t in pairs]


@contextlib.contextmanager
def scratch_memory(model: nn.Module):
    """Test-time updates write into the items; restore them afterwards so scoring never
    changes the saved model."""
    memory = getattr(model, "memory", None)
    saved = memory.items.detach().clone() if hasattr(memory, "items") else None
    try:
        yield
    finally:
        if saved is not None:
            with torch.no_grad():
                memory.items.copy_(saved)


@torch.no_grad()
def score_frames(model: nn.Module, frames: np.ndarray, test_time_update: bool = True,
                 batch_size: int = 8) -> RawScores:
    """Raw per-frame measurements of one video (frames from :func:`load_frames`).

    ``test_time_update`` (MNAD §3.1): after each batch, frames whose regular score is below γ
    update the items. The authors update frame by frame; a batch of 8 updates once per 8 frames,
    which is faster and, with γ gating each frame, changes little (pass batch_size=1 to match).
    """
    model.eval()
    n = len(frames)
    raw = RawScores(*(np.full(n, np.nan) for _ in range(3)))
    clips = scored_clips(model, n)
    gate = model.config.update_threshold if updates_at_test_time(model) else None
    dev = model_device(model)
    start = time.perf_counter()
    for i in range(0, len(clips), batch_size):
        chunk = clips[i:i + batch_size]
        clip = clip_batch([frames], [(0, s) for _, s in chunk], model.config.clip_length).to(dev)
        x, targets = model.split_clip(clip)
        out = model(x)
        target, at = targets["target"], [u for u, _ in chunk]
        if scores_cuboids(model):
            raw.error[at] = (out.prediction - target).pow(2).flatten(1).mean(1).cpu().numpy()
            continue
        raw.psnr[at] = frame_psnr(out.prediction, target)
        dist = per_sample_distance(model, out, len(chunk))
        if dist is not None:
            raw.distance[at] = dist.cpu().numpy()
        if test_time_update and gate is not None and out.queries is not None:
            normal = regular_score(out.prediction, target) < gate
            if normal.any():
                model.memory.update(out.queries.reshape(len(chunk), -1, out.queries.shape[-1])[normal].flatten(0, 1))
    raw.seconds = time.perf_counter() - start
    return raw


def anomaly_score(model: nn.Module, raw: RawScores, ranges: dict | None = None) -> np.ndarray:
    """Per-frame anomaly score; per-video min–max unless ``ranges`` ({measure: [lo, hi]})."""
    g = (lambda k, v: minmax(v, *ranges[k])) if ranges else (lambda k, v: minmax(v))
    if scores_cuboids(model):
        return g("error", raw.error)
    recon = 1 - g("psnr", raw.psnr)
    if np.isnan(raw.distance).all():
        return recon
    lam = model.config.score_weight
    return lam * recon + (1 - lam) * g("distance", raw.distance)


def score_ranges(model: nn.Module, videos: list[Video], max_videos: int = 4) -> dict:
    """Min and max of each raw measurement over (up to ``max_videos``) normal training videos,
    scored without test-time updates, for :func:`anomaly_score`'s fitted-range mode."""
    raws = [score_frames(model, load_frames(model, v), test_time_update=False) for v in videos[:max_videos]]
    out = {}
    for key in ("psnr", "distance", "error"):
        vals = np.concatenate([getattr(r, key) for r in raws])
        if not np.isnan(vals).all():
            out[key] = [float(np.nanmin(vals)), float(np.nanmax(vals))]
    return out
