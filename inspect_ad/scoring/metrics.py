"""Evaluation metrics as pure numpy functions: ROC/AUROC, F1-max, PSNR, the MVTec AD AU-PRO, and the
tabular protocol's top-fraction flags with their precision / recall / F1.

Every curve is exact: each distinct score is one threshold, a sample counts as positive when
``score >= threshold``, and tied scores enter the curve together (one point per distinct score).
Curves start at the origin, i.e. at a threshold above every score.

Pixel-level functions take ``masks`` and ``maps`` as sequences of 2-D arrays (or one (N, H, W)
array); images may differ in size, but each map must have its mask's shape. A mask pixel is a
defect when it is nonzero.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm

from inspect_ad.errors import InspectError

__all__ = [
    "MetricInputError",
    "roc_curve",
    "auroc",
    "image_auroc",
    "pixel_auroc",
    "f1_max",
    "image_f1max",
    "pixel_f1max",
    "threshold_at_frr",
    "recall_at_frr",
    "psnr",
    "pro_curve",
    "aupro",
    "aupro_reference",
    "flag_top_fraction",
    "precision_recall_f1",
]


class MetricInputError(InspectError, ValueError):
    """Bad metric input. A ValueError too, so numeric code can catch it the usual way."""


# ---------------------------------------------------------------------------------------------
# input checks


def _finite_1d(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise MetricInputError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise MetricInputError(f"{name} must be numeric; got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise MetricInputError(f"{name}[{bad}] is {arr[bad]}; replace NaN/inf scores before scoring")
    return arr


def _labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = _finite_1d(labels, "labels")
    scores = _finite_1d(scores, "scores")
    if labels.shape != scores.shape:
        raise MetricInputError(
            f"got {labels.size} labels but {scores.size} scores; pass one score per label"
        )
    if not np.isin(labels, (0, 1)).all():
        raise MetricInputError(
            f"labels must be 0 (normal) or 1 (anomalous); got values {np.unique(labels)[:5].tolist()}"
        )
    return labels.astype(bool), scores


def _mask_map_pairs(masks, maps) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validated (bool mask, score map) pairs; raises naming the first offending index."""
    masks, maps = list(masks), list(maps)
    if len(masks) != len(maps):
        raise MetricInputError(f"got {len(masks)} masks but {len(maps)} maps; pass one mask per map")
    if not masks:
        raise MetricInputError("no masks/maps given; pass at least one (mask, map) pair")
    pairs = []
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        mask, amap = np.asarray(mask), np.asarray(amap)
        if amap.ndim != 2:
            raise MetricInputError(
                f"map {i} has shape {amap.shape}; expected a 2-D (H, W) array (squeeze channel axes)"
            )
        if mask.shape != amap.shape:
            raise MetricInputError(
                f"mask {i} has shape {mask.shape} but map {i} has shape {amap.shape}; "
                "resize the map to its mask's size before scoring"
            )
        if amap.dtype.kind not in "biuf":
            raise MetricInputError(f"map {i} must be numeric; got dtype {amap.dtype}")
        if amap.dtype.kind == "f" and not np.isfinite(amap).all():
            raise MetricInputError(f"map {i} contains NaN or inf; replace them before scoring")
        pairs.append((mask != 0, amap))
    return pairs


