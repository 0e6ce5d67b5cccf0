"""Training, per-frame scoring and frame-level evaluation of the video anomaly models.

Which frame a clip scores (and so which frames get no score):

* ``memae3d``: the 16-frame cuboid centred on frame u (frames u-8 .. u+7), clamped to the video
  at its ends so every frame is scored (seed 000 §4.2: "the cuboid centering on it").
* ``mnad-recon``: the frame itself, every frame scored.
* ``mnad-pred`` / ``prototype``: frames u-4 .. u-1 predict frame u; the first 4 frames of each
  video have no score and are left out of the AUC, as in the MNAD authors' evaluation code.

Scores (higher = more anomalous):

* MemAE: g(e_u), e_u the cuboid's reconstruction MSE (seed 000 eq. 11 is 1 − this).
* MNAD / seed 003: λ(1 − g(PSNR)) + (1 − λ) g(D) (seed 001 eq. 16, seed 003 eq. 25 written as
  1 − regularity); without memory, 1 − g(PSNR) (MNAD Table 2's baseline).

``g`` is either the papers' min–max normalisation over each test video ("per_video") or a
min–max calibrated once on normal training videos ("calibrated"), which scores a single clip
without seeing the rest of its video.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from inspect_ad.data.video import Video
from inspect_ad.errors import InspectError
from inspect_ad.scoring.metrics import auroc, psnr
from inspect_ad.models import create_model, make_config
from inspect_ad.models.video import MNAD, MemAE3D, per_sample_distance, update_memory, video_loss
from inspect_ad.engine.device import model_device, resolve_device, seed_everything

log = logging.getLogger(__name__)

RECIPES = ("memae3d", "mnad-recon", "mnad-pred", "prototype")
SETTINGS = ("paper", "cpu", "tiny")
PSNR_CAP = 100.0   # dB for a perfect prediction, so min–max stays finite

# Training settings per recipe. "paper": the papers' settings (GPU-sized, not run here);
# "cpu": a 2-core CPU budget (64×64 grey, narrow nets); "tiny": the synthetic set and tests
# (64×64, the synthetic frames' own size, for 2D models; 32×32 cuboids for MemAE-3D).
_CPU_2D = dict(image_size=64, in_channels=1, widths=(8, 16, 32, 64))
_TINY_2D = dict(image_size=64, in_channels=1, widths=(8, 16, 16, 32), learning_rate=1e-3)
RECIPE_SETTINGS: dict[str, dict[str, dict]] = {
    "memae3d": {
        "paper": dict(model={}, epochs=60, batch_size=4),   # epochs: not given in §4.2
        # 10 epochs: at 3 the memory model scored below its no-memory ablation (ped2.md)
        "cpu": dict(model=dict(image_size=64, widths=(8, 16, 32, 32)), epochs=10, batch_size=4),
        "tiny": dict(model=dict(image_size=32, widths=(8, 16, 16, 16), memory_slots=50), epochs=4, batch_size=4),
    },
    "mnad-recon": {
        "paper": dict(model={}, epochs=60, batch_size=4),   # §4.1: 60 epochs on Ped2, batch 4
        # 3 epochs: 10 scored lower with and without memory (0.809 / 0.737 vs 0.882 / 0.859, ped2.md)
        "cpu": dict(model=dict(_CPU_2D, learning_rate=2e-4), epochs=3, batch_size=4),
        "tiny": dict(model=_TINY_2D, epochs=10, batch_size=8),
    },
    "mnad-pred": {
        "paper": dict(model={}, epochs=60, batch_size=4),
        "cpu": dict(model=_CPU_2D, epochs=10, batch_size=4),    # 10: +0.055 AUC over 3 (ped2.md)
        "tiny": dict(model=_TINY_2D, epochs=10, batch_size=8),
    },
    "prototype": {
        "paper": dict(model={}, epochs=60, batch_size=4),   # epochs: not given in §III-E
        "cpu": dict(model=_CPU_2D, epochs=10, batch_size=4),    # 10: +0.04 AUC over 3 (ped2.md)
        "tiny": dict(model=dict(_TINY_2D, memory_slots=20), epochs=6, batch_size=8),
    },
}


def recipe_setting(recipe: str, setting: str) -> dict:
    if recipe not in RECIPE_SETTINGS:
        raise InspectError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
    if setting not in SETTINGS:
        raise InspectError(f"unknown setting {setting!r}; choose one of: {', '.join(SETTINGS)}")
    return RECIPE_SETTINGS[recipe][setting]


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
    if isinstance(model, MemAE3D):
        return [(u, min(max(u - length // 2, 0), n_frames - length)) for u in range(n_frames)]
    return [(s + length - 1, s) for s in range(n_frames - length + 1)]


def _clip_batch(frames: list[np.ndarray], index: list[tuple[int, int]], length: int) -> Tensor:
    return torch.from_numpy(np.stack([frames[v][s:s + length] for v, s in index]))


# ---- training ------------------------------------------------------------------------------

@dataclass
class FitResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def fit_video_model(name: str, videos: list[Video], epochs: int, batch_size: int = 4, seed: int = 0,
                    max_steps_per_epoch: int | None = None, device: str | torch.device = "auto",
                    **overrides) -> FitResult:
    """Train registered video model ``name`` on normal ``videos`` (Adam, cosine annealing as
    MNAD §4.1; the memory updates of MNAD eq. 3 / seed 003 eq. 12 after every step) on
    ``device`` (see :func:`~inspect_ad.engine.loop.resolve_device`)."""
    dev = resolve_device(device)
    seed_everything(seed)
    model = create_model(name, make_config(name, **overrides)).to(dev)
    frames = [load_frames(model, v) for v in videos]
    length = model.config.clip_length
    index = [(v, s) for v, f in enumerate(frames) for s in range(len(f) - length + 1)]
    steps = math.ceil(len(index) / batch_size)
    steps = min(steps, max_steps_per_epoch) if max_steps_per_epoch else steps
    opt = torch.optim.Adam(model.parameters(), lr=model.config.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps))
    result, start = FitResult(model), time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        sums: dict[str, float] = {}
        for step in tqdm(range(steps), desc=f"{name} epoch {epoch + 1}/{epochs}", leave=False):
            batch = _clip_batch(frames, [index[i] for i in order[step * batch_size:(step + 1) * batch_size]],
                                length).to(dev)
            x, targets = model.split_clip(batch)
            out = model(x)
            loss, logs = video_loss(model, out, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            update_memory(model, out)
            for k, v in {"loss": float(loss.detach()), **logs}.items():
                sums[k] = sums.get(k, 0.0) + v
        result.history.append({k: v / steps for k, v in sums.items()})
        log.info("%s epoch %d: %s", name, epoch + 1, result.history[-1])
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


# ---- scoring -------------------------------------------------------------------------------

@dataclass
class RawScores:
    """Per-frame raw measurements of one video; NaN where a frame has no clip.
    psnr: dB of the reconstructed / predicted frame (MNAD, seed 003).
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
    gate = getattr(model.config, "update_threshold", None) if isinstance(model, MNAD) else None
    dev = model_device(model)
    start = time.perf_counter()
    for i in range(0, len(clips), batch_size):
        chunk = clips[i:i + batch_size]
        clip = _clip_batch([frames], [(0, s) for _, s in chunk], model.config.clip_length).to(dev)
        x, targets = model.split_clip(clip)
        out = model(x)
        target, at = targets["target"], [u for u, _ in chunk]
        if isinstance(model, MemAE3D):
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


