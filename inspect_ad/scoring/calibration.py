"""Thresholds from defect-free images only, with a stated false-reject guarantee.

Image threshold (split-conformal). Given the scores S_1..S_n of n held-out good images and a
target false-reject rate α, take τ = S_(k), the k-th smallest score, with k = ⌈(n+1)(1−α)⌉; a part
FAILS when its score is > τ. If a new good part's score is exchangeable with the calibration
scores (same process, images not used for training), its rank among the n+1 scores is uniform, so

    P(S_new > τ) ≤ 1 − k/(n+1) ≤ α              (marginal over calibration set and new part).

Conditional on one calibration set the false-reject rate FRR(τ) = 1 − F(S_(k)) is random; for a
continuous score distribution F(S_(k)) ~ Beta(k, n+1−k), hence

    P_cal[FRR(τ) ≤ α] = P[Beta(k, n+1−k) ≥ 1−α] = P[Binomial(n, 1−α) ≤ k−1],

and FRR(τ) ≤ the 95% quantile of Beta(n+1−k, k) in 95% of calibrations. Both numbers go into the
guarantee text. k ≤ n needs n ≥ (1−α)/α (99 images for 1%, 19 for 5%); smaller sets are refused.

Pixel threshold: the smallest value such that at most a fraction α of the calibration pixels lie
above it (pixels of one image are correlated, so this is an empirical rate, not a guarantee). It
outlines the defect regions: 8-connected regions of pixels above it.

Minimum area, as a fraction of the image (so it means the same on photos larger or smaller than the
calibration images): by default calibrated like the image threshold, on the fraction of each
calibration image that its largest region covers, so a good part shows a region that large with
probability ≤ α as well. Calibrations of version 1 gave it in pixels of the calibration images
(``min_area`` only); they load and keep counting pixels.

The decision rule (one rule, everywhere: :func:`judge`):

* a part FAILs when its image score is above the image threshold (or is not a number), else it
  PASSes; so the false-reject guarantee above is the guarantee of the decision itself;
* the normalised score is the score divided by the image threshold, u = s / τ, so FAIL ⇔ u > 1;
  heatmaps use the same unit (the map ÷ the image threshold: with ``pooling="max"`` the score is
  the map's maximum, so a PASS has no pixel above 1);
* defect regions are reported on FAILs only: the regions above the pixel threshold that hold the
  map's peak, reach the image threshold, or cover at least the minimum area. A PASS has none.

Why regions do not decide too ("FAIL when a region covers the minimum area" as a second rule):
each rule alone rejects a good part with probability ≤ α, so both together would only promise
2α, and the threshold the report marks would no longer be the whole rule. On three demo runs
(recipes/results/decision_rule.md) the second rule would have failed 1, 1 and 5 more of 56
defective parts, and 0, 1 and 0 more of 40 good ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Sequence, TypeVar

import cv2
import numpy as np

from inspect_ad import __version__
from inspect_ad.checks import Number, Optional
from inspect_ad.errors import InspectError

CALIBRATION_VERSION = 2     # 2: min_area_fraction; the normalised score is s / τ (1 at the threshold)
NORMALIZED_THRESHOLD = 1.0  # the normalised score of a part at the image threshold
NORMALIZED_TEXT = "u = s / t: the score divided by the image threshold; FAIL when u > 1"


class Decision(str, Enum):
    """A part's verdict. Members are strings (``Decision.FAIL == "FAIL"``), so reports, JSON and
    comparisons with plain strings all work. ERROR: the file could not be read; INVALID: it is
    not a plausible photo of a part (see :mod:`inspect_ad.data.sanity`)."""

    PASS = "PASS"
    FAIL = "FAIL"
    INVALID = "INVALID"
    ERROR = "ERROR"

    def __str__(self) -> str:   # "FAIL", not "Decision.FAIL", in f-strings and CSV on every Python
        return self.value

    __format__ = str.__format__


PASS, FAIL, ERROR, INVALID = Decision.PASS, Decision.FAIL, Decision.ERROR, Decision.INVALID
_DECISION_DTYPE = f"<U{max(len(d.value) for d in Decision)}"   # wide enough for any decision
INVALID_SCORE = "invalid score"
T = TypeVar("T")


# --- image threshold -------------------------------------------------------------------------

def _check_target(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InspectError(f"target false-reject rate {alpha} must be between 0 and 1 (e.g. 0.01 for 1%)")


def conformal_rank(n: int, alpha: float) -> int:
    """k = ⌈(n+1)(1−α)⌉ (a tiny tolerance keeps e.g. 100·0.99 from rounding up to 100)."""
    _check_target(alpha)
    return max(1, math.ceil((n + 1) * (1.0 - alpha) - 1e-9))


MAX_CALIBRATION_SIZE = 10 ** 12   # beyond it float rounding would make the search below endless


def min_calibration_size(alpha: float) -> int:
    """Smallest n with ⌈(n+1)(1−α)⌉ ≤ n."""
    _check_target(alpha)
    if not (1.0 - alpha) / alpha <= MAX_CALIBRATION_SIZE:   # also inf, for a denormal α such as 5e-324
        raise InspectError(f"target false-reject rate {alpha:g} would need more than {MAX_CALIBRATION_SIZE:.0e} good "
                           f"images to calibrate; raise --target-frr (e.g. 0.01 for 1%)")
    n = max(1, math.ceil((1.0 - alpha) / alpha - 1e-9))
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


def require_calibration_size(n: int, alpha: float, source: str = "the calibration set") -> None:
    if conformal_rank(n, alpha) > n:
        need = min_calibration_size(alpha)
        raise InspectError(f"{source} has {n} good image(s); a {alpha:.3g} false-reject target needs at least "
                           f"{need} (n ≥ (1−α)/α): add good images or raise --target-frr")


@dataclass(frozen=True)
class Guarantee:
    """What the conformal threshold promises for ``n`` calibration images at a target false-reject
    rate: the rank it takes and the bounds (see the module docstring)."""

    n: int
    target: float
    rank: int
    expected_frr_bound: float     # 1 − k/(n+1): bound on the marginal false-reject probability
    prob_within_target: float     # P_cal[FRR ≤ target]
    frr_95: float                 # FRR bound holding in 95% of calibrations

    def text(self) -> str:
        return (f"threshold = score ranked {self.rank} of {self.n} good images; for new good parts from the "
                f"same process the false-reject probability is at most {self.expected_frr_bound:.4f} "
                f"(target {self.target:g}); in {self.prob_within_target:.1%} of calibrations the actual "
                f"false-reject rate is ≤ {self.target:g}, and in 95% it is ≤ {self.frr_95:.4f}")


def guarantee(n: int, alpha: float) -> Guarantee:
    from scipy import stats   # here, not at the top: it alone took a quarter of the CLI's start-up
    require_calibration_size(n, alpha)
    k = conformal_rank(n, alpha)
    return Guarantee(n, alpha, k, 1.0 - k / (n + 1), float(stats.binom.cdf(k - 1, n, 1.0 - alpha)),
                     float(stats.beta.ppf(0.95, n + 1 - k, k)))


def conformal_threshold(scores: Sequence[float], alpha: float) -> float:
    """The k-th smallest score, k = ⌈(n+1)(1−α)⌉; fail when score > threshold."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    require_calibration_size(len(s), alpha)
    return float(s[conformal_rank(len(s), alpha) - 1])


