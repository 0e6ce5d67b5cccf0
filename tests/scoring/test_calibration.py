"""The conformal threshold, pixel threshold, masks and decisions (inspect_ad/scoring/calibration.py)."""
import json

import numpy as np
import pytest

from inspect_ad.errors import InspectError
from inspect_ad.scoring.calibration import (FAIL, PASS, calibrate, conformal_rank, conformal_threshold,
                                            defect_regions, guarantee, holdout_split, judge, largest_region_area,
                                            min_calibration_size, normalized_score, pixel_threshold)


def test_rank_is_the_split_conformal_order_statistic():
    assert conformal_rank(100, 0.01) == 100   # ⌈101·0.99⌉ = ⌈99.99⌉
    assert conformal_rank(99, 0.01) == 99     # ⌈100·0.99⌉ = 99 exactly, no float round-up
    assert conformal_rank(100, 0.05) == 96    # ⌈101·0.95⌉ = ⌈95.95⌉
    assert conformal_threshold([5, 1, 4, 2, 3], 0.2) == 5   # k = ⌈6·0.8⌉ = 5
    assert conformal_threshold(np.arange(1, 21), 0.1) == 19  # k = ⌈21·0.9⌉ = 19


def test_too_small_n_is_refused_with_the_needed_size():
    assert min_calibration_size(0.01) == 99 and min_calibration_size(0.05) == 19
    conformal_threshold(np.arange(99), 0.01)
    with pytest.raises(InspectError, match="98 good image.*at least 99"):
        conformal_threshold(np.arange(98), 0.01)


def test_guarantee_numbers():
    g = guarantee(100, 0.01)
    assert g.rank == 100 and g.expected_frr_bound == pytest.approx(1 / 101)
    assert g.prob_within_target == pytest.approx(1 - 0.99 ** 100)  # P[Bin(100, .99) ≤ 99]
    assert g.frr_95 == pytest.approx(1 - 0.05 ** (1 / 100))        # 95% quantile of Beta(1, 100)
    assert "100 of 100" in g.text()


@pytest.mark.parametrize("n,alpha", [(100, 0.05), (99, 0.01), (40, 0.1)])
def test_guarantee_holds_in_simulation(n, alpha):
    """Good-part scores U(0,1), so a threshold τ has true false-reject rate exactly 1 − τ.
    Split-conformal math: τ = S_(k), k = ⌈(n+1)(1−α)⌉; F(S_(k)) ~ Beta(k, n+1−k), so
    E[FRR] = 1 − k/(n+1) ≤ α and P[FRR ≤ α] = P[Binomial(n, 1−α) ≤ k−1] (the promised fraction).
    Over 4000 simulated calibrations both must hold up to Monte-Carlo error (4 standard errors)."""
    rng = np.random.default_rng(0)
    m = 4000
    frr = np.array([1.0 - conformal_threshold(rng.random(n), alpha) for _ in range(m)])
    g = guarantee(n, alpha)
    assert frr.mean() <= alpha + 4 * frr.std() / np.sqrt(m)
    p = g.prob_within_target
    assert (frr <= alpha).mean() >= p - 4 * np.sqrt(p * (1 - p) / m)
    assert np.quantile(frr, 0.95) <= g.frr_95 * 1.05


def test_guarantee_holds_on_fresh_parts_with_ties():
    """Discrete (tied) scores: the marginal bound P(new good part fails) ≤ α still holds."""
    rng = np.random.default_rng(1)
    n, alpha, m = 50, 0.1, 3000
    fails = [rng.poisson(3) > conformal_threshold(rng.poisson(3, n), alpha) for _ in range(m)]
    assert np.mean(fails) <= alpha + 4 * np.sqrt(alpha * (1 - alpha) / m)


def test_pixel_threshold_flags_at_most_the_target_fraction():
    maps = [np.arange(100, dtype=np.float32).reshape(10, 10), np.zeros((5, 20), np.float32)]
    t = pixel_threshold(maps, 0.05)   # 200 pixels: at most 10 above
    assert sum(int((m > t).sum()) for m in maps) <= 10
    assert sum(int((m > np.nextafter(t, -1)).sum()) for m in maps) > 10  # and it is the smallest such


