"""Evaluate a fitted detector on a labelled test set and write the report.

Writes ``metrics.json`` (image/pixel AUROC, AUPRO@30%, image/pixel F1-max, recall at 1% FRR, per
defect label; on a test set without defect masks the pixel metrics are null and
``pixel_metrics_reason`` says why),
``scores.csv`` (each test image's label and score, for the user's own analysis), ``curves.npz``
(the ROC and PRO curves, for :func:`save_comparison_plots`), ``roc.png``, ``pro_curve.png`` and
``gallery.png`` (the highest-scoring good images and the lowest-scoring defective ones — where the
model is closest to being wrong; colours as in :func:`~inspect_ad.reports.visualize.colour_scale`).
A calibrated detector's operating point (its image threshold's false-positive and true-positive
rates on this test set) goes into ``metrics.json`` and onto the ROC; the gallery's captions then
carry each image's decision and normalised score.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from inspect_ad.scoring import metrics
from inspect_ad.atomic import atomic_path, atomic_write_json, atomic_write_text
from inspect_ad.data.datasets import GOOD, ImageSet, Sample
from inspect_ad.data.io import read_image, read_mask, to_uint8
from inspect_ad.detectors.image import Detector
from inspect_ad.errors import InspectError
from inspect_ad.reports.visualize import ColourScale, colour_scale, save_curve, save_gallery, shown, verdict
from inspect_ad.scoring.calibration import FAIL, decide, normalized_score

log = logging.getLogger(__name__)
FPR_LIMIT = 0.3
CURVES_FILE = "curves.npz"
# recall where the test set's own good images put a 1% false-reject rate: comparable across
# models whether or not a bundle is calibrated (that one's recall is the operating point's TPR)
RECALL_FRR = 0.01
PIXEL_METRICS = ("pixel_auroc", "pixel_f1max", "aupro")


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
    out = {"image_auroc": metrics.image_auroc(labels, scores), "image_f1max": metrics.image_f1max(labels, scores),
           "recall_at_1pct_frr": metrics.recall_at_frr(labels, scores, RECALL_FRR)}
    if has_region:
        out.update(pixel_auroc=metrics.pixel_auroc(masks, maps), pixel_f1max=metrics.pixel_f1max(masks, maps),
                   aupro=metrics.aupro(masks, maps, fpr_limit=FPR_LIMIT))
    return out


def compute_metrics(samples: list[Sample], scores: np.ndarray, maps: list, masks: list) -> dict:
    labels = np.array([s.is_anomalous for s in samples])
    if labels.all() or not labels.any():
        raise InspectError("evaluation needs both good and defective test images; the test set has only "
                           + ("defective" if labels.all() else "good") + " ones")
    result = {**_metric_block(labels, scores, maps, masks), **_without_masks(samples),
              "threshold_at_1pct_frr": metrics.threshold_at_frr(labels, scores, RECALL_FRR)}
    good = [i for i, s in enumerate(samples) if not s.is_anomalous]
    per_label = {}
    for lab in sorted({s.label for s in samples} - {GOOD}):
        idx = good + [i for i, s in enumerate(samples) if s.label == lab]
        per_label[lab] = {"n": len(idx) - len(good), **_metric_block(labels[idx], scores[idx],
                                                                      [maps[i] for i in idx], [masks[i] for i in idx])}
    return {**result, "per_label": per_label, "n_images": len(samples),
            "n_good": len(good), "n_defective": len(samples) - len(good)}


def _without_masks(samples: list[Sample]) -> dict:
    """Null pixel metrics and the reason, when no defective image has a mask; else nothing."""
    defective = [s for s in samples if s.is_anomalous]
    if any(s.mask is not None for s in defective):
        return {}
    return {**dict.fromkeys(PIXEL_METRICS), "pixel_metrics_reason":
            f"pixel metrics ({', '.join(PIXEL_METRICS)}) need defect masks and none of the {len(defective)} "
            f"defective test images has one: image metrics only"}


def curves(samples: list[Sample], scores: np.ndarray, maps: list, masks: list) -> dict[str, np.ndarray]:
    """The image ROC (``roc_fpr``, ``roc_tpr``) and, when the test set has defect masks, the PRO
    curve (``pro_fpr``, ``pro``), thinned to what a plot shows."""
    labels = np.array([s.is_anomalous for s in samples])
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    out = {"roc_fpr": fpr, "roc_tpr": tpr}
    if any(m.any() for m in masks):
        pfpr, pro = metrics.pro_curve(masks, maps)
        keep = _plot_points(pfpr)
        out.update(pro_fpr=pfpr[keep], pro=pro[keep])
    return out


def _plot_points(fpr: np.ndarray, n: int = 2000) -> np.ndarray:
    """Indices of about ``n`` of a curve's points, evenly spaced in FPR, both ends kept: a PRO curve
    has a point per distinct pixel score (millions), far more than a plot can show."""
    idx = np.searchsorted(fpr, np.linspace(0.0, 1.0, n)).clip(max=fpr.size - 1)
    return np.unique(np.concatenate(([0], idx, [fpr.size - 1])))


def save_curve_plots(out: Path, runs: dict[str, tuple[dict, dict]], roc_name: str = "roc.png",
                     pro_name: str = "pro_curve.png") -> list[Path]:
    """Every run's image ROC in one figure and every PRO curve in another, each legend entry with
    the run's area; ``runs``: name -> (its metrics, its :func:`curves`). Returns the files written.

    Chance is a random scorer: its ROC is the diagonal, and so is its PRO curve (a random score
    covers the same fraction of every region as of the good pixels), whose area up to the limit,
    normalised by the limit like :func:`~inspect_ad.scoring.metrics.aupro`, is limit / 2."""
    written = [out / roc_name]
    roc = {f"{name} (AUROC {m['image_auroc']:.3f})": (name, m, c) for name, (m, c) in runs.items()}
    points = {label: _point_label(name, m["operating_point"]) for label, (name, m, _) in roc.items()
              if m.get("operating_point")}
    save_curve(written[0], {label: (c["roc_fpr"], c["roc_tpr"]) for label, (_, _, c) in roc.items()},
               "false positive rate (good images)", "true positive rate (defective images)", "image ROC",
               chance="chance (AUROC 0.500)", points=points)
    with_pro = {name: (m, c) for name, (m, c) in runs.items() if "pro" in c}
    if with_pro:
        written.append(out / pro_name)
        save_curve(written[1], {f"{name} (AUPRO@{FPR_LIMIT:.0%} {m['aupro']:.3f})": (c["pro_fpr"], c["pro"])
                                for name, (m, c) in with_pro.items()},
                   "false positive rate (good pixels)", "per-region overlap (mean over defects)",
                   f"PRO curve; AUPRO@{FPR_LIMIT:.0%} = area up to FPR {FPR_LIMIT:g}, ÷ {FPR_LIMIT:g}",
                   chance=f"chance: PRO = FPR (AUPRO@{FPR_LIMIT:.0%} {FPR_LIMIT / 2:.3f})", limit=FPR_LIMIT)
    return written


def operating_point(samples: list[Sample], scores: np.ndarray, calibration: dict) -> dict:
    """Where the calibrated image threshold puts this test set: its false-positive rate on the
    good images and true-positive rate on the defective ones (a non-finite score FAILs)."""
    labels = np.array([s.is_anomalous for s in samples])
    fail = np.array([decide(s, calibration["image_threshold"]) == FAIL for s in scores])
    return {"image_threshold": calibration["image_threshold"], "target_frr": calibration["target_frr"],
            "fpr": float(fail[~labels].mean()), "tpr": float(fail[labels].mean())}


def _point_label(name: str, point: dict) -> tuple[str, tuple[float, float]]:
    return (f"{name} at its threshold (target FRR {point['target_frr']:g}): FPR {point['fpr']:.3f}, "
            f"TPR {point['tpr']:.3f}", (point["fpr"], point["tpr"]))


def save_comparison_plots(reports: dict[str, str | Path], out: str | Path) -> list[Path]:
    """Draw the models of several :func:`evaluate` reports on the same test set together:
    ``reports``: legend name -> report folder. Writes ``roc_models.png`` and (with masks)
    ``pro_models.png`` into ``out``; returns them."""
    runs = {name: _read_run(Path(folder)) for name, folder in reports.items()}
    datasets = {(m["dataset"], m["n_images"]) for m, _ in runs.values()}
    if len(datasets) > 1:
        raise InspectError("the reports to compare are of different test sets (" + ", ".join(
            f"{name}: {m['dataset']}, {m['n_images']} images" for name, (m, _) in runs.items())
            + "); compare models evaluated on the same one")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return save_curve_plots(out, runs, "roc_models.png", "pro_models.png")


def _read_run(folder: Path) -> tuple[dict, dict]:
    try:
        with np.load(folder / CURVES_FILE) as f:
            run_curves = dict(f)
        return json.loads((folder / "metrics.json").read_text()), run_curves
    except (OSError, ValueError) as e:
        raise InspectError(f"{folder} is not a complete evaluation report ({e}); write it with "
                           f"'inspect-ad evaluate --out {folder}'") from e


def write_plots(out: Path, name: str, samples, scores, maps, masks, scale: ColourScale, result: dict,
                n_gallery: int = 6) -> None:
    run_curves = curves(samples, scores, maps, masks)
    with atomic_path(out / CURVES_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(f, **run_curves)
    save_curve_plots(out, {name: (result, run_curves)})
    labels = np.array([s.is_anomalous for s in samples])
    good = sorted((i for i in range(len(samples)) if not labels[i]), key=lambda i: -scores[i])[: n_gallery // 2]
    bad = sorted((i for i in range(len(samples)) if labels[i]), key=lambda i: scores[i])[: n_gallery - len(good)]
    truth = "\n(dashed green: the true defect)" if "pixel_metrics_reason" not in result else ""
    threshold = (result.get("operating_point") or {}).get("image_threshold")
    rows = [(_caption(samples[i], scores[i], threshold), to_uint8(read_image(samples[i].image)), maps[i], masks[i])
            for i in good + bad]
    info = [shown(maps[i], scale, **({} if threshold is None else _judged(scores[i], threshold))) for i in good + bad]
    save_gallery(out / "gallery.png", rows, scale,
                 "hardest cases: highest-scoring good | lowest-scoring defective" + truth, info)


def _judged(score: float, threshold: float) -> dict:
    return {"decision": str(decide(score, threshold)), "normalized": normalized_score(score, threshold)}


def _caption(sample: Sample, score: float, threshold: float | None = None, width: int = 24) -> str:
    """Label, then the decision and normalised score when calibrated (else the raw score), then the name."""
    name = sample.image.name
    if len(name) > width:       # keep the end: numbered files differ there
        name = "…" + name[1 - width:]
    judged = f"score {score:.4g}" if threshold is None else verdict(**_judged(score, threshold))
    return f"{sample.label}\n{judged}\n{name}"


def scores_csv(samples: list[Sample], scores: np.ndarray) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "label", "score"])
    w.writerows((str(s.image), s.label, f"{float(v):.8g}") for s, v in zip(samples, scores))
    return buf.getvalue()


def evaluate(det: Detector, data: ImageSet, out: str | Path | None = None, progress: bool = True) -> dict:
    data.require_test().has_masks()   # a missing mask fails here, not after scoring the whole set
    t0 = time.perf_counter()
    scores, maps, masks = collect(det, data.test, progress)
    result = {"model": det.model, "dataset": data.name, **compute_metrics(data.test, scores, maps, masks),
              "seconds": round(time.perf_counter() - t0, 2)}
    if det.calibration_:
        result["operating_point"] = operating_point(data.test, scores, det.calibration_)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_plots(out, det.model, data.test, scores, maps, masks, colour_scale(det), result)
        atomic_write_text(out / "scores.csv", scores_csv(data.test, scores))
        atomic_write_json(out / "metrics.json", result)
    return result
