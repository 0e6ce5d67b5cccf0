import numpy as np
import pytest

from inspect_ad.errors import InspectError
from inspect_ad.scoring.metrics import (aupro, aupro_reference, auroc, auroc_per_group, f1_max, flag_top_fraction,
                                        image_auroc, image_f1max, pixel_auroc, pixel_f1max, precision_recall_f1,
                                        pro_curve, psnr, recall_at_frr, roc_curve, threshold_at_frr)


@pytest.fixture
def two_images():
    """Two 4x4 images, three regions, four distinct scores (0.9, 0.8, 0.5, 0).

    Image A: defects at (0,0) and (1,1) -> ONE region of 2 pixels (diagonal = 8-connected),
             and (3,3) -> a region of 1 pixel. 13 good pixels, 5 of them score 0.8.
    Image B: 2x2 defect at rows/cols 1..2 -> a region of 4 pixels; 12 good pixels,
             5 of them (row 0 and (3,0)) score 0.5.
    25 good pixels, R = 3 regions.
    """
    a_mask = np.zeros((4, 4), dtype=np.uint8)
    a_mask[0, 0] = a_mask[1, 1] = a_mask[3, 3] = 255  # any nonzero value is a defect
    a_map = np.zeros((4, 4))
    a_map[0, 0], a_map[3, 3] = 0.9, 0.5  # (1,1) stays 0
    for rc in [(0, 2), (0, 3), (1, 3), (2, 0), (2, 1)]:
        a_map[rc] = 0.8
    b_mask = np.zeros((4, 4), dtype=bool)
    b_mask[1:3, 1:3] = True
    b_map = np.zeros((4, 4))
    b_map[1, 1] = b_map[1, 2] = 0.9
    b_map[2, 1] = b_map[2, 2] = 0.5
    b_map[0, :] = 0.5
    b_map[3, 0] = 0.5
    return [a_mask, b_mask], [a_map, b_map]


def random_set(seed, sizes=((12, 9), (7, 11), (10, 10)), decimals=None):
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for h, w in sizes:
        mask = rng.random((h, w)) < 0.15
        amap = rng.random((h, w)) + 0.5 * mask
        if decimals is not None:
            amap = np.round(amap, decimals)  # many ties
        masks.append(mask)
        maps.append(amap)
    masks[0][0, 0] = True  # at least one region whatever the seed
    return masks, maps


def test_pro_curve_hand_case(two_images):
    # t=0.9: region A1 1/2, A2 0/1, B 2/4, no good pixel   -> (0,    (1/2+0+1/2)/3 = 1/3)
    # t=0.8: + 5 good pixels of A                          -> (5/25, 1/3)
    # t=0.5: + A2 pixel, 2 more of B, 5 good pixels of B   -> (10/25, (1/2+1+1)/3 = 5/6)
    # t=0.0: everything                                    -> (1, 1)
    fpr, pro = pro_curve(*two_images)
    np.testing.assert_allclose(fpr, [0, 0, 0.2, 0.4, 1])
    np.testing.assert_allclose(pro, [0, 1 / 3, 1 / 3, 5 / 6, 1])


def test_aupro_hand_case_interpolates_at_limit(two_images):
    # [0, 0.2]: 0.2 * 1/3 = 1/15 (the jump at fpr 0 has no area)
    # at 0.3, halfway from (0.2, 1/3) to (0.4, 5/6): pro = 1/3 + 1/4 = 7/12
    # [0.2, 0.3]: 0.1 * (1/3 + 7/12) / 2 = 11/240;  total 27/240 = 9/80;  / 0.3 = 0.375
    assert aupro(*two_images) == pytest.approx(0.375, abs=1e-12)
    assert aupro_reference(*two_images) == pytest.approx(0.375, abs=1e-12)


def test_aupro_hand_case_full_range(two_images):
    # 1/15 + 0.2 * (1/3 + 5/6)/2 + 0.6 * (5/6 + 1)/2 = 4/60 + 7/60 + 33/60 = 11/15
    assert aupro(*two_images, fpr_limit=1.0) == pytest.approx(11 / 15, abs=1e-12)


def test_aupro_limit_on_a_curve_point(two_images):
    # limit 0.2 lands on the point (0.2, 1/3): (1/15) / 0.2 = 1/3, no interpolation
    assert aupro(*two_images, fpr_limit=0.2) == pytest.approx(1 / 3, abs=1e-12)


def test_aupro_uses_8_connectivity(two_images):
    # with 4-connectivity A1 would split in two regions and the first PRO point would be
    # (1 + 0 + 0 + 1/2)/4 = 3/8 instead of 1/3
    _, pro = pro_curve(*two_images)
    assert pro[1] == pytest.approx(1 / 3)