# --- pixels, masks, regions ------------------------------------------------------------------

def pixel_threshold(maps: Sequence[np.ndarray], alpha: float) -> float:
    """Smallest value with at most a fraction α of all pixels above it."""
    _check_target(alpha)
    v = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps])
    k = math.ceil(v.size * (1.0 - alpha) - 1e-9)
    return float(np.partition(v, k - 1)[k - 1])


def _components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, per-region stats) of the 8-connected regions: OpenCV's one pass gives the areas and
    boxes that scikit-image's label twice and regionprops took 2.4 times as long for (1.35 ms
    against 0.56 ms a 256² map on the 2-core CPU)."""
    _, labels, props, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(binary, dtype=np.uint8),
                                                           connectivity=8, ltype=cv2.CV_32S)
    return labels, props


def largest_region_area(amap: np.ndarray, threshold: float) -> int:
    areas = _components(amap > threshold)[1][1:, cv2.CC_STAT_AREA]
    return int(areas.max()) if areas.size else 0


def defect_regions(amap: np.ndarray, threshold: float, min_area: int = 1,
                   keep_above: float | None = None) -> tuple[np.ndarray, list[list[int]]]:
    """The mask of the pixels above ``threshold`` in 8-connected regions of at least ``min_area``
    pixels, and those regions' boxes [x0, y0, x1, y1] (x1, y1 exclusive), largest first; regions of
    one size in raster order of their first pixel. ``keep_above``: also keep, whatever its size,
    the region holding the map's peak and every region with a pixel above this value."""
    labels, props = _components(amap > threshold)
    keep = props[:, cv2.CC_STAT_AREA] >= max(1, min_area)
    if keep_above is not None and len(props) > 1:
        keep[labels.flat[int(np.argmax(amap))]] = True
        keep[np.unique(labels[amap > keep_above])] = True
    keep[0] = False
    kept = np.flatnonzero(keep)
    area, top, left, width, height = (props[:, c] for c in (cv2.CC_STAT_AREA, cv2.CC_STAT_TOP, cv2.CC_STAT_LEFT,
                                                            cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    # OpenCV numbers regions in another order than a raster scan: ties go by the first pixel
    first = {k: (top[k], int(np.argmax(labels[top[k]] == k))) for k in kept}
    order = sorted(kept, key=lambda k: (-area[k], first[k]))
    boxes = [[int(left[k]), int(top[k]), int(left[k] + width[k]), int(top[k] + height[k])] for k in order]
    return (keep[labels] if boxes else np.zeros(labels.shape, bool)), boxes


def min_area_pixels(calibration: dict, shape: tuple[int, ...]) -> int:
    """The minimum region area on an image of ``shape`` (H, W): the calibrated fraction of its
    area, or, for a version-1 calibration, the pixels it was given in."""
    fraction = calibration.get("min_area_fraction")
    if fraction is None:
        return int(calibration["min_area"])
    return max(1, math.ceil(fraction * shape[0] * shape[1] - 1e-9))


# --- normalised score and decision -----------------------------------------------------------

def normalized_score(score: float | np.ndarray, threshold: float) -> float | np.ndarray:
    """The score in units of the image threshold, s / τ: 1 at the threshold, FAIL above. A
    threshold ≤ 0 (possible for z-scored maps) cannot be divided by: there u = 1 + s − τ."""
    s = np.asarray(score, dtype=np.float64)
    t = float(threshold)
    out = s / t if t > 0 else 1.0 + s - t
    return float(out) if out.ndim == 0 else out


def decide(score: float, threshold: float) -> Decision:
    """The decision rule on the score alone: FAIL above the threshold, and when the score is not a
    number (NaN compares False with any threshold: a broken model must never pass a part)."""
    return PASS if score <= threshold else FAIL


@dataclass
class Judgement:
    """One part's decision (the rule in the module docstring): FAIL when the image score is above
    the calibrated threshold, or is not a number at all (a diverged model must never pass a part);
    INVALID when the input is not a plausible photo of a part (``reason`` says why). ``mask`` and
    ``boxes`` are the defect regions, on a FAIL only."""

    decision: Decision
    normalized: float
    mask: np.ndarray
    boxes: list[list[int]]
    reason: str | None = None

    @property
    def defect_area(self) -> int:
        return int(self.mask.sum())


def judge(score: float, amap: np.ndarray, calibration: dict, invalid_input: str | None = None,
          map_in_score_units: bool = True) -> Judgement:
    """``invalid_input``: why the image is not a plausible input (see :mod:`inspect_ad.data.sanity`),
    if it is not. ``map_in_score_units``: whether the map's values compare with the image threshold
    (the score is the map's maximum), so that every region above the threshold is kept."""
    none = np.zeros(amap.shape, bool)
    if invalid_input:
        return Judgement(INVALID, float("nan"), none, [], f"invalid input: {invalid_input}")
    threshold = calibration["image_threshold"]
    if not math.isfinite(score):
        # NaN compares False with any threshold: without this a broken model passes every part
        return Judgement(FAIL, float("nan"), none, [], f"{INVALID_SCORE} ({score})")
    u = normalized_score(score, threshold)
    if decide(score, threshold) == PASS:
        return Judgement(PASS, u, none, [])
    mask, boxes = defect_regions(amap, calibration["pixel_threshold"], min_area_pixels(calibration, amap.shape),
                                 keep_above=threshold if map_in_score_units else math.inf)
    return Judgement(FAIL, u, mask, boxes)


def decisions(fail: Sequence[bool], invalid: Sequence[bool] | None = None) -> np.ndarray:
    """PASS/FAIL (INVALID where ``invalid``) per sample, as a numpy string array: it compares with
    both ``"FAIL"`` and ``Decision.FAIL``."""
    out = np.where(np.asarray(fail, dtype=bool), FAIL.value, PASS.value).astype(_DECISION_DTYPE)
    if invalid is not None:
        out[np.asarray(invalid, dtype=bool)] = INVALID.value
    return out


# --- calibration record ----------------------------------------------------------------------

def area_fraction(min_area: float, areas: Sequence[int]) -> float:
    """A minimum area the user gave: a fraction of the image (< 1) as it is; pixels (≥ 1) of the
    calibration images, whose median area ``areas`` turns them into a fraction."""
    return float(min_area) if min_area < 1 else float(min_area) / float(np.median(areas))


TARGET_FRR = 0.01   # every calibration's default false-reject target
# what a calibration's settings must be; the command line's --target-frr and --min-area are built from it
CALIBRATION_CONSTRAINTS = {"target_frr": Number(0, 1, open_low=True, open_high=True), "min_area": Optional(Number(0))}


def calibrate(scores: Sequence[float], maps: Sequence[np.ndarray], target_frr: float = TARGET_FRR,
              min_area: float | None = None, source: str = "") -> dict:
    """The bundle's "calibration" section from good images' scores and maps (at their own size).
    ``min_area``: a fraction of the image (< 1) or pixels of the calibration images (≥ 1); None
    calibrates it."""
    for name, value in (("target_frr", target_frr), ("min_area", min_area)):
        CALIBRATION_CONSTRAINTS[name].check(name, value)
    g = guarantee(len(scores), target_frr)
    bad = int(np.sum(~np.isfinite(np.asarray(scores, dtype=np.float64))))
    bad += sum(not np.isfinite(m).all() for m in maps)
    if bad:
        raise InspectError(f"{source or 'calibration'}: the model gives {bad} non-finite (NaN or inf) scores or maps "
                           f"on good images, so no threshold can be set; the model is broken (training diverged?): "
                           f"fit it again, e.g. with a lower --lr")
    image_t = conformal_threshold(scores, target_frr)
    pixel_t = pixel_threshold(maps, target_frr)
    areas = [m.shape[0] * m.shape[1] for m in maps]
    auto = min_area is None
    if auto:
        # + one pixel: a good part must show a region strictly larger than the k-th largest calibration region
        largest = [largest_region_area(m, pixel_t) / a for m, a in zip(maps, areas)]
        fraction = conformal_threshold(largest, target_frr) + 1.0 / float(np.median(areas))
    else:
        fraction = area_fraction(min_area, areas)
    return {"version": CALIBRATION_VERSION, "target_frr": target_frr, "n": g.n, "rank": g.rank,
            "image_threshold": image_t, "pixel_threshold": pixel_t, "min_area_fraction": min(fraction, 1.0),
            "min_area": math.ceil(fraction * float(np.median(areas)) - 1e-9),
            "min_area_source": "calibrated" if auto else "user",
            "expected_frr_bound": g.expected_frr_bound, "prob_frr_within_target": g.prob_within_target,
            "frr_95": g.frr_95, "guarantee": g.text(), "normalized_score": NORMALIZED_TEXT,
            "source": source, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inspect_ad_version": __version__}


def min_area_text(calibration: dict) -> str:
    """'2.71% of the image (444 px at the calibration images' size)', or a version-1 calibration's pixels."""
    fraction = calibration.get("min_area_fraction")
    if fraction is None:
        return f"{calibration['min_area']} px (a version-1 calibration: pixels; calibrate again for a fraction)"
    return f"{fraction:.3%} of the image ({calibration['min_area']} px at the calibration images' size)"


def check_calibration(calibration: dict | None, where: str = "the model") -> dict:
    if not calibration:
        raise InspectError(f"{where} has no threshold yet; run 'inspect-ad calibrate --model ... --good DIR' "
                           f"on defect-free images")
    if calibration.get("version", 1) > CALIBRATION_VERSION:
        raise InspectError(f"{where} was calibrated by a newer inspect-ad (calibration version "
                           f"{calibration.get('version')}); upgrade inspect-ad or re-run 'inspect-ad calibrate'")
    return calibration


# --- held-out split --------------------------------------------------------------------------

def holdout_split(items: Sequence[T], size: float | int, seed: int = 0,
                  purpose: str = "calibration") -> tuple[list[T], list[T]]:
    """(kept, held out): ``size`` < 1 is a fraction, ≥ 1 a count; deterministic from ``seed``.
    Both lists keep the input order."""
    n = len(items)
    n_hold = int(size) if size >= 1 else int(round(size * n))
    if not 0 < n_hold < n:
        raise InspectError(f"{purpose} split {size} leaves {n_hold} of {n} images for {purpose}; "
                           f"choose a fraction between 0 and 1 that keeps images on both sides")
    held = set(np.random.default_rng(seed).permutation(n)[:n_hold].tolist())
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]
