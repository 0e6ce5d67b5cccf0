"""The built-in dataset: MVTec-layout categories made from the real textures that ship with
scikit-image (nothing is downloaded), with synthetic defects and their exact masks.

Every image comes from its own random stream keyed by (seed, category, split, index), so
changing ``n_train`` never changes the test set and a category does not depend on which other
categories are generated with it.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage import color as skcolor
from skimage import data as skdata

from inspect_ad.errors import InspectError
from inspect_ad.data.io import write_image

log = logging.getLogger(__name__)

# A defect must change a pixel by more than this (0-255 levels, any channel) for the pixel to be
# in the mask: smaller changes (anti-aliased edges) are not visible on a textured background.
MIN_DIFF = 12
# Area bounds as fractions of the image; MVTec defects are mostly in this range.
MIN_AREA, MAX_AREA = 0.005, 0.08
# Mean change inside the mask that makes a defect clearly visible to a person.
MIN_MEAN_DIFF = 30.0
_MAX_TRIES = 50


@dataclass(frozen=True)
class _Texture:
    load: Callable[[], np.ndarray]
    dark: tuple[int, int, int]    # RGB of the texture's darkest tone
    light: tuple[int, int, int]   # RGB of its lightest tone
    crop: int                     # native crop side (px) before resizing to ``size``
    rot90: bool                   # brick courses have a direction; isotropic textures may rotate


_TEXTURES: dict[str, _Texture] = {
    "brick": _Texture(skdata.brick, (92, 34, 26), (236, 204, 172), 192, False),
    "gravel": _Texture(skdata.gravel, (38, 35, 31), (238, 230, 212), 160, True),
    "grass": _Texture(skdata.grass, (14, 42, 8), (188, 226, 112), 160, True),
}
CATEGORIES: tuple[str, ...] = tuple(_TEXTURES)
# Good images held out from training and testing, for setting PASS/FAIL thresholds.
CALIBRATION = "calibration"


@dataclass
class SyntheticSample:
    """One generated test image with its defect mask and label."""

    image: np.ndarray            # (H, W, 3) uint8 RGB
    mask: np.ndarray | None      # (H, W) uint8 0/255; None for good images
    label: str                   # 'good' or a defect type
    name: str                    # '<label>/<index:03d>', also the file stem in write_mvtec


@dataclass
class SyntheticCategory:
    """One generated category: good training images, test samples and further good images
    for calibration."""

    name: str
    train: list[np.ndarray]
    test: list[SyntheticSample]
    calibration: list[np.ndarray] = field(default_factory=list)


# ---------------------------------------------------------------- good images

@lru_cache(maxsize=None)
def _gray_texture(name: str) -> np.ndarray:
    """The texture as float in [0, 1], stretched by robust percentiles so palettes map alike."""
    g = _TEXTURES[name].load().astype(np.float32)
    lo, hi = np.percentile(g, [1, 99])
    return np.clip((g - lo) / (hi - lo), 0, 1)


def _tint(gray: np.ndarray, tex: _Texture) -> np.ndarray:
    dark, light = np.asarray(tex.dark, np.float32) / 255, np.asarray(tex.light, np.float32) / 255
    return dark + gray[..., None] * (light - dark)


def _good_image(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Float RGB in [0, 1]: a random crop with mild lighting jitter and flips."""
    tex, g = _TEXTURES[name], _gray_texture(name)
    y, x = rng.integers(0, g.shape[0] - tex.crop + 1), rng.integers(0, g.shape[1] - tex.crop + 1)
    crop = cv2.resize(g[y:y + tex.crop, x:x + tex.crop], (size, size), interpolation=cv2.INTER_AREA)
    contrast, brightness = rng.uniform(0.92, 1.08), rng.uniform(-0.04, 0.04)
    crop = np.clip((crop - crop.mean()) * contrast + crop.mean() + brightness, 0, 1)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    if tex.rot90:
        crop = np.rot90(crop, rng.integers(4))
    return _tint(np.ascontiguousarray(crop), tex)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- shapes

