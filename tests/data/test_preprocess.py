"""Preprocessing: normalisation, resizing and maps back onto the image (inspect_ad/data/preprocess.py)."""
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from inspect_ad.data.io import read_image
from inspect_ad.data.preprocess import Preprocessing, resize_map, stretch_contrast


def test_stretch_removes_exposure_differences():
    rng = np.random.default_rng(0)
    texture = rng.random((16, 16, 1))
    dark = (20 + 40 * texture).round().astype(np.uint8)       # the same surface, under-exposed
    bright = (100 + 120 * texture).round().astype(np.uint8)   # and with 3x the contrast
    prep = Preprocessing(16, 1, "stretch")
    a, b = prep.to_tensor(dark), prep.to_tensor(bright)
    assert a.min() == 0.0 and a.max() == 1.0
    assert (a - b).abs().max() < 0.03                         # equal up to the 40 grey levels of the dark one
    plain = Preprocessing(16, 1)
    assert (plain.to_tensor(bright) - plain.to_tensor(dark)).mean() > 0.3


def test_stretch_ignores_a_few_hot_pixels_and_survives_a_flat_image():
    img = np.full((20, 20, 1), 100, np.uint8)
    img[:10] = 50
    img[0, :3] = 255                                          # < 1 % of the pixels
    x = Preprocessing(20, 1, "stretch").to_tensor(img)
    assert x[0, 5, 5] == 0.0 and x[0, 15, 5] == 1.0
    flat = Preprocessing(20, 1, "stretch").to_tensor(np.full((20, 20, 1), 7, np.uint8))
    assert np.isfinite(flat.numpy()).all()


def test_unknown_normalization_lists_choices():
    with pytest.raises(ValueError, match="choose one of: divide_by_255, stretch"):
        Preprocessing(16, 1, "zscore")


def test_scoring_and_the_cli_load_without_albumentations():
    # albumentations takes seconds to import and only --augment needs it: a plain fit or a
    # score must not pay for it (and must run where it is not installed).
    code = ("import sys, inspect_ad.cli.image, inspect_ad.detectors.image, inspect_ad.reports.evaluation; "
            "sys.exit('albumentations' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_pad_keeps_the_aspect_ratio_and_maps_return_onto_the_image():
    img = np.zeros((10, 40, 1), np.uint8)
    img[:, :20] = 200                                         # left half bright, right half dark
    prep = Preprocessing(16, 1, resize_mode="pad")
    assert prep.content_box((10, 40)) == (6, 0, 4, 16)        # 40 -> 16 wide, 10 -> 4 high, centred
    x = prep.resize(img)[:, :, 0]
    assert x.shape == (16, 16)
    np.testing.assert_array_equal(x[6:10, :8], 200)           # the image, not stretched vertically
    np.testing.assert_array_equal(x[:6, :8], 200)             # the padding reflects it
    amap = np.zeros((16, 16), np.float32)
    amap[6:10] = 1.0                                          # only the content rows matter
    back = prep.map_to_image(amap, (10, 40))
    assert back.shape == (10, 40) and np.all(back == 1.0)


def test_squash_is_the_default_and_fills_the_square():
    prep = Preprocessing(16, 1)
    assert prep.resize_mode == "squash" and prep.content_box((10, 40)) == (0, 0, 16, 16)
    assert prep.map_to_image(np.ones((16, 16), np.float32), (10, 40)).shape == (10, 40)
    with pytest.raises(ValueError, match="choose one of: squash, pad"):
        Preprocessing(16, 1, resize_mode="crop")


def test_resize_map_returns_original_size():
    assert resize_map(np.ones((8, 8), np.float32), (20, 30)).shape == (20, 30)


def test_an_8_bit_image_gives_the_same_tensor_as_before_16_bit_support():
    img = np.random.default_rng(0).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    before = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
    assert torch.equal(Preprocessing(12, 3).to_tensor(img), before)
    assert torch.equal(Preprocessing(12, 3, "stretch").to_tensor(img), stretch_contrast(before, 1 / 255))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("normalization", ["divide_by_255", "stretch"])
def test_16_bit_files_that_differ_below_8_bits_give_different_tensors(tmp_path, suffix, normalization):
    rng = np.random.default_rng(0)
    coarse = rng.integers(1, 255, (16, 16)).astype(np.uint16) * 257
    fine = coarse + rng.integers(1, 100, coarse.shape).astype(np.uint16)  # < half an 8-bit level more
    assert np.array_equal(np.round(coarse / 257), np.round(fine / 257))   # equal if cut to 8 bits
    prep = Preprocessing(16, 1, normalization)
    tensors = []
    for name, img in (("coarse", coarse), ("fine", fine)):
        cv2.imwrite(str(tmp_path / f"{name}{suffix}"), img)
        tensors.append(prep.to_tensor(prep.resize(read_image(tmp_path / f"{name}{suffix}", 1))))
    assert not torch.equal(*tensors) and all(0 <= t.min() and t.max() <= 1 for t in tensors)


def test_an_8_and_a_16_bit_file_of_one_scene_give_the_same_input():
    eight = np.random.default_rng(0).integers(0, 256, (16, 16, 1)).astype(np.uint8)
    prep = Preprocessing(16, 1)
    assert torch.allclose(prep.to_tensor(eight), prep.to_tensor(eight.astype(np.uint16) * 257), atol=1e-6)
