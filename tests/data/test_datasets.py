"""inspect_ad/data/datasets.py: what a command line's files and folders expand to, and which test sets
have defect masks."""
import json

import numpy as np
import pytest
from conftest import write_png

from inspect_ad.data.datasets import expand_inputs, from_manifest, from_mvtec, named_inputs
from inspect_ad.errors import InspectError


def test_named_inputs_keep_the_folders_and_never_repeat_a_name(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    a = write_png(tmp_path / "test" / "color" / "000.png", img)
    b = write_png(tmp_path / "test" / "crack" / "000.png", img)
    c = write_png(tmp_path / "loose" / "000.png", img)
    named = named_inputs([tmp_path / "test", c, c])
    assert named == [(a, "test/color/000"), (b, "test/crack/000"), (c, "000"), (c, "000_1")]
    assert expand_inputs([tmp_path / "test", c, c]) == [a, b, c, c]


def mvtec_category(root, masks: list[str]):
    """root/part in MVTec layout: one training image, a good and two 'dent' test images, and the
    ground-truth masks of the dent images named in ``masks``."""
    img = np.zeros((4, 4), np.uint8)
    write_png(root / "part" / "train" / "good" / "000.png", img)
    write_png(root / "part" / "test" / "good" / "000.png", img)
    for name in ("000", "001"):
        write_png(root / "part" / "test" / "dent" / f"{name}.png", img)
    for name in masks:
        write_png(root / "part" / "ground_truth" / "dent" / f"{name}_mask.png", img)
    return from_mvtec(root, "part")


def test_an_mvtec_category_without_ground_truth_has_no_masks(tmp_path):
    data = mvtec_category(tmp_path, masks=[])
    assert [s.mask for s in data.test] == [None, None, None] and data.has_masks() is False


def test_an_mvtec_category_with_one_mask_missing_names_it(tmp_path):
    data = mvtec_category(tmp_path, masks=["000"])
    with pytest.raises(InspectError, match=r"001_mask\.png does not exist.*1 of 2 lack one"):
        data.has_masks()


def test_a_manifest_whose_defect_entries_all_have_null_masks_has_no_masks(tmp_path):
    write_png(tmp_path / "t.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "set.json").write_text(json.dumps({"train": ["t.png"], "test": [
        {"image": "t.png", "mask": None, "label": "good"}, {"image": "t.png", "mask": None, "label": "dent"}]}))
    assert from_manifest(tmp_path / "set.json").has_masks() is False


def test_a_manifest_defect_entry_without_a_mask_among_masked_ones_is_named(tmp_path):
    write_png(tmp_path / "t.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "set.json").write_text(json.dumps({"train": ["t.png"], "test": [
        {"image": "t.png", "mask": "t.png", "label": "dent"}, {"image": "u.png", "mask": None, "label": "dent"}]}))
    with pytest.raises(InspectError, match=r"u\.png \(dent\) has no mask"):
        from_manifest(tmp_path / "set.json").has_masks()
