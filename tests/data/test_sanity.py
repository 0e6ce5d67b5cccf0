"""The input checks on 16-bit images (inspect_ad/data/sanity.py): saturation is at 65535, not 255."""
import numpy as np

from inspect_ad.data.sanity import calibration_problem, input_problem, input_stats


def part16(seed=0):
    """A 16-bit part: mid grey with texture spanning many 8-bit levels."""
    return np.random.default_rng(seed).integers(20000, 40000, (24, 24, 1)).astype(np.uint16)


def test_a_plain_16_bit_part_is_plausible_against_its_training_images():
    stats = input_stats([part16(i) for i in range(3)])
    assert input_problem(part16(5), stats) is None
    assert 75 < stats["mean_min"] < 120                     # in 8-bit grey levels, as for 8-bit images


def test_a_blank_16_bit_frame_is_flagged():
    flat = 30000 + np.random.default_rng(0).integers(0, 20, (24, 24, 1)).astype(np.uint16)   # noise of 20/65535
    assert input_problem(flat).startswith("blank frame")


def test_16_bit_saturation_is_at_65535_not_255():
    img = part16()
    img[:16] = 65535
    assert "saturated" in input_problem(img)
    img[:16] = 255                                           # dark, but far from 16-bit saturation
    assert input_problem(img) is None
    eight = (part16() // 257).astype(np.uint8)
    eight[:16] = 255                                         # where an 8-bit image saturates
    assert "saturated" in input_problem(eight)


def colour(seed=0, shape=(24, 24)):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(60, 80, shape), rng.integers(90, 110, shape), rng.integers(130, 150, shape)],
                    axis=2).astype(np.uint8)


def test_calibration_images_like_the_training_images_pass():
    stats = input_stats([colour(i) for i in range(3)])
    assert calibration_problem(colour(7), stats, 3) is None


def test_a_grey_calibration_image_for_a_colour_model_is_named():
    stats = input_stats([colour(i) for i in range(3)])
    grey = np.repeat(colour(7).mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    assert calibration_problem(grey, stats, 3) == "a grey image, and the model was trained on colour images"


def test_calibration_images_of_other_grey_levels_or_sizes_are_named():
    stats = input_stats([part16(i) for i in range(3)])         # mean grey level about 117, 24×24
    assert calibration_problem(part16(5), stats, 1) is None
    darker = part16(5) - np.uint16(20 * 257)                   # 20 levels darker: inspect's margin is 32, this 16
    assert input_problem(darker, stats) is None
    assert calibration_problem(darker, stats, 1).startswith("mean grey level 96, and the training images' was 117-118")
    assert "48×48 pixels" in calibration_problem(np.tile(part16(5), (2, 2, 1)), stats, 1)
