"""Evaluate a fitted detector on a labelled test set and write the report.

Writes ``metrics.json`` (image/pixel AUROC, AUPRO@30%, image/pixel F1-max, per defect label),
``scores.csv`` (each test image's label and score, for the user's own analysis), ``roc.png``,
``pro_curve.png`` and ``gallery.png`` (the highest-scoring good images and the lowest-scoring
defective ones — where the model is closest to being wrong).
"""
from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from inspect_ad.scoring import metrics
from inspect_ad.atomic import atomic_write_json, atomic_write_text
from inspect_ad.data.datasets import GOOD, ImageSet, Sample
from inspect_ad.data.io import read_image, read_mask, to_uint8
from inspect_ad.detectors.image import Detector
from inspect_ad.errors import InspectError
from inspect_ad.reports.visualize import save_curve, save_gallery

log = logging.getLogger(__name__)
FPR_LIMIT = 0.3


def collect(det: Detector, samples: list[Sample], progress: bool = True):
    """Scores, maps (each at its image's size) and masks (all-false for good images)."""
    preds = det.predict_iter((s.image for s in samples), keep_image=False)
    scores, maps, masks = [], [], []
    for s, p in tqdm(zip(samples, preds), total=len(samples), desc="evaluate", disable=not progress):
        if p.error:
            raise InspectError(p.error)
        masks.append(read_mask(s.mask, p.map.shape) if s.mask is not None else np.zeros(p.map.shape, bool))
        scores.append(p.score)
        maps.append(p.map)
    return np.asarray(scores), maps, masks


def _metric_block(labels: np.ndarray, scores: np.ndarray, maps: list, masks: list) -> dict:
    has_region = any(m.any() for m in masks)
    out = {"image_auroc": metrics.image_auroc(labels, scores), "image_f1max": metrics.image_f1max(labels, scores)}
    if has_region:
        out.update(pixel_auroc=metrics.pixel_auroc(masks, maps), pixel_f1max=metrics.pixel_f1max(masks, maps),
                   aupro=metrics.aupro(masks, maps, fpr_limit=FPR_LIMIT))
    return out


def compute_metrics(samples: list[Sample], scores: np.ndarray, maps: list, masks: list) -> dict:
    labels = np.array([s.is_anomalous for s in samples])
    if labels.all() or not labels.any():
        raise InspectError("evaluation needs both good and defective test images; the test set has only "
                           + ("defective" if labels.all() else "good") + " ones")
    result = _metric_block(labels, scores, maps, masks)
    good = [i for i, s in enumerate(samples) if not s.is_anomalous]
    per_label = {}
    for lab in sorted({s.label for s in samples} - {GOOD}):
        idx = good + [i for i, s in enumerate(samples) if s.label == lab]
        per_label[lab] = {"n": len(idx) - len(good), **_metric_block(labels[idx], scores[idx],
                                                                      [maps[i] for i in idx], [masks[i] for i in idx])}
    return {**result, "per_label": per_label, "n_images": len(samples),
            "n_good": len(good), "n_defective": len(samples) - len(good)}


def write_plots(out: Path, name: str, samples, scores, maps, masks, vmax: float, n_gallery: int = 6) -> None:
    labels = np.array([s.is_anomalous for s in samples])
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    save_curve(out / "roc.png", {name: (fpr, tpr)}, "false positive rate", "true positive rate", "image ROC")
    if any(m.any() for m in masks):
        pfpr, pro = metrics.pro_curve(masks, maps)
        save_curve(out / "pro_curve.png", {name: (pfpr, pro)}, "false positive rate (pixels)",
                   "per-region overlap", f"PRO curve (integrated up to {FPR_LIMIT:.0%} FPR)", xlim=FPR_LIMIT)
    good = sorted((i for i in range(len(samples)) if not labels[i]), key=lambda i: -scores[i])[: n_gallery // 2]
    bad = sorted((i for i in range(len(samples)) if labels[i]), key=lambda i: scores[i])[: n_gallery - len(good)]
    rows = [(f"{samples[i].label} {scores[i]:.4g}\n{samples[i].image.name}", to_uint8(read_image(samples[i].image)),
             maps[i], masks[i]) for i in good + bad]
    save_gallery(out / "gallery.png", rows, vmax, "hardest cases: highest-scoring good | lowest-scoring defective")


def scores_csv(samples: list[Sample], scores: np.ndarray) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "label", "score"])
    w.writerows((str(s.image), s.label, f"{float(v):.8g}") for s, v in zip(samples, scores))
    return buf.getvalue()


def evaluate(det: Detector, data: ImageSet, out: str | Path | None = None, progress: bool = True) -> dict:
    data.require_test()
    t0 = time.perf_counter()
    scores, maps, masks = collect(det, data.test, progress)
    result = {"model": det.model, "dataset": data.name, **compute_metrics(data.test, scores, maps, masks),
              "seconds": round(time.perf_counter() - t0, 2)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_plots(out, det.model, data.test, scores, maps, masks, vmax=float(np.quantile(np.concatenate(
            [m.ravel() for m in maps]), 0.995)))
        atomic_write_text(out / "scores.csv", scores_csv(data.test, scores))
        atomic_write_json(out / "metrics.json", result)
    return result