def _canvas(size: int) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def _draw_polyline(size: int, pts: list[np.ndarray], thickness: int) -> np.ndarray:
    """Anti-aliased polylines as an alpha map in [0, 1]."""
    canvas = _canvas(size)
    cv2.polylines(canvas, [np.rint(p).astype(np.int32) for p in pts], False, 255, thickness, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255


def _blob(rng: np.random.Generator, size: int, radius: float, roughness: float = 0.35) -> np.ndarray:
    """Hard mask of a star-shaped irregular blob: an ellipse with a smooth random radius."""
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = sum(rng.normal(0, roughness / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                 for k in range(2, 6))
    r = radius * np.clip(1 + wobble, 0.35, 1.8)
    aspect, angle = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    px, py = r * np.cos(theta), r * np.sin(theta) * aspect
    pts = np.stack([px * np.cos(angle) - py * np.sin(angle), px * np.sin(angle) + py * np.cos(angle)], 1)
    centre = rng.uniform(radius, size - radius, 2)
    canvas = _canvas(size)
    cv2.fillPoly(canvas, [np.rint(pts + centre).astype(np.int32)], 255, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255


def _soften(alpha: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(alpha, (0, 0), sigma)


# ---------------------------------------------------------------- defects
# Each defect returns (target, alpha): the defective image is img * (1 - alpha) + target * alpha,
# so pixels with alpha == 0 are untouched and the mask can be computed from the real difference.

def _scratch(img, rng, size):
    p0, p2 = rng.uniform(0.1, 0.9, (2, 2)) * size
    while np.linalg.norm(p2 - p0) < 0.35 * size:
        p2 = rng.uniform(0.1, 0.9, 2) * size
    p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * size, 2)
    t = np.linspace(0, 1, 40)[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    alpha = _draw_polyline(size, [curve], max(1, round(size / 96)))
    shade = 0.97 if rng.random() < 0.5 else 0.06
    return np.full_like(img, shade), alpha * rng.uniform(0.8, 1.0)


def _jagged_walk(rng, start, heading, steps, step_len):
    pts, pos = [start], start.copy()
    for _ in range(steps):
        heading += rng.normal(0, 0.45)
        pos = pos + step_len * np.array([np.cos(heading), np.sin(heading)])
        pts.append(pos)
    return np.array(pts)


def _crack(img, rng, size):
    step = size / 32
    main = _jagged_walk(rng, rng.uniform(0.2, 0.8, 2) * size, rng.uniform(0, 2 * np.pi),
                        int(rng.integers(10, 18)), step)
    branches = [_jagged_walk(rng, main[i].copy(), rng.uniform(0, 2 * np.pi), int(rng.integers(3, 8)), step)
                for i in rng.choice(np.arange(2, len(main) - 1), int(rng.integers(1, 4)), replace=False)]
    alpha = _draw_polyline(size, [main, *branches], max(1, round(size / 96)))
    return img * 0.15, alpha


def _hole(img, rng, size):
    canvas = _canvas(size)
    axes = (rng.uniform(0.05, 0.11, 2) * size).astype(int)
    centre = tuple(int(c) for c in rng.uniform(0.15, 0.85, 2) * size)
    cv2.ellipse(canvas, centre, tuple(int(a) for a in axes), rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
    alpha = _soften(canvas.astype(np.float32) / 255, size / 110)
    # A hole shows a dark interior with a little of the rim's texture left at its edge.
    return img * 0.1 + 0.02, alpha


def _stain(img, rng, size):
    alpha = _soften(_blob(rng, size, rng.uniform(0.07, 0.13) * size), size / 60)
    # A stain in the texture's own hue would be invisible, so its tone is drawn away from it.
    tone = rng.uniform(0, 1, 3)
    while np.linalg.norm(tone - img.mean((0, 1))) < 0.45:
        tone = rng.uniform(0, 1, 3)
    target = 0.4 * img + 0.6 * tone
    return target, alpha * rng.uniform(0.75, 0.95)


def _missing(img, rng, size):
    h, w = (rng.uniform(0.08, 0.22, 2) * size).astype(int)
    y, x = rng.integers(0, size - h), rng.integers(0, size - w)
    alpha = np.zeros((size, size), np.float32)
    alpha[y:y + h, x:x + w] = 1
    # Flat backing material: a tone far from the texture's mean so the gap is visible.
    level = rng.uniform(0.02, 0.12) if img.mean() > 0.45 else rng.uniform(0.85, 0.97)
    return np.full_like(img, level), alpha


def _displaced(img, rng, size):
    h, w = (rng.uniform(0.12, 0.24, 2) * size).astype(int)
    y, x = rng.integers(0, size - h), rng.integers(0, size - w)
    sy, sx = rng.integers(0, size - h), rng.integers(0, size - w)
    target = img.copy()
    target[y:y + h, x:x + w] = img[sy:sy + h, sx:sx + w]
    alpha = np.zeros((size, size), np.float32)
    alpha[y:y + h, x:x + w] = 1
    return target, alpha


def _color(img, rng, size):
    alpha = _soften(_blob(rng, size, rng.uniform(0.07, 0.13) * size), size / 120)
    hsv = skcolor.rgb2hsv(img)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(0.25, 0.75)) % 1
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3 + 0.3, 0, 1)
    return skcolor.hsv2rgb(hsv).astype(np.float32), alpha


Defect = Callable[[np.ndarray, np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
_DEFECTS: dict[str, Defect] = {
    "scratch": _scratch, "crack": _crack, "hole": _hole, "stain": _stain,
    "missing": _missing, "displaced": _displaced, "color": _color,
}
DEFECT_TYPES: tuple[str, ...] = tuple(_DEFECTS)


def _mask_from_change(clean: np.ndarray, defective: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Bool mask of materially changed pixels, as one region: closing and hole filling join a
    scratch's dashes or a pasted patch's coincidentally equal pixels, but never leave the area
    the defect touched (alpha > 0)."""
    changed = np.abs(defective.astype(np.int16) - clean.astype(np.int16)).max(-1) > MIN_DIFF
    region = ndi.binary_fill_holes(ndi.binary_closing(changed, np.ones((3, 3)), border_value=0))
    # ``| changed``: a closing with a zero border can erode changed pixels at the image edge.
    return (region | changed) & (alpha > 0)


def _acceptable(clean: np.ndarray, defective: np.ndarray, mask: np.ndarray) -> bool:
    area = mask.mean()
    if not MIN_AREA <= area <= MAX_AREA:
        return False
    diff = np.abs(defective.astype(np.int16) - clean.astype(np.int16)).max(-1)
    return float(diff[mask].mean()) >= MIN_MEAN_DIFF


def apply_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint one defect of type ``kind`` onto an (H, W, 3) uint8 RGB square image.

    Returns (defective uint8 image, uint8 0/255 mask). The mask holds every pixel the defect
    changed by more than ``MIN_DIFF`` levels and nothing the defect did not touch; shapes are
    redrawn from ``rng`` until the area is within [MIN_AREA, MAX_AREA] and clearly visible.
    """
    if kind not in _DEFECTS:
        raise InspectError(f"unknown defect type {kind!r}; choose one of: {', '.join(DEFECT_TYPES)}")
    size = image.shape[0]
    img = image.astype(np.float32) / 255
    for _ in range(_MAX_TRIES):
        target, alpha = _DEFECTS[kind](img, rng, size)
        defective = _to_uint8(img * (1 - alpha[..., None]) + target * alpha[..., None])
        mask = _mask_from_change(image, defective, alpha)
        if _acceptable(image, defective, mask):
            return defective, mask.astype(np.uint8) * 255
    raise RuntimeError(f"could not draw a visible {kind} defect in {_MAX_TRIES} tries")


# ---------------------------------------------------------------- categories

def _check_categories(categories) -> tuple[str, ...]:
    names = CATEGORIES if categories is None else tuple(categories)
    unknown = [c for c in names if c not in _TEXTURES]
    if unknown:
        raise InspectError(f"unknown synthetic category {', '.join(map(repr, unknown))}; "
                           f"choose from: {', '.join(CATEGORIES)}")
    return names


def _rng(seed: int, name: str, stream: str, index: int) -> np.random.Generator:
    """Independent stream per image; crc32 (not hash()) so it is stable across processes."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(stream.encode()), index])


def _good_uint8(name: str, stream: str, index: int, size: int, seed: int) -> np.ndarray:
    return _to_uint8(_good_image(name, _rng(seed, name, stream, index), size))


def make_category(name: str, *, n_train: int = 60, n_test_good: int = 20, n_test_per_defect: int = 4,
                  size: int = 128, seed: int = 0, n_calibration: int = 0) -> SyntheticCategory:
    """One category in memory: defect-free ``train`` images, a labelled ``test`` list (good
    first, then ``n_test_per_defect`` images of each type in ``DEFECT_TYPES``) and
    ``n_calibration`` further good images."""
    _check_categories([name])
    train = [_good_uint8(name, "train", i, size, seed) for i in range(n_train)]
    test = [SyntheticSample(_good_uint8(name, "test/good", i, size, seed), None, "good", f"good/{i:03d}")
            for i in range(n_test_good)]
    for kind in DEFECT_TYPES:
        for i in range(n_test_per_defect):
            clean = _good_uint8(name, f"test/{kind}", i, size, seed)
            image, mask = apply_defect(clean, kind, _rng(seed, name, f"defect/{kind}", i))
            test.append(SyntheticSample(image, mask, kind, f"{kind}/{i:03d}"))
    calibration = [_good_uint8(name, CALIBRATION, i, size, seed) for i in range(n_calibration)]
    return SyntheticCategory(name, train, test, calibration)


def _refuse_existing(folder: Path) -> None:
    if folder.is_dir() and any(folder.iterdir()):
        raise InspectError(f"{folder} already exists and is not empty; choose another --out or delete it")


def _write_category(root: Path, cat: SyntheticCategory) -> list[Path]:
    base = root / cat.name
    written = []
    for i, img in enumerate(cat.train):
        written.append(base / "train" / "good" / f"{i:03d}.png")
        write_image(written[-1], img)
    for s in cat.test:
        written.append(base / "test" / f"{s.name}.png")
        write_image(written[-1], s.image)
        if s.mask is not None:
            written.append(base / "ground_truth" / f"{s.name}_mask.png")
            write_image(written[-1], s.mask)
    for i, img in enumerate(cat.calibration):
        written.append(base / CALIBRATION / f"{i:03d}.png")
        write_image(written[-1], img)
    return written


def write_mvtec(root: str | Path, categories=None, *, n_train: int = 60, n_test_good: int = 20,
                n_test_per_defect: int = 4, size: int = 128, seed: int = 0, n_calibration: int = 0) -> list[Path]:
    """Write categories in the MVTec AD layout under ``root`` and return the files written:
    ``CAT/train/good/000.png``, ``CAT/test/{good,<defect>}/000.png``,
    ``CAT/ground_truth/<defect>/000_mask.png`` and, with ``n_calibration``, ``CAT/calibration/000.png``.
    Existing non-empty category folders are refused before anything is written."""
    root = Path(root)
    names = _check_categories(categories)
    for name in names:
        _refuse_existing(root / name)
    written = []
    for name in names:
        log.info("writing synthetic category %s to %s", name, root / name)
        cat = make_category(name, n_train=n_train, n_test_good=n_test_good,
                            n_test_per_defect=n_test_per_defect, size=size, seed=seed,
                            n_calibration=n_calibration)
        written += _write_category(root, cat)
    return written