def test_mask_keeps_regions_of_min_area_and_boxes_are_xyxy():
    amap = np.zeros((20, 30), np.float32)
    amap[2:6, 3:10] = 1.0     # 28 pixels
    amap[15, 25] = 1.0        # a single pixel
    mask, boxes = defect_regions(amap, 0.5, min_area=5)
    assert mask.sum() == 28 and not mask[15, 25]
    assert boxes == [[3, 2, 10, 6]]
    assert len(defect_regions(amap, 0.5, min_area=1)[1]) == 2


def test_regions_equal_scikit_images_labelling_ties_in_raster_order():
    from skimage.measure import label, regionprops
    rng = np.random.default_rng(0)
    for _ in range(100):   # noise: many regions of one size, whose order OpenCV numbers otherwise
        amap = rng.random(rng.integers(3, 60, 2)).astype(np.float32)
        threshold, min_area = float(np.quantile(amap, rng.uniform(0.4, 0.99))), int(rng.integers(1, 5))
        labels = label(amap > threshold, connectivity=2)
        areas = np.bincount(labels.ravel())
        keep = areas >= min_area
        keep[0] = False
        props = sorted(regionprops(label(keep[labels], connectivity=2)), key=lambda r: -r.area)
        mask, boxes = defect_regions(amap, threshold, min_area)
        assert np.array_equal(mask, keep[labels])
        assert boxes == [[r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]] for r in props]
        assert largest_region_area(amap, threshold) == (areas[1:].max() if areas.size > 1 else 0)


def test_normalized_score_is_monotone_and_maps_threshold_to_half():
    s = np.linspace(0, 50, 1001)
    u = normalized_score(s, 5.0)
    assert normalized_score(5.0, 5.0) == 0.5 and normalized_score(0.0, 5.0) == 0.0
    assert np.all(np.diff(u) > 0) and u.max() < 1
    assert normalized_score(10.0, 5.0) == pytest.approx(0.75) and normalized_score(2.5, 5.0) == 0.25


def test_calibrate_record_and_judge():
    rng = np.random.default_rng(0)
    maps = [rng.random((8, 8)).astype(np.float32) for _ in range(20)]
    scores = [float(m.max()) for m in maps]
    cal = calibrate(scores, maps, 0.05, source="unit")
    assert cal["n"] == 20 and cal["rank"] == 20 and cal["image_threshold"] == max(scores)
    for key in ("version", "target_frr", "pixel_threshold", "min_area", "guarantee", "date", "inspect_ad_version"):
        assert key in cal
    # calibrated min area: larger than the 20th-smallest "largest region" of the calibration maps
    assert cal["min_area_source"] == "calibrated" and cal["min_area"] >= 2
    assert judge(max(scores) * 1.01, maps[0], cal).decision == FAIL
    assert judge(max(scores), maps[0], cal).decision == PASS
    json.dumps(cal)


def test_holdout_split_is_deterministic_and_disjoint():
    items = list(range(50))
    kept, held = holdout_split(items, 0.1, seed=3)
    assert len(held) == 5 and sorted(kept + held) == items
    assert holdout_split(items, 0.1, seed=3) == (kept, held) and holdout_split(items, 0.1, seed=4) != (kept, held)
    assert len(holdout_split(items, 7, seed=0)[1]) == 7


def test_non_finite_score_is_a_fail_with_a_reason():
    cal = {"image_threshold": 1.0, "pixel_threshold": 1.0, "min_area": 1}
    j = judge(float("nan"), np.zeros((4, 4), np.float32), cal)
    assert j.decision == FAIL and "invalid score" in j.reason


def test_calibration_refuses_non_finite_scores():
    maps = [np.zeros((4, 4), np.float32)] * 9
    with pytest.raises(InspectError, match="non-finite"):
        calibrate([0.1] * 8 + [float("nan")], maps, target_frr=0.2)