@pytest.mark.parametrize("transform", [np.exp, lambda x: 3 * x + 7, lambda x: x**3])
def test_aupro_invariant_under_increasing_transforms(transform):
    # float64 maps rounded to 2 decimals stay injective under these transforms
    masks, maps = random_set(3, decimals=2)
    expected = aupro(masks, maps)
    assert aupro(masks, [transform(m) for m in maps]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1, 2])
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_reference(seed, decimals, fpr_limit):
    masks, maps = random_set(seed, decimals=decimals)
    fast = aupro(masks, maps, fpr_limit)
    assert fast == pytest.approx(aupro_reference(masks, maps, fpr_limit), abs=1e-6)
    assert 0.0 <= fast <= 1.0


def test_aupro_accepts_float32_and_int_maps():
    masks, maps = random_set(1, decimals=2)
    expected = aupro(masks, maps)
    assert aupro(masks, [(m * 100).astype(np.int16) for m in maps]) == pytest.approx(expected, abs=1e-12)
    assert aupro(masks, [m.astype(np.float32) for m in maps]) == pytest.approx(expected, abs=1e-9)


def test_aupro_stacked_array_input(two_images):
    masks, maps = two_images
    assert aupro(np.stack(masks), np.stack(maps)) == pytest.approx(0.375)


def test_aupro_perfect_and_constant_maps():
    masks, _ = random_set(0)
    perfect = [m.astype(float) for m in masks]
    assert aupro(masks, perfect) == pytest.approx(1.0)
    # a constant map is one threshold: the curve jumps from (0,0) straight to (1,1)
    constant = [np.zeros(m.shape) for m in masks]
    assert aupro(masks, constant, fpr_limit=1.0) == pytest.approx(0.5)


def test_aupro_no_defects_is_an_error():
    with pytest.raises(ValueError, match="aupro needs at least one defective region; the test set has none"):
        aupro([np.zeros((3, 3))], [np.ones((3, 3))])


def test_aupro_no_good_pixels_is_an_error():
    with pytest.raises(ValueError, match="defect-free"):
        aupro([np.ones((3, 3))], [np.ones((3, 3))])


def test_aupro_shape_mismatch_names_index():
    masks = [np.zeros((4, 4)), np.ones((4, 4))]
    maps = [np.zeros((4, 4)), np.zeros((4, 5))]
    with pytest.raises(InspectError, match=r"mask 1 has shape \(4, 4\) but map 1 has shape \(4, 5\)"):
        aupro(masks, maps)


def test_aupro_count_mismatch_and_bad_limit(two_images):
    masks, maps = two_images
    with pytest.raises(ValueError, match="got 2 masks but 1 maps"):
        aupro(masks, maps[:1])
    with pytest.raises(ValueError, match=r"fpr_limit must be in \(0, 1\]"):
        aupro(masks, maps, fpr_limit=0)


def test_map_with_nan_is_an_error(two_images):
    masks, maps = two_images
    maps[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="map 1 contains NaN"):
        pixel_auroc(masks, maps)


def test_roc_curve_with_tie():
    # thresholds 0.9: TP 1, FP 0; 0.5 (one pos + one neg tied): TP 2, FP 1; 0.2: TP 2, FP 2
    fpr, tpr, thr = roc_curve([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.5, 0.2])


def test_auroc_hand_cases():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # pairs: 0.5 vs 0.5 tie = 1/2, 0.5 > 0.2, 0.9 beats both -> 3.5 / 4
    assert image_auroc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)


def test_auroc_per_group_pits_all_negatives_against_each_group():
    labels = [0, 0, 1, 1, 1]
    scores = [0.2, 0.6, 0.9, 0.4, 0.7]
    groups = ["n", "n", "a", "b", "b"]
    # a: 0.9 beats both negatives -> 1; b: 0.4 beats 0.2 only, 0.7 beats both -> 3/4
    assert auroc_per_group(labels, scores, groups) == {"a": 1.0, "b": pytest.approx(0.75)}
    with pytest.raises(ValueError, match="one group per label"):
        auroc_per_group(labels, scores, groups[:4])


@pytest.mark.parametrize("seed", range(3))
def test_auroc_equals_mann_whitney_u(seed):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(seed)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + labels, 1)  # heavy ties
    u = stats.mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert auroc(labels.astype(int), scores) == pytest.approx(u / (labels.sum() * (~labels).sum()), abs=1e-12)


