"""Pictures for people: heatmap overlays, curves and galleries (matplotlib, Agg backend)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from inspect_ad.atomic import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from inspect_ad.detectors.image import Detector

HEAT_CMAP = "jet"      # the colours of the batch reports' OpenCV thumbnails (COLORMAP_JET)
CAPTION_PT = 10        # readable at the saved size (100 dpi)


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _show_image(ax, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.axis("off")


@dataclass(frozen=True)
class ColourScale:
    """A heatmap colour bar: 0 to ``vmax`` in the model's own map units (its image score's too,
    except with ``standardize="score"``), with the calibrated pixel ``threshold`` marked when
    there is one."""
    vmax: float
    threshold: float | None = None
    label: str = "anomaly map value"


def colour_scale(det: "Detector") -> ColourScale:
    """The colour bar for ``det``'s heatmaps: 0 to twice the 99th percentile of its training
    images' map values (``det.reference_["pixel_p99"]``, measured at fit).

    The range depends on the training images only, so a map value has the same colour on every
    image, before and after calibration. The pixel threshold, when calibrated, is marked on it:
    at the default 1% target it is the 99th percentile of held-out good images' map values, so
    it usually lands near the middle, with good pixels below and defects towards the top.
    Values above the range saturate (the bar's arrow); a threshold above it is named at the top.
    """
    threshold = (det.calibration_ or {}).get("pixel_threshold")
    units = "z-score vs. training maps" if det.map_config.standardize == "map" else f"{det.model} map units"
    return ColourScale(2.0 * float(det.reference_["pixel_p99"]),
                       None if threshold is None else float(threshold), f"anomaly map value ({units})")


def _scale(scale: ColourScale | float) -> ColourScale:
    """A bare number is a range from 0 with no threshold marked."""
    return scale if isinstance(scale, ColourScale) else ColourScale(float(scale))


def heat_overlay(ax, image: np.ndarray, amap: np.ndarray, scale: ColourScale, mask: np.ndarray | None = None):
    _show_image(ax, image)
    ax.imshow(amap, cmap=HEAT_CMAP, alpha=0.45, vmin=0.0, vmax=scale.vmax)
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=1.0)


def colour_bar(fig, scale: ColourScale, ax=None, cax=None):
    """The bar of ``scale`` beside ``ax`` (or in ``cax``), opaque so its colours can be read, with
    the threshold as a dashed line and a tick of its own."""
    mappable = ScalarMappable(Normalize(0.0, scale.vmax), HEAT_CMAP)
    bar = fig.colorbar(mappable, ax=ax, cax=cax, fraction=0.046, pad=0.04, extend="max")
    bar.set_label(scale.label)
    ticks = [v for v in bar.get_ticks() if 0 <= v <= scale.vmax]
    labels = [f"{v:g}" for v in ticks]
    if scale.threshold is not None:
        at = min(scale.threshold, scale.vmax)
        bar.ax.axhline(at, color="white", lw=3)
        bar.ax.axhline(at, color="black", lw=1.2, ls="--")
        # auto ticks close to the threshold's would print over its label
        near = [abs(v - at) < 0.15 * scale.vmax for v in ticks]
        ticks = [v for v, n in zip(ticks, near) if not n] + [at]
        labels = [t for t, n in zip(labels, near) if not n] + [
            f"threshold\n{scale.threshold:.3g}" + ("" if scale.threshold <= scale.vmax else "\n(above scale)")]
    bar.set_ticks(ticks, labels=labels)
    return bar


def save_overlay(path: str | Path, image: np.ndarray, amap: np.ndarray, scale: ColourScale | float,
                 title: str = "", mask: np.ndarray | None = None) -> None:
    """Image | heatmap over image with a colour bar (and the defect contour when given);
    ``scale``: :func:`colour_scale` of the detector."""
    scale = _scale(scale)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    _show_image(axes[0], image)
    axes[0].set_title("input")
    heat_overlay(axes[1], image, amap, scale, mask)
    axes[1].set_title(title or "anomaly map")
    colour_bar(fig, scale, ax=axes[1])
    _save(fig, path)


def color_overlay(image: np.ndarray, amap: np.ndarray, vmax: float, alpha: float = 0.45) -> np.ndarray:
    """Fast RGB overlay without matplotlib (for thumbnails in batch reports)."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    heat = cv2.applyColorMap((np.clip(amap / max(vmax, 1e-12), 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(rgb, 1 - alpha, heat[:, :, ::-1], alpha, 0)


def save_curve(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
               title: str, chance: str | None = None, limit: float | None = None) -> None:
    """``curves``: legend entry -> (x, y). ``chance`` labels a dashed diagonal y = x (a random
    scorer's ROC, and its PRO curve); ``limit`` marks an integration limit on x and ends the axis
    just past it."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, (x, y) in curves.items():
        ax.plot(x, y, lw=1.5, label=label)
    if chance is not None:
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label=chance)
    if limit is not None:
        ax.axvline(limit, color="black", ls=":", lw=1.2, label=f"integration limit (FPR {limit:g})")
    ax.set_xlim(0, 1 if limit is None else min(1.0, limit * 1.1))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.set_title(title, fontsize=12)
    ax.grid(alpha=0.3)
    # below the axes: inside, with several models, it would cover curves or the chance line
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=10, frameon=False)
    _save(fig, path)


def save_gallery(path: str | Path, rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
                 scale: ColourScale, title: str = "") -> None:
    """Columns of (caption, image, map, mask): the image above its heatmap overlay, one colour
    bar for all of them."""
    n = max(len(rows), 1)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n + 1.6, 5.6), squeeze=False,   # + 1.6 in: the colour bar
                             gridspec_kw={"hspace": 0.08, "top": 0.82})             # room for 3-line captions
    for j, (caption, image, amap, mask) in enumerate(rows):
        _show_image(axes[0, j], image)
        axes[0, j].set_title(caption, fontsize=CAPTION_PT)
        heat_overlay(axes[1, j], image, amap, scale, mask)
    for j in range(len(rows), n):
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    right = axes[1, -1].get_position()     # beside the heatmap row only
    colour_bar(fig, scale, cax=fig.add_axes([right.x1 + 0.01, right.y0, 0.012, right.height]))
    if title:
        fig.suptitle(title, fontsize=CAPTION_PT + 2)
    _save(fig, path)


def save_score_plot(path, results: Sequence, title: str = "") -> None:
    """One panel per video (:class:`~inspect_ad.detectors.video.VideoResult`): the anomaly score
    with anomalous frames shaded."""
    cols = min(4, len(results))
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.2 * rows), squeeze=False)
    for ax, r in zip(axes.flat, results):
        t = np.arange(len(r.scores))
        if r.labels is not None:
            ax.fill_between(t, 0, 1, where=r.labels > 0, color="tab:red", alpha=0.2, step="mid")
        ax.plot(t, r.scores, lw=1, label="per-video")
        if r.scores_calibrated is not None:
            ax.plot(t, np.clip(r.scores_calibrated, 0, 1), lw=1, label="fitted ranges (clipped)")
        ax.set_title(r.name, fontsize=8)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
