"""Pictures for people: heatmap overlays, curves and galleries (matplotlib, Agg backend)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from inspect_ad.atomic import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _show_image(ax, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.axis("off")


def heat_overlay(ax, image: np.ndarray, amap: np.ndarray, vmax: float, mask: np.ndarray | None = None):
    _show_image(ax, image)
    im = ax.imshow(amap, cmap="jet", alpha=0.45, vmin=0.0, vmax=vmax)
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=1.0)
    return im


def save_overlay(path: str | Path, image: np.ndarray, amap: np.ndarray, vmax: float, title: str = "",
                 mask: np.ndarray | None = None) -> None:
    """Image | heatmap over image with a colour bar (and the defect contour when given)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    _show_image(axes[0], image)
    axes[0].set_title("input")
    im = heat_overlay(axes[1], image, amap, vmax, mask)
    axes[1].set_title(title or "anomaly map")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04, label="anomaly score")
    _save(fig, path)


def color_overlay(image: np.ndarray, amap: np.ndarray, vmax: float, alpha: float = 0.45) -> np.ndarray:
    """Fast RGB overlay without matplotlib (for thumbnails in batch reports)."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    heat = cv2.applyColorMap((np.clip(amap / max(vmax, 1e-12), 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(rgb, 1 - alpha, heat[:, :, ::-1], alpha, 0)


def save_curve(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
               title: str, xlim: float | None = None) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label)
    if xlim is not None:
        ax.set_xlim(0, xlim)
        ax.axvline(xlim, color="grey", lw=0.5)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def save_gallery(path: str | Path, rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
                 vmax: float, title: str = "") -> None:
    """Rows of (caption, image, map, mask): image above its heatmap overlay."""
    n = max(len(rows), 1)
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    for j, (caption, image, amap, mask) in enumerate(rows):
        _show_image(axes[0, j], image)
        axes[0, j].set_title(caption, fontsize=7)
        heat_overlay(axes[1, j], image, amap, vmax, mask)
    for j in range(len(rows), n):
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
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