def test_pixel_auroc_pools_pixels_of_different_sizes():
    masks = [np.array([[0, 1]]), np.array([[0], [0], [3]])]
    maps = [np.array([[0.1, 0.7]]), np.array([[0.2], [0.8], [0.9]])]
    # pooled: pos {0.7, 0.9}, neg {0.1, 0.2, 0.8}: 0.7 beats 2, 0.9 beats 3 -> 5/6
    assert pixel_auroc(masks, maps) == pytest.approx(5 / 6)


def test_auroc_one_class_is_an_error():
    with pytest.raises(ValueError, match="needs both normal and anomalous"):
        auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="needs both normal and anomalous"):
        pixel_auroc([np.ones((2, 2))], [np.zeros((2, 2))])


def test_labels_must_be_binary():
    with pytest.raises(ValueError, match="labels must be 0"):
        auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="got 3 labels but 2 scores"):
        auroc([0, 1, 1], [0.1, 0.2])


def test_f1_max_hand_case():
    # P=3; thresholds 0.9..0.2 give TP/predicted 1/1, 2/2, 2/3, 3/4, 3/5,
    # F1 = 2TP/(predicted + 3) = 2/4, 4/5, 4/6, 6/7, 6/8 -> max 6/7
    assert f1_max([1, 1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.2]) == pytest.approx(6 / 7)


def test_f1_max_counts_a_tie_group_together():
    # at 0.5 all three tied samples are predicted positive: F1 = 2/(3+1) = 0.5; at 0.1: 2/5.
    # Breaking the tie with the positive first would wrongly report F1 = 1.
    assert image_f1max([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.1]) == pytest.approx(0.5)


def test_pixel_f1max(two_images):
    # 7 defect pixels; at 0.9: TP 3, predicted 3 -> 6/10; at 0.8: 6/15; at 0.5: TP 6,
    # predicted 3+5+1+2+5 = 16 -> 12/23; at 0: 14/39 -> max 0.6
    assert pixel_f1max(*two_images) == pytest.approx(0.6)


def test_f1_max_without_positives_is_an_error():
    with pytest.raises(ValueError, match="at least one anomalous"):
        f1_max([0, 0], [0.1, 0.2])


def test_the_1pct_frr_threshold_leaves_one_of_100_good_scores_above_it():
    labels, scores = np.r_[np.zeros(100), np.ones(4)], np.r_[np.arange(100.0), 98.5, 99.5, 50, 200]
    assert threshold_at_frr(labels, scores, 0.01) == 98.0
    assert recall_at_frr(labels, scores, 0.01) == 0.75       # 98.5, 99.5 and 200 are above 98


def test_with_fewer_than_100_good_images_the_1pct_frr_threshold_is_their_highest_score():
    labels, scores = np.r_[np.zeros(6), np.ones(2)], np.r_[np.arange(6.0), 4.5, 7]
    assert threshold_at_frr(labels, scores, 0.01) == 5.0
    assert recall_at_frr(labels, scores, 0.01) == 0.5


def test_psnr_hand_cases():
    # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(np.zeros((2, 2)), np.full((2, 2), 0.1)) == pytest.approx(20.0)
    # uint8 scale: MSE 25.5^2 with range 255 -> also 20 dB
    assert psnr(np.zeros(3), np.full(3, 25.5), data_range=255) == pytest.approx(20.0)
    assert psnr(np.ones(4), np.ones(4)) == float("inf")


def test_psnr_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="data_range must be > 0"):
        psnr(np.zeros(3), np.zeros(3), data_range=0)


def test_metrics_module_does_not_import_torch():
    import ast

    import inspect_ad.scoring.metrics as metrics

    tree = ast.parse(open(metrics.__file__).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "torch" not in imported


def test_flag_top_fraction_flags_exactly_k_highest():
    flagged = flag_top_fraction(np.array([0.1, 5.0, 0.3, 2.0, 0.2, 0.0, 0.5, 0.4, 0.6, 0.7]), 0.2)
    assert flagged.tolist() == [False, True, False, True] + [False] * 6
    assert flag_top_fraction(np.zeros(7), 0.2).sum() == 1  # ties: still round(0.2 * 7)


def test_precision_recall_f1_of_positive_class():
    pred = np.array([1, 1, 1, 0, 0, 0], bool)
    true = np.array([1, 1, 0, 1, 0, 0], bool)
    p, r, f1 = precision_recall_f1(pred, true)
    assert (p, r) == pytest.approx((2 / 3, 2 / 3)) and f1 == pytest.approx(2 / 3)
    assert precision_recall_f1(np.zeros(3, bool), np.ones(3, bool)) == (0.0, 0.0, 0.0)