def minmax(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """g(·): (x − min) / (max − min), with min/max from ``values`` (NaN ignored) unless given."""
    lo = np.nanmin(values) if lo is None else lo
    hi = np.nanmax(values) if hi is None else hi
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def anomaly_score(model: nn.Module, raw: RawScores, calibration: dict | None = None) -> np.ndarray:
    """Per-frame anomaly score; per-video min–max unless ``calibration`` ({measure: [lo, hi]})."""
    g = (lambda k, v: minmax(v, *calibration[k])) if calibration else (lambda k, v: minmax(v))
    if isinstance(model, MemAE3D):
        return g("error", raw.error)
    recon = 1 - g("psnr", raw.psnr)
    if np.isnan(raw.distance).all():
        return recon
    lam = model.config.score_weight
    return lam * recon + (1 - lam) * g("distance", raw.distance)


def calibrate(model: nn.Module, videos: list[Video], max_videos: int = 4) -> dict:
    """Min and max of each raw measurement over (up to ``max_videos``) normal training videos,
    scored without test-time updates, for :func:`anomaly_score`'s calibrated mode."""
    raws = [score_frames(model, load_frames(model, v), test_time_update=False) for v in videos[:max_videos]]
    out = {}
    for key in ("psnr", "distance", "error"):
        vals = np.concatenate([getattr(r, key) for r in raws])
        if not np.isnan(vals).all():
            out[key] = [float(np.nanmin(vals)), float(np.nanmax(vals))]
    return out


@dataclass
class VideoResult:
    name: str
    labels: np.ndarray
    raw: RawScores
    scores: np.ndarray
    scores_calibrated: np.ndarray | None


def evaluate_videos(model: nn.Module, videos: list[Video], calibration: dict | None = None,
                    test_time_update: bool = True) -> tuple[dict, list[VideoResult]]:
    """Frame-level AUC over all scored test frames, with per-video and (if given) calibrated
    normalisation; also the scoring speed in frames/s (model and scoring, not frame decoding)."""
    results, seconds = [], 0.0
    with scratch_memory(model):
        for video in tqdm(videos, desc="scoring", leave=False):
            raw = score_frames(model, load_frames(model, video), test_time_update)
            seconds += raw.seconds
            cal = anomaly_score(model, raw, calibration) if calibration else None
            results.append(VideoResult(video.name, video.labels, raw, anomaly_score(model, raw), cal))
    keep = [r.raw.scored for r in results]
    labels = np.concatenate([r.labels[k] for r, k in zip(results, keep)])

    def pooled_auc(score) -> float:
        return auroc(labels, np.concatenate([score(r)[k] for r, k in zip(results, keep)]))

    metrics = {"frame_auc": pooled_auc(lambda r: r.scores),
               "frames_scored": int(labels.size),
               "frames_total": int(sum(len(r.labels) for r in results)),
               "fps": float(labels.size / seconds) if seconds else None,
               "test_time_update": bool(test_time_update and isinstance(model, MNAD) and model.memory is not None)}
    if calibration:
        metrics["frame_auc_calibrated"] = pooled_auc(lambda r: r.scores_calibrated)
    metrics["per_video_auc"] = per_video_auc(results)
    if not np.isnan(results[0].raw.distance).all():
        # Each term of the MNAD / seed 003 score alone (per-video g): which one carries the detection.
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


def save_score_plot(path, results: list[VideoResult], title: str = "") -> None:
    """One panel per video: the anomaly score with anomalous frames shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inspect_ad.atomic import atomic_path
    cols = min(4, len(results))
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.2 * rows), squeeze=False)
    for ax, r in zip(axes.flat, results):
        t = np.arange(len(r.scores))
        if r.labels is not None:
            ax.fill_between(t, 0, 1, where=r.labels > 0, color="tab:red", alpha=0.2, step="mid")
        ax.plot(t, r.scores, lw=1, label="per-video")
        if r.scores_calibrated is not None:
            ax.plot(t, np.clip(r.scores_calibrated, 0, 1), lw=1, label="calibrated (clipped)")
        ax.set_title(r.name, fontsize=8)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
