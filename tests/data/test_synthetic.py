from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_ad.data.synthetic import (CATEGORIES, DEFECT_TYPES, MAX_AREA, MIN_AREA, MIN_DIFF, MIN_MEAN_DIFF,
                                       apply_defect, make_category, write_mvtec)
from inspect_ad.errors import InspectError

SMALL = dict(n_train=2, n_test_good=1, n_test_per_defect=1)


def _arrays(cat):
    return cat.train + [s.image for s in cat.test] + [s.mask for s in cat.test if s.mask is not None]


def test_catalogue_has_the_promised_names():
    assert {"brick", "gravel", "grass"} <= set(CATEGORIES)
    assert set(DEFECT_TYPES) == {"scratch", "crack", "hole", "stain", "missing", "displaced", "color"}


def test_same_seed_gives_identical_arrays():
    a, b = make_category("gravel", **SMALL, seed=3), make_category("gravel", **SMALL, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b), strict=True))


def test_different_seed_gives_different_images():
    a, b = make_category("gravel", **SMALL, seed=0), make_category("gravel", **SMALL, seed=1)
    assert not np.array_equal(a.train[0], b.train[0])
    assert not np.array_equal(a.test[-1].mask, b.test[-1].mask)


def test_test_set_does_not_depend_on_train_size():
    a = make_category("brick", n_train=1, n_test_good=1, n_test_per_defect=1)
    b = make_category("brick", n_train=5, n_test_good=1, n_test_per_defect=1)
    assert np.array_equal(a.train[0], b.train[0])
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a.test, b.test, strict=True))


def test_calibration_images_are_new_good_images_that_change_nothing_else(tmp_path):
    a = make_category("brick", **SMALL, size=32)
    b = make_category("brick", **SMALL, size=32, n_calibration=2)
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b), strict=True))
    assert len(b.calibration) == 2 and not any(np.array_equal(c, t) for c in b.calibration for t in b.train)
    written = write_mvtec(tmp_path, ["brick"], **SMALL, size=32, n_calibration=2)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written if "calibration" in p.parts) == \
        ["brick/calibration/000.png", "brick/calibration/001.png"]


@pytest.mark.parametrize("name", CATEGORIES)
def test_shapes_dtypes_labels_and_names(name):
    cat = make_category(name, n_train=2, n_test_good=2, n_test_per_defect=1, size=64)
    assert cat.name == name and len(cat.train) == 2 and len(cat.test) == 2 + len(DEFECT_TYPES)
    for img in cat.train:
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    for s in cat.test:
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        if s.label == "good":
            assert s.mask is None
        else:
            assert s.mask.shape == (64, 64) and s.mask.dtype == np.uint8
            assert set(np.unique(s.mask)) == {0, 255}
    assert [s.label for s in cat.test] == ["good", "good", *DEFECT_TYPES]
    assert [s.name for s in cat.test][:3] == ["good/000", "good/001", f"{DEFECT_TYPES[0]}/000"]


def test_images_are_coloured_not_grey():
    img = make_category("grass", **SMALL).train[0].astype(int)
    assert (img[..., 1] - img[..., 2]).mean() > 40  # grass is tinted green


@pytest.mark.parametrize("name", CATEGORIES)
@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_defect_mask_is_exactly_the_visible_change(name, kind):
    clean = make_category(name, n_train=1, n_test_good=0, n_test_per_defect=0).train[0]
    for seed in range(3):
        image, mask = apply_defect(clean, kind, np.random.default_rng(seed))
        inside = mask > 0
        diff = np.abs(image.astype(int) - clean.astype(int)).max(-1)
        assert MIN_AREA <= inside.mean() <= MAX_AREA
        assert diff[inside].mean() >= MIN_MEAN_DIFF
        # Every material change is in the mask; at most a few closed-over gaps inside it are not.
        assert not (diff[~inside] > MIN_DIFF).any()
        assert (diff[inside] > MIN_DIFF).mean() > 0.8


def test_unknown_defect_type_lists_valid_ones():
    with pytest.raises(InspectError, match="scratch, crack"):
        apply_defect(np.zeros((32, 32, 3), np.uint8), "dent", np.random.default_rng(0))


def _expected_layout(cat):
    files = {f"{cat}/train/good/{i:03d}.png" for i in range(2)} | {f"{cat}/test/good/000.png"}
    for kind in DEFECT_TYPES:
        files |= {f"{cat}/test/{kind}/000.png", f"{cat}/ground_truth/{kind}/000_mask.png"}
    return files


def test_write_mvtec_layout_and_content(tmp_path):
    written = write_mvtec(tmp_path, ["brick", "grass"], **SMALL, size=48)
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == _expected_layout("brick") | _expected_layout("grass")
    assert {p.relative_to(tmp_path).as_posix() for p in written} == on_disk
    cat = make_category("brick", **SMALL, size=48)
    stain = next(s for s in cat.test if s.label == "stain")
    img = cv2.imread(str(tmp_path / "brick/test/stain/000.png"))[:, :, ::-1]
    mask = cv2.imread(str(tmp_path / "brick/ground_truth/stain/000_mask.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(img, stain.image)  # PNG is lossless and RGB order is kept
    assert mask.shape == img.shape[:2] and np.array_equal(mask, stain.mask)


def test_write_mvtec_refuses_non_empty_category(tmp_path):
    (tmp_path / "gravel").mkdir()
    (tmp_path / "gravel" / "keep.txt").write_text("mine")
    with pytest.raises(InspectError, match="choose another --out or delete it"):
        write_mvtec(tmp_path, ["brick", "gravel"], **SMALL, size=32)
    assert not (tmp_path / "brick").exists()  # refused before writing anything
    assert (tmp_path / "gravel" / "keep.txt").read_text() == "mine"


def test_write_mvtec_accepts_empty_category_folder(tmp_path):
    (tmp_path / "grass").mkdir()
    assert write_mvtec(tmp_path, ["grass"], **SMALL, size=32)


def test_unknown_category_lists_valid_ones(tmp_path):
    with pytest.raises(InspectError, match="choose from: brick, gravel, grass"):
        write_mvtec(tmp_path, ["carpet"])
    with pytest.raises(InspectError, match="carpet"):
        make_category("carpet")
    assert not any(Path(tmp_path).iterdir())
