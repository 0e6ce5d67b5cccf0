"""The conformal threshold, pixel threshold, masks and decisions (inspect_ad/scoring/calibration.py)."""
import json

import numpy as np
import pytest

from inspect_ad.errors import InspectError
from inspect_ad.scoring.calibration import (FAIL, PASS, calibrate, conformal_rank, conformal_threshold,
                                            defect_regions, guarantee, holdout_split, judge, largest_region_area,
                                            min_area_pixels, min_area_text, min_calibration_size, normalized_score,
                                            pixel_threshold)


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


def test_normalized_score_is_the_score_in_units_of_the_threshold():
    s = np.linspace(0, 50, 1001)
    u = normalized_score(s, 5.0)
    assert normalized_score(5.0, 5.0) == 1.0 and normalized_score(0.0, 5.0) == 0.0
    assert np.all(np.diff(u) > 0) and normalized_score(12.5, 5.0) == 2.5
    # a threshold of 0 or below (z-scored maps) cannot be divided by: 1 at the threshold, still monotone
    assert normalized_score(-1.0, -1.0) == 1.0 and normalized_score(0.5, -1.0) > 1.0 > normalized_score(-2.0, -1.0)


def _cal(image_threshold=1.0, pixel_threshold=0.5, min_area_fraction=0.1):
    return {"image_threshold": image_threshold, "pixel_threshold": pixel_threshold, "min_area": 0,
            "min_area_fraction": min_area_fraction}


def test_a_pass_has_no_regions_however_much_of_it_is_above_the_pixel_threshold():
    amap = np.full((20, 20), 0.9, np.float32)   # all above the pixel threshold, below the image threshold
    j = judge(0.9, amap, _cal())
    assert j.decision == PASS and j.normalized == pytest.approx(0.9)
    assert j.boxes == [] and j.defect_area == 0


def test_a_fail_reports_the_peak_region_however_small_and_the_large_ones():
    amap = np.zeros((40, 40), np.float32)
    amap[2:4, 2:4] = 2.0        # the peak: 4 px, below the minimum area (0.1 of 1600 px)
    amap[20:35, 20:35] = 0.8    # large, above the pixel threshold only
    amap[10, 30] = 0.7          # a speck: neither
    j = judge(2.0, amap, _cal())
    assert j.decision == FAIL and j.normalized == 2.0
    assert j.boxes == [[20, 20, 35, 35], [2, 2, 4, 4]] and j.defect_area == 225 + 4


def test_every_region_above_the_image_threshold_is_kept_when_the_map_is_in_score_units():
    amap = np.zeros((40, 40), np.float32)
    amap[2:4, 2:4], amap[30, 30] = 2.0, 1.5   # two small regions above the image threshold
    assert len(judge(2.0, amap, _cal()).boxes) == 2
    assert judge(2.0, amap, _cal(), map_in_score_units=False).boxes == [[2, 2, 4, 4]]   # the peak's only


def test_the_minimum_area_is_a_fraction_of_each_image():
    cal = _cal(min_area_fraction=0.02)   # 2% of the image
    small, large = np.zeros((50, 50), np.float32), np.zeros((200, 200), np.float32)
    small[0, 0] = large[0, 0] = 2.0      # the peaks, kept whatever their size
    small[20:27, 20:27] = 0.8            # 49 px of 2500: 1.96%, under 2%
    large[80:108, 80:108] = 0.8          # the same region 4 times larger each way: 784 px of 40000, 1.96%
    assert min_area_pixels(cal, small.shape) == 50 and min_area_pixels(cal, large.shape) == 800
    assert len(judge(2.0, small, cal).boxes) == len(judge(2.0, large, cal).boxes) == 1
    small[27, 20:27] = large[108:112, 80:108] = 0.8   # now 56 px and 896 px: 2.24%, both reported
    assert len(judge(2.0, small, cal).boxes) == len(judge(2.0, large, cal).boxes) == 2


def test_a_version_1_calibration_keeps_its_pixel_minimum_area():
    old = {"version": 1, "image_threshold": 1.0, "pixel_threshold": 0.5, "min_area": 30}
    assert min_area_pixels(old, (1000, 1000)) == 30
    assert "px" in min_area_text(old) and "version-1" in min_area_text(old)


def test_calibrated_minimum_area_is_the_same_fraction_at_any_calibration_size():
    rng = np.random.default_rng(0)
    maps = [rng.random((16, 16)).astype(np.float32) for _ in range(20)]
    big = [np.kron(m, np.ones((4, 4), np.float32)) for m in maps]   # the same maps on 64² images
    small_cal, big_cal = calibrate([1.0] * 20, maps, 0.05), calibrate([1.0] * 20, big, 0.05)
    assert small_cal["min_area_fraction"] == pytest.approx(big_cal["min_area_fraction"], abs=1 / 256)
    # the largest good region scales with the image; the one pixel more is a pixel of each size
    assert big_cal["min_area"] - 1 == 16 * (small_cal["min_area"] - 1)


def test_a_minimum_area_in_pixels_is_kept_as_a_fraction_of_the_calibration_images():
    maps = [np.zeros((10, 20), np.float32)] * 20
    assert calibrate([1.0] * 20, maps, 0.05, min_area=50)["min_area_fraction"] == 0.25
    assert calibrate([1.0] * 20, maps, 0.05, min_area=0.01)["min_area_fraction"] == 0.01


def test_calibrate_record_and_judge():
    rng = np.random.default_rng(0)
    maps = [rng.random((8, 8)).astype(np.float32) for _ in range(20)]
    scores = [float(m.max()) for m in maps]
    cal = calibrate(scores, maps, 0.05, source="unit")
    assert cal["n"] == 20 and cal["rank"] == 20 and cal["image_threshold"] == max(scores)
    for key in ("version", "target_frr", "pixel_threshold", "min_area", "min_area_fraction", "guarantee", "date",
                "inspect_ad_version"):
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
