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
above it (pixels of one image are correlated, so this is an empirical rate, not a guarantee).
Defect mask: pixels above the pixel threshold, keeping only 8-connected regions of at least
``min_area`` pixels. By default ``min_area`` is calibrated like the image threshold, on the area
of each calibration image's largest region, so a good part shows any defect region with
probability ≤ α as well.

Normalised score (portable between models and thresholds): with τ the image threshold,

    u(s) = s / (2τ)        for s ≤ τ        (0 .. 0.5)
    u(s) = 1 − τ / (2s)    for s > τ        (0.5 .. 1)

monotone, continuous with a continuous slope at τ, u(τ) = 0.5, so FAIL ⇔ u > 0.5.
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
from inspect_ad.errors import InspectError

CALIBRATION_VERSION = 1


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


def defect_regions(amap: np.ndarray, threshold: float, min_area: int = 1) -> tuple[np.ndarray, list[list[int]]]:
    """The mask of the pixels above ``threshold`` in 8-connected regions of at least ``min_area``
    pixels, and those regions' boxes [x0, y0, x1, y1] (x1, y1 exclusive), largest first; regions of
    one size in raster order of their first pixel."""
    labels, props = _components(amap > threshold)
    keep = props[:, cv2.CC_STAT_AREA] >= max(1, min_area)
    keep[0] = False
    kept = np.flatnonzero(keep)
    area, top, left, width, height = (props[:, c] for c in (cv2.CC_STAT_AREA, cv2.CC_STAT_TOP, cv2.CC_STAT_LEFT,
                                                            cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    # OpenCV numbers regions in another order than a raster scan: ties go by the first pixel
    first = {k: (top[k], int(np.argmax(labels[top[k]] == k))) for k in kept}
    order = sorted(kept, key=lambda k: (-area[k], first[k]))
    boxes = [[int(left[k]), int(top[k]), int(left[k] + width[k]), int(top[k] + height[k])] for k in order]
    return (keep[labels] if boxes else np.zeros(labels.shape, bool)), boxes


# --- normalised score and decision -----------------------------------------------------------

def normalized_score(score: float | np.ndarray, threshold: float) -> float | np.ndarray:
    """Monotone map with threshold -> 0.5 (see the module docstring)."""
    s = np.maximum(np.asarray(score, dtype=np.float64), 0.0)
    t = max(float(threshold), 1e-12)
    out = np.where(s <= t, s / (2 * t), 1.0 - t / (2 * np.maximum(s, t)))
    return float(out) if out.ndim == 0 else out


@dataclass
class Judgement:
    """One part's decision: FAIL when the image score is above the calibrated threshold, or is not
    a number at all (a diverged model must never pass a part); INVALID when the input is not a
    plausible photo of a part (``reason`` says why)."""

    decision: Decision
    normalized: float
    mask: np.ndarray
    boxes: list[list[int]]
    reason: str | None = None

    @property
    def defect_area(self) -> int:
        return int(self.mask.sum())


def judge(score: float, amap: np.ndarray, calibration: dict, invalid_input: str | None = None) -> Judgement:
    """``invalid_input``: why the image is not a plausible input (see :mod:`inspect_ad.data.sanity`), if it is not."""
    mask, boxes = defect_regions(amap, calibration["pixel_threshold"], calibration["min_area"])
    if invalid_input:
        return Judgement(INVALID, float("nan"), mask, boxes, f"invalid input: {invalid_input}")
    if not math.isfinite(score):
        # NaN compares False with any threshold: without this a broken model passes every part
        return Judgement(FAIL, 1.0, mask, boxes, f"{INVALID_SCORE} ({score})")
    decision = FAIL if score > calibration["image_threshold"] else PASS
    return Judgement(decision, normalized_score(score, calibration["image_threshold"]), mask, boxes)


def decisions(fail: Sequence[bool], invalid: Sequence[bool] | None = None) -> np.ndarray:
    """PASS/FAIL (INVALID where ``invalid``) per sample, as a numpy string array: it compares with
    both ``"FAIL"`` and ``Decision.FAIL``."""
    out = np.where(np.asarray(fail, dtype=bool), FAIL.value, PASS.value).astype(_DECISION_DTYPE)
    if invalid is not None:
        out[np.asarray(invalid, dtype=bool)] = INVALID.value
    return out


# --- calibration record ----------------------------------------------------------------------

def calibrate(scores: Sequence[float], maps: Sequence[np.ndarray], target_frr: float = 0.01,
              min_area: int | None = None, source: str = "") -> dict:
    """The bundle's "calibration" section from good images' scores and maps (at their own size)."""
    g = guarantee(len(scores), target_frr)
    bad = int(np.sum(~np.isfinite(np.asarray(scores, dtype=np.float64))))
    bad += sum(not np.isfinite(m).all() for m in maps)
    if bad:
        raise InspectError(f"{source or 'calibration'}: the model gives {bad} non-finite (NaN or inf) scores or maps "
                           f"on good images, so no threshold can be set; the model is broken (training diverged?): "
                           f"fit it again, e.g. with a lower --lr")
    image_t = conformal_threshold(scores, target_frr)
    pixel_t = pixel_threshold(maps, target_frr)
    auto = min_area is None
    if auto:
        # +1: a good part must show a region strictly larger than the k-th largest calibration region to be flagged
        min_area = int(conformal_threshold([largest_region_area(m, pixel_t) for m in maps], target_frr)) + 1
    return {"version": CALIBRATION_VERSION, "target_frr": target_frr, "n": g.n, "rank": g.rank,
            "image_threshold": image_t, "pixel_threshold": pixel_t, "min_area": int(min_area),
            "min_area_source": "calibrated" if auto else "user",
            "expected_frr_bound": g.expected_frr_bound, "prob_frr_within_target": g.prob_within_target,
            "frr_95": g.frr_95, "guarantee": g.text(),
            "normalized_score": "u = s/(2t) for s <= t, 1 - t/(2s) above; t -> 0.5",
            "source": source, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inspect_ad_version": __version__}


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
