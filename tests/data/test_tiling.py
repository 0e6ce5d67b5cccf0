"""Tiles at native resolution and the input size "auto" chooses (inspect_ad/data/tiling.py, preprocess.choose_input)."""
import numpy as np
import pytest

from inspect_ad.data.preprocess import Preprocessing, choose_input
from inspect_ad.data.tiling import stitch, tile_boxes


@pytest.mark.parametrize("shape,tile,overlap", [((1024, 1024), 256, 0.0), ((600, 520), 256, 0.0),
                                                ((3000, 4000), 256, 0.25), ((100, 700), 256, 0.5)])
def test_tiles_cover_the_image_inside_its_borders(shape, tile, overlap):
    boxes = tile_boxes(shape, tile, overlap)
    covered = np.zeros(shape, int)
    for t, left, h, w in boxes:
        assert t >= 0 and left >= 0 and t + h <= shape[0] and left + w <= shape[1]
        assert (h, w) == (min(tile, shape[0]), min(tile, shape[1]))
        covered[t:t + h, left:left + w] += 1
    assert covered.min() >= 1


def test_a_1024_photo_is_16_tiles_of_256_without_overlap():
    assert len(tile_boxes((1024, 1024), 256)) == 16


def test_stitching_averages_overlapping_tiles_and_puts_each_in_its_place():
    boxes = [(0, 0, 4, 4), (0, 2, 4, 4)]
    out = stitch([np.full((4, 4), 1.0), np.full((4, 4), 3.0)], boxes, (4, 6))
    np.testing.assert_array_equal(out[:, :2], 1.0)
    np.testing.assert_array_equal(out[:, 2:4], 2.0)
    np.testing.assert_array_equal(out[:, 4:], 3.0)


def test_auto_keeps_square_images_at_256_square():
    assert choose_input([(512, 512)] * 5) == (256, None)


def test_auto_follows_the_median_aspect_ratio_rounded_to_32():
    assert choose_input([(400, 600)] * 4 + [(400, 400)]) == ((256, 384), None)
    assert choose_input([(320, 128)] * 3) == ((640, 256), None)


def test_auto_tiles_photos_whose_short_side_is_above_twice_the_input():
    assert choose_input([(1024, 1024)] * 3) == (256, 256)
    assert choose_input([(512, 512)] * 3) == (256, None)   # hazelnut's size: resized, not tiled


def test_a_non_square_input_squashes_or_pads_to_its_own_shape():
    img = np.zeros((50, 200, 1), np.uint8)
    assert Preprocessing((64, 128), 1).resize(img).shape == (64, 128, 1)
    prep = Preprocessing((64, 128), 1, resize_mode="pad")
    assert prep.content_box((50, 200)) == (16, 0, 32, 128)   # the width fills 128, the height (32) centred
    assert prep.resize(img).shape == (64, 128, 1)


def test_a_tiled_preprocessing_gives_one_input_per_tile():
    prep = Preprocessing(32, 1, tile=32)
    x = prep.inputs(np.zeros((64, 80, 1), np.uint8))
    assert x.shape == (6, 1, 32, 32)