def _pixels(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    pairs = _mask_map_pairs(masks, maps)
    labels = np.concatenate([m.ravel() for m, _ in pairs])
    scores = np.concatenate([a.ravel() for _, a in pairs])
    return labels, scores


# ---------------------------------------------------------------------------------------------
# exact threshold sweep shared by every curve


def _sweep(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Descending sort order, distinct thresholds (descending) and the last sorted index of each.

    A cumulative sum over ``order`` read at ``ends`` gives the sum over ``score >= threshold``;
    reading only at the end of each run of tied scores makes a tie group enter the curve at once,
    whatever order the sort left it in (so no stable sort is needed). ``ends + 1`` counts them.
    """
    order = np.argsort(scores)[::-1]
    ordered = scores[order]
    ends = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1)
    return order, ordered[ends], ends


def _prepend_origin(*curves: np.ndarray) -> list[np.ndarray]:
    return [np.concatenate(([0.0], c)) for c in curves]


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


# ---------------------------------------------------------------------------------------------
# ROC / AUROC / F1


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC: ``(fpr, tpr, thresholds)``, one point per distinct score plus the origin.

    ``thresholds`` is descending and starts with ``+inf`` for the (0, 0) point; the point at
    ``thresholds[k]`` counts every sample with ``score >= thresholds[k]`` as positive.
    """
    labels, scores = _labels_scores(labels, scores)
    return _roc_points(labels, scores, "roc_curve")


def _roc_points(labels: np.ndarray, scores: np.ndarray, what: str):
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        present = "anomalous (1)" if n_neg == 0 else "normal (0)"
        raise MetricInputError(
            f"{what} needs both normal and anomalous samples; all {labels.size} are {present}"
        )
    order, thresholds, ends = _sweep(scores)
    tp = np.cumsum(labels[order])[ends]
    fpr, tpr = _prepend_origin((ends + 1 - tp) / n_neg, tp / n_pos)
    return fpr, tpr, np.concatenate(([np.inf], thresholds.astype(np.float64)))


def auroc(labels, scores) -> float:
    """Area under the exact ROC (trapezoid rule), equal to the Mann-Whitney U / (n_pos * n_neg)."""
    labels, scores = _labels_scores(labels, scores)
    fpr, tpr, _ = _roc_points(labels, scores, "auroc")
    return _trapezoid(fpr, tpr)


def auroc_per_group(labels, scores, groups) -> dict:
    """{group: AUROC of every negative against that group's positives only}, e.g. which anomaly
    class a one-class model confuses most with the normal one. Groups of negatives are ignored."""
    labels, scores = _labels_scores(labels, scores)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise MetricInputError(f"got {groups.size} groups for {labels.size} labels; pass one group per label")
    result = {}
    for g in np.unique(groups[labels]):
        keep = ~labels | (groups == g)
        result[g.item()] = auroc(labels[keep], scores[keep])
    return result


def image_auroc(labels, scores) -> float:
    """Image-level AUROC: one 0/1 label and one anomaly score per image."""
    return auroc(labels, scores)


def pixel_auroc(masks, maps) -> float:
    """Pixel-level AUROC over all pixels of all images pooled together."""
    labels, scores = _pixels(masks, maps)
    fpr, tpr, _ = _roc_points(labels, scores, "pixel_auroc (masks)")
    return _trapezoid(fpr, tpr)


def _f1_max(labels: np.ndarray, scores: np.ndarray, what: str) -> float:
    n_pos = int(labels.sum())
    if n_pos == 0:
        raise MetricInputError(
            f"{what} needs at least one anomalous sample; all {labels.size} are normal"
        )
    order, _, ends = _sweep(scores)
    tp = np.cumsum(labels[order])[ends]
    # F1 = 2PR/(P+R) = 2TP / (predicted positives + actual positives)
    return float(np.max(2.0 * tp / (ends + 1 + n_pos)))


def f1_max(labels, scores) -> float:
    """Best F1 over every threshold (exact: each distinct score is tried, ties enter together)."""
    labels, scores = _labels_scores(labels, scores)
    return _f1_max(labels, scores, "f1_max")


def image_f1max(labels, scores) -> float:
    """Image-level F1-max: one 0/1 label and one anomaly score per image."""
    return f1_max(labels, scores)


def pixel_f1max(masks, maps) -> float:
    """Pixel-level F1-max over all pixels of all images pooled together."""
    labels, scores = _pixels(masks, maps)
    return _f1_max(labels, scores, "pixel_f1max (masks)")


def threshold_at_frr(labels, scores, frr: float = 0.01) -> float:
    """The lowest normal sample's score that leaves at most ``frr`` of the normal samples above it:
    the threshold a test set's own good images allow at that false-reject rate. Below 1 / frr normal
    samples that is their highest score (no false reject at all)."""
    labels, scores = _labels_scores(labels, scores)
    if not 0 < frr < 1:
        raise MetricInputError(f"frr must be in (0, 1), got {frr}; e.g. 0.01 for 1%")
    normal = np.sort(scores[~labels])
    if normal.size == 0:
        raise MetricInputError(f"threshold_at_frr needs normal samples; all {labels.size} are anomalous")
    # 1e-9: 0.99 * 100 must give rank 99, not 100 by rounding
    return float(normal[max(math.ceil(normal.size * (1 - frr) - 1e-9), 1) - 1])


def recall_at_frr(labels, scores, frr: float = 0.01) -> float:
    """Fraction of the anomalous samples scoring above :func:`threshold_at_frr`."""
    labels, scores = _labels_scores(labels, scores)
    if not labels.any():
        raise MetricInputError(f"recall_at_frr needs at least one anomalous sample; all {labels.size} are normal")
    return float((scores[labels] > threshold_at_frr(labels, scores, frr)).mean())


# ---------------------------------------------------------------------------------------------
# PSNR


def psnr(a, b, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``; ``inf`` when a == b."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise MetricInputError(
            f"psnr inputs differ in shape: {a.shape} vs {b.shape}; pass equal shapes"
        )
    if not data_range > 0:
        raise MetricInputError(
            f"psnr data_range must be > 0; got {data_range} (1.0 for [0, 1] images, 255 for uint8)"
        )
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


# ---------------------------------------------------------------------------------------------
# PRO / AU-PRO (Bergmann et al., MVTec AD, IJCV 2021, §5.2)


def _regions(masks, maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled scores, per-pixel region id (0 = defect-free, 1..R over all images) and sizes.

    Regions are the 8-connected components of each mask, as in the MVTec AD evaluation code.
    """
    from skimage.measure import label  # deferred: keeps `import inspect_ad.scoring.metrics` light

    pairs = _mask_map_pairs(masks, maps)
    ids, offset = [], 0
    for mask, _ in pairs:
        lab = label(mask, connectivity=2).astype(np.int32)
        n = int(lab.max())
        ids.append(np.where(lab > 0, lab + offset, 0).ravel())
        offset += n
    region = np.concatenate(ids)
    scores = np.concatenate([a.ravel() for _, a in pairs])
    sizes = np.bincount(region, minlength=offset + 1)
    if offset == 0:
        raise MetricInputError("aupro needs at least one defective region; the test set has none")
    if sizes[0] == 0:
        raise MetricInputError(
            "aupro needs defect-free pixels to measure false positives; every mask pixel is a defect"
        )
    return scores, region, sizes


def _pro_points(scores: np.ndarray, region: np.ndarray, sizes: np.ndarray):
    """(fpr, pro) at each distinct score of ``scores``, with counts normalised by ``sizes``."""
    n_regions = sizes.size - 1
    # a pixel of region r adds 1/(|r| R) to PRO; defect-free pixels add nothing to PRO
    pro_weight = np.zeros(sizes.size)
    pro_weight[1:] = 1.0 / (sizes[1:] * n_regions)
    order, _, ends = _sweep(scores)
    ordered_region = region[order]
    # counting false positives as integers keeps FPR exact and exactly monotone
    n_false = np.cumsum(ordered_region == 0)[ends]
    pro = np.cumsum(pro_weight[ordered_region])[ends]
    return _prepend_origin(n_false / sizes[0], pro)


def pro_curve(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """The full per-region-overlap curve ``(fpr, pro)`` from (0, 0) to (1, 1), for plotting.

    FPR is pooled over all defect-free pixels of all images; PRO is the mean over all regions of
    all images of the fraction of the region's pixels with ``score >= threshold``.
    """
    return _pro_points(*_regions(masks, maps))


def _area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Normalised area under (fpr, pro) on [0, fpr_limit], interpolating linearly at the limit."""
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:end], pro[:end]
    if x[-1] < fpr_limit and end < fpr.size:
        step = (fpr_limit - x[-1]) / (fpr[end] - x[-1])
        x = np.append(x, fpr_limit)
        y = np.append(y, y[-1] + step * (pro[end] - y[-1]))
    return _trapezoid(x, y) / fpr_limit


def _check_limit(fpr_limit: float) -> float:
    if not 0.0 < fpr_limit <= 1.0:
        raise MetricInputError(f"fpr_limit must be in (0, 1]; got {fpr_limit} (MVTec AD uses 0.3)")
    return float(fpr_limit)


def aupro(masks, maps, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, fpr_limit], divided by fpr_limit (MVTec AD).

    Exact and vectorised: only pixels scoring at least the threshold where FPR first exceeds
    the limit can move the curve below that threshold, so those (found with one O(n) partition
    of the defect-free scores) are the only ones sorted.
    """
    fpr_limit = _check_limit(fpr_limit)
    scores, region, sizes = _regions(masks, maps)
    n_good = int(sizes[0])
    # the k-th highest defect-free score has FPR >= k / n_good > fpr_limit, with a pixel of slack
    # against rounding in fpr_limit * n_good, so the curve down to it passes the limit
    k = min(int(np.floor(fpr_limit * n_good)) + 2, n_good)
    good_scores = scores[region == 0]
    cut = np.partition(good_scores, n_good - k)[n_good - k]
    keep = scores >= cut
    fpr, pro = _pro_points(scores[keep], region[keep], sizes)
    return _area_to_limit(fpr, pro, fpr_limit)


def aupro_reference(masks, maps, fpr_limit: float = 0.3) -> float:
    """AU-PRO straight from the definition: every distinct score, every region, one at a time.

    O(thresholds x pixels); for tests and benchmarks only. Use :func:`aupro`.
    """
    fpr_limit = _check_limit(fpr_limit)
    scores, region, sizes = _regions(masks, maps)
    good = scores[region == 0]
    region_scores = [scores[region == r] for r in range(1, sizes.size)]
    fpr, pro = [0.0], [0.0]
    for t in tqdm(np.unique(scores)[::-1], desc="aupro_reference", leave=False, disable=None):
        fpr.append(np.count_nonzero(good >= t) / good.size)
        pro.append(np.mean([np.count_nonzero(r >= t) / r.size for r in region_scores]))
    return _area_to_limit(np.array(fpr), np.array(pro), fpr_limit)


# ---------------------------------------------------------------------------------------------
# a fixed-fraction decision (the DAGMM / MemAE tabular protocol flags the top 20 % of test scores)

def flag_top_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask flagging exactly round(fraction · n) highest scores (ties broken by order)."""
    scores = np.asarray(scores)
    if not 0 <= fraction <= 1:
        raise ValueError("fraction must lie in [0, 1]")
    n_flag = int(round(fraction * len(scores)))
    flagged = np.zeros(len(scores), dtype=bool)
    if n_flag:
        flagged[np.argsort(-scores, kind="stable")[:n_flag]] = True
    return flagged


def precision_recall_f1(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the positive (anomaly) class from boolean arrays; 0 if undefined."""
    predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
    tp = float(np.sum(predicted & actual))
    precision = tp / predicted.sum() if predicted.any() else 0.0
    recall = tp / actual.sum() if actual.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
