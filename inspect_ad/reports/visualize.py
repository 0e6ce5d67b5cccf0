"""Pictures for people: heatmap overlays, curves and galleries (matplotlib, Agg backend)."""
from __future__ import annotations

import json
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

HEAT_CMAP = "jet"
CAPTION_PT = 10        # readable at the saved size (100 dpi)
AT_ONE = 2 / 3         # where 1.0 (the threshold) sits on every colour bar: the colour map's orange
# the colour map as 256 RGB entries: matplotlib's pictures, the reports' OpenCV thumbnails and the
# page's legend all colour a value the same way
HEAT_LUT = (matplotlib.colormaps[HEAT_CMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


PICTURE_INFO = "Description"   # the PNG text key of what a picture shows, as JSON (see picture_info)


def _save(fig, path: str | Path, info: dict | list | None = None) -> None:
    """``info``: what the picture shows (decisions, normalised scores, the highest value drawn),
    kept in the PNG as text so that what a picture claims can be checked against its decision."""
    metadata = {PICTURE_INFO: json.dumps(info)} if info is not None else None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", metadata=metadata)
    plt.close(fig)


def shown(amap: np.ndarray, scale: "ColourScale", mask: np.ndarray | None = None, **judged) -> dict:
    """A picture's info: the highest value it draws (scale units), whether it outlines regions, and
    ``judged`` (decision, normalized)."""
    return {"max_shown": round(float(np.nanmax(scale.values(amap))), 6),
            "regions": bool(mask is not None and mask.any()), **judged}


def _show_image(ax, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.axis("off")


@dataclass(frozen=True)
class ColourScale:
    """A heatmap colour scale in decision units: map values are divided by ``unit`` (the image
    threshold, once calibrated), so 1.0 is the FAIL line; the bar runs from ``vmin`` (where good
    parts' maps typically lie: dark blue) to ``vmax``, chosen so that 1.0 always sits at two
    thirds of it (orange, red above); ``marks`` are (value, label) lines drawn on it."""
    unit: float
    label: str = "anomaly map"
    marks: tuple[tuple[float, str], ...] = ()
    vmin: float = 0.0

    @property
    def vmax(self) -> float:
        return self.vmin + (1.0 - self.vmin) / AT_ONE

    def values(self, amap: np.ndarray) -> np.ndarray:
        return np.asarray(amap, dtype=np.float32) / np.float32(self.unit)

    def to_dict(self) -> dict:
        """For the report page's legend: the bar's range, label, marks and colours (hex, vmin to vmax)."""
        return {"vmin": self.vmin, "vmax": self.vmax, "label": self.label, "marks": [list(m) for m in self.marks],
                "colours": ["#%02x%02x%02x" % tuple(int(c) for c in HEAT_LUT[i]) for i in range(0, 256, 17)]}


def colour_scale(det: "Detector") -> ColourScale:
    """The colour scale of ``det``'s heatmaps, the same in every picture (segment, evaluate's
    gallery, the demo, the QA report's thumbnails and legend).

    Calibrated, with the score the map's maximum (``pooling="max"``): the map ÷ the image
    threshold, so a part FAILs exactly when its heatmap goes above the 1.0 line somewhere; the pixel
    threshold, where the outlines are drawn, is marked too. Calibrated with another score (mean
    pooling, a z-scored score): the map ÷ the pixel threshold. Not calibrated: the map ÷ the
    highest score of the training images (measured at fit), labelled as such: there is no
    decision to show yet. The bar starts at the training images' median map value in those units
    (0 for bundles made before it was measured), so normal texture is blue whatever the model's
    offset (patchcore's distances never reach 0)."""
    cal, ref = det.calibration_, det.reference_ or {}
    if cal and det.map_in_score_units:
        unit = float(cal["image_threshold"])
        label, marks = "anomaly ÷ image threshold (above 1: FAIL)", [(1.0, "FAIL threshold")]
        outline = float(cal["pixel_threshold"]) / unit if unit > 0 else None
        if outline is not None and 0 < outline < 1.0 / AT_ONE:
            marks.append((outline, "outline (pixel threshold)"))
    elif cal:
        unit, marks = float(cal["pixel_threshold"]), [(1.0, "outline (pixel threshold)")]
        label = f"anomaly map ÷ pixel threshold (PASS/FAIL from the {det.map_config.pooling} score)"
    elif det.map_in_score_units and "score_max" in ref:
        unit, marks = float(ref["score_max"]), [(1.0, "highest training score")]
        label = "anomaly ÷ highest training-image score (not calibrated)"
    else:
        unit, marks = float(ref.get("pixel_p99", 1.0)), [(1.0, "training p99")]
        label = "anomaly map ÷ its 99th percentile on training images (not calibrated)"
    floor = ref.get("pixel_p50", 0.0) / unit if unit > 0 else 0.0
    return ColourScale(unit, label, tuple(marks), float(np.clip(floor, 0.0, 0.9)))


def _scale(scale: ColourScale | float) -> ColourScale:
    """A bare number is the unit, with nothing marked."""
    return scale if isinstance(scale, ColourScale) else ColourScale(float(scale))


REGION_STYLE = dict(colors="white", linewidths=1.2)                       # the model's regions, as in the reports
TRUTH_STYLE = dict(colors="lime", linewidths=1.2, linestyles="dashed")    # a ground-truth defect mask


def heat_overlay(ax, image: np.ndarray, amap: np.ndarray, scale: ColourScale, mask: np.ndarray | None = None,
                 truth: np.ndarray | None = None):
    """The heatmap over the image; ``mask``: the model's defect regions (white), ``truth``: the
    true defect (dashed green)."""
    _show_image(ax, image)
    ax.imshow(scale.values(amap), cmap=HEAT_CMAP, alpha=0.45, vmin=scale.vmin, vmax=scale.vmax)
    for outline, style in ((mask, REGION_STYLE), (truth, TRUTH_STYLE)):
        if outline is not None and outline.any():
            ax.contour(outline.astype(float), levels=[0.5], **style)


def colour_bar(fig, scale: ColourScale, ax=None, cax=None):
    """The bar of ``scale`` beside ``ax`` (or in ``cax``), opaque so its colours can be read, with
    each mark as a line and a labelled tick of its own."""
    mappable = ScalarMappable(Normalize(scale.vmin, scale.vmax), HEAT_CMAP)
    bar = fig.colorbar(mappable, ax=ax, cax=cax, fraction=0.046, pad=0.04, extend="both" if scale.vmin else "max")
    bar.set_label(scale.label)
    close = 0.12 * (scale.vmax - scale.vmin)   # ticks nearer than this would print over each other
    marks = sorted(scale.marks)
    ticks = [v for v in bar.get_ticks() if scale.vmin <= v <= scale.vmax
             and all(abs(v - m) >= close for m, _ in marks)]
    labels = [f"{v:g}" for v in ticks]
    for k, (value, text) in enumerate(marks):
        bar.ax.axhline(value, color="white", lw=3)
        bar.ax.axhline(value, color="black", lw=1.2, ls="--" if value == 1.0 else ":")
        # two marks close together: the lower label a line lower, the upper one a line higher
        below = k > 0 and value - marks[k - 1][0] < close
        above = k + 1 < len(marks) and marks[k + 1][0] - value < close
        ticks.append(value)
        labels.append(("\n" if above else "") + f"{value:.2g} {text}" + ("\n" if below else ""))
    bar.set_ticks(ticks, labels=labels)
    return bar


def verdict(decision, normalized: float) -> str:
    """'FAIL 1.23', the words every picture and row uses: the decision and the normalised score."""
    return f"{decision} {normalized:.2f}"


def save_overlay(path: str | Path, image: np.ndarray, amap: np.ndarray, scale: ColourScale | float,
                 title: str = "", mask: np.ndarray | None = None, truth: np.ndarray | None = None,
                 info: dict | None = None) -> None:
    """Image | heatmap over image with a colour bar (and the outlines of :func:`heat_overlay`);
    ``scale``: :func:`colour_scale` of the detector."""
    scale = _scale(scale)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    _show_image(axes[0], image)
    axes[0].set_title("input")
    heat_overlay(axes[1], image, amap, scale, mask, truth)
    axes[1].set_title(title or "anomaly map")
    colour_bar(fig, scale, ax=axes[1])
    _save(fig, path, info)


def heat_rgb(amap: np.ndarray, scale: ColourScale) -> np.ndarray:
    """The heatmap alone, coloured as the colour bar colours it (RGB, uint8)."""
    v = np.clip((scale.values(amap) - scale.vmin) / (scale.vmax - scale.vmin), 0.0, 1.0)
    return HEAT_LUT[(v * 255).round().astype(np.uint8)]


def color_overlay(image: np.ndarray, amap: np.ndarray, scale: ColourScale, alpha: float = 0.45) -> np.ndarray:
    """Fast RGB overlay without matplotlib (for the batch reports' pictures)."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    return cv2.addWeighted(rgb, 1 - alpha, heat_rgb(amap, scale), alpha, 0)


def save_curve(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
               title: str, chance: str | None = None, limit: float | None = None,
               points: dict[str, tuple[str, tuple[float, float]]] | None = None) -> None:
    """``curves``: legend entry -> (x, y). ``chance`` labels a dashed diagonal y = x (a random
    scorer's ROC, and its PRO curve); ``limit`` marks an integration limit on x and ends the axis
    just past it; ``points``: a curve's legend entry -> (the point's legend entry, (x, y)), drawn as
    a marker in the curve's colour (the operating point of a calibrated threshold)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, (x, y) in curves.items():
        line, = ax.plot(x, y, lw=1.5, label=label)
        if label in (points or {}):
            point_label, xy = points[label]
            ax.plot(*xy, marker="o", ms=9, mfc="white", mew=2.5, color=line.get_color(), ls="none",
                    label=point_label, clip_on=False)   # a point at FPR 0 sits on the axis
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
                 scale: ColourScale, title: str = "", info: list | None = None) -> None:
    """Columns of (caption, image, map, true defect mask or None): the image above its heatmap
    overlay, one colour bar for all of them; ``info``: one :func:`shown` per column."""
    n = max(len(rows), 1)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n + 1.6, 5.6), squeeze=False,   # + 1.6 in: the colour bar
                             gridspec_kw={"hspace": 0.08, "top": 0.82 - 0.04 * title.count("\n")})   # 3-line captions
    for j, (caption, image, amap, mask) in enumerate(rows):
        _show_image(axes[0, j], image)
        axes[0, j].set_title(caption, fontsize=CAPTION_PT)
        heat_overlay(axes[1, j], image, amap, scale, truth=mask)
    for j in range(len(rows), n):
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    right = axes[1, -1].get_position()     # beside the heatmap row only
    colour_bar(fig, scale, cax=fig.add_axes([right.x1 + 0.01, right.y0, 0.012, right.height]))
    if title:
        fig.suptitle(title, fontsize=CAPTION_PT + 2)
    _save(fig, path, info)


def save_score_plot(path, results: Sequence, title: str = "") -> None:
    """One panel per video (:class:`~inspect_ad.reports.video.VideoResult`): the anomaly score
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
