"""A built-in synthetic surveillance set (nothing downloaded), deterministic from a seed.

A fixed textured background (a walkway between two lawns) seen from above; pedestrians are
textured upright blobs with a darker head that walk left-to-right at ~1 px/frame, each with a
lighter front side (so the walking direction shows even in one frame). Test videos start
normal and then one anomaly enters:

* ``fast``   — a pedestrian-like blob at 4 px/frame, smeared by motion blur (a cyclist);
* ``shape``  — a wide, flat box-shaped object (a cart) at normal speed;
* ``against``— a pedestrian walking right-to-left, against the flow.

Each test video has frame labels (1 while the anomaly is visible) and pixel masks, and is named
for its anomaly (``test00_fast``, ``test01_shape``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_ad.atomic import atomic_path
from inspect_ad.data.io import write_image
from inspect_ad.data.frames import Video, VideoSet

ANOMALY_KINDS = ("fast", "shape", "against")


@dataclass(frozen=True)
class SyntheticVideoConfig:
    """The built-in synthetic video set: walkers on a textured background; test videos turn
    anomalous (a fast mover, a cart-like shape, a walker against the flow) from a random frame on."""

    size: int = 64
    train_videos: int = 8
    test_videos: int = 12         # cycles through ANOMALY_KINDS: 4 videos of each
    frames: int = 80
    pedestrians: int = 3          # visible at once, on average
    speed: float = 1.0            # px / frame, normal walkers
    fast_speed: float = 4.0
    anomaly_start: tuple[int, int] = (25, 40)   # first anomalous frame drawn from this range


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), s / 16)
    bg = 0.45 + 0.08 * noise / (noise.std() + 1e-6)
    bg[: s // 4] -= 0.15          # lawn above the walkway
    bg[3 * s // 4:] -= 0.15       # lawn below
    bg += 0.03 * rng.normal(0, 1, (s, s))
    return np.clip(bg, 0, 1).astype(np.float32)


@dataclass
class _Walker:
    x: float
    y: float
    vx: float
    h: int
    w: int
    tone: float
    phase: float
    kind: str = "normal"


def _sprite(walker: _Walker) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) intensity and alpha of one object, drawn facing its direction of motion."""
    h, w = walker.h, walker.w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if walker.kind == "shape":
        alpha = np.ones((h, w), np.float32)
        img = np.full((h, w), walker.tone, np.float32) + 0.1 * ((xx // 3 + yy // 3) % 2)
        return img, alpha
    cy, cx = (h - 1) / 2, (w - 1) / 2
    alpha = (((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1).astype(np.float32)
    front = (xx - cx) / max(w / 2, 1) * np.sign(walker.vx)       # +1 on the front side
    stripes = 0.06 * np.sin(yy * 1.3 + walker.phase)
    img = walker.tone + 0.15 * front + stripes
    img[: max(2, h // 4)] = walker.tone - 0.25                      # the head
    return img, alpha


def _blur(img: np.ndarray, alpha: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.ones((1, length), np.float32) / length
    pad = ((0, 0), (length, length))
    img, alpha = np.pad(img * alpha, pad), np.pad(alpha, pad)
    a = cv2.filter2D(alpha, -1, kernel)
    return cv2.filter2D(img, -1, kernel) / np.maximum(a, 1e-6), a


def _paste(frame: np.ndarray, mask: np.ndarray | None, walker: _Walker, blur: int) -> None:
    img, alpha = _sprite(walker)
    if blur > 1:
        img, alpha = _blur(img, alpha, blur)
    h, w = img.shape
    x0, y0 = int(round(walker.x - w / 2)), int(round(walker.y - h / 2))
    s = frame.shape[0]
    fy, fx = slice(max(y0, 0), min(y0 + h, s)), slice(max(x0, 0), min(x0 + w, s))
    if fy.start >= fy.stop or fx.start >= fx.stop:
        return
    sy, sx = slice(fy.start - y0, fy.stop - y0), slice(fx.start - x0, fx.stop - x0)
    a = alpha[sy, sx]
    frame[fy, fx] = frame[fy, fx] * (1 - a) + img[sy, sx] * a
    if mask is not None:
        mask[fy, fx] |= a > 0.25


def _new_walker(rng: np.random.Generator, cfg: SyntheticVideoConfig, x: float, kind: str = "normal") -> _Walker:
    s = cfg.size
    h = int(round(s * rng.uniform(0.17, 0.22)))
    w = max(3, int(round(h * rng.uniform(0.4, 0.5))))
    vx = cfg.speed * rng.uniform(0.8, 1.2)
    if kind == "fast":
        vx = cfg.fast_speed
    elif kind == "against":
        vx = -vx
    elif kind == "shape":
        h, w = int(round(s * 0.14)), int(round(s * 0.3))
    y = rng.uniform(0.35, 0.65) * s
    return _Walker(x, y, vx, h, w, float(rng.uniform(0.65, 0.85)), float(rng.uniform(0, 6.3)), kind)


def _render(rng: np.random.Generator, cfg: SyntheticVideoConfig, anomaly: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s, n = cfg.size, cfg.frames
    bg = _background(rng, s)
    spacing = s / cfg.pedestrians
    walkers = [_new_walker(rng, cfg, x) for x in np.arange(-spacing / 2, s, spacing) + rng.uniform(0, spacing)]
    start = int(rng.integers(*cfg.anomaly_start)) if anomaly else n
    frames, masks, labels = np.zeros((n, s, s), np.uint8), np.zeros((n, s, s), bool), np.zeros(n, np.int64)
    odd = None
    for t in range(n):
        if t == start:
            odd = _new_walker(rng, cfg, s + 6 if anomaly == "against" else -6, anomaly)
            odd_area = (_sprite(odd)[1] > 0.25).sum()
        frame = bg.copy()
        for wk in walkers:
            _paste(frame, None, wk, 1)
        if odd is not None:
            _paste(frame, masks[t], odd, int(abs(odd.vx)) if odd.kind == "fast" else 1)
            odd.x += odd.vx
        # labelled once a third of the object is in view: a sliver at the border is not an event yet
        labels[t] = odd is not None and masks[t].sum() >= odd_area / 3
        frames[t] = np.clip((frame + 0.01 * rng.normal(0, 1, (s, s))) * 255, 0, 255).astype(np.uint8)
        for i, wk in enumerate(walkers):
            wk.x += wk.vx
            if wk.x - wk.w > s:            # left the scene: a new walker enters on the left
                walkers[i] = _new_walker(rng, cfg, -wk.w / 2 - rng.uniform(0, spacing / 2))
    return frames, masks, labels


def make_synthetic_video_set(seed: int = 0, config: SyntheticVideoConfig | None = None) -> VideoSet:
    """Training videos (normal only) and test videos with labels and masks, from ``seed``."""
    cfg = config or SyntheticVideoConfig()
    rng = np.random.default_rng(seed)
    train = [Video(f"train{i:02d}", array=_render(rng, cfg, None)[0]) for i in range(cfg.train_videos)]
    test = []
    for i in range(cfg.test_videos):
        kind = ANOMALY_KINDS[i % len(ANOMALY_KINDS)]
        frames, masks, labels = _render(rng, cfg, kind)
        test.append(Video(f"test{i:02d}_{kind}", array=frames, labels=labels, masks=masks))
    return VideoSet(f"synthetic-{seed}", train, test)


def write_frame_folders(videos: VideoSet, root) -> Path:
    """Write a set in the frame-folder layout (``training/frames``, ``testing/frames``,
    ``frame_labels_<name>.npy``), e.g. to try the real-data commands on the synthetic set."""
    root = Path(root)
    for split, vids in (("training", videos.train), ("testing", videos.test)):
        for v in vids:
            folder = root / split / "frames" / v.name
            folder.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(v.array):
                write_image(folder / f"{i:03d}.png", frame)
    if videos.test:
        with atomic_path(root / f"frame_labels_{videos.name}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.concatenate([v.labels for v in videos.test])[None])
    return root
