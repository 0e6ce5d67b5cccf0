import subprocess
import sys

import numpy as np
import pytest

from inspect_ad.data.preprocess import Preprocessing


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
    code = ("import sys, inspect_ad.cli, inspect_ad.detector, inspect_ad.evaluation; "
            "sys.exit('albumentations' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
