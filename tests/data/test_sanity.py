"""The input checks on 16-bit images (inspect_ad/data/sanity.py): saturation is at 65535, not 255."""
import numpy as np

from inspect_ad.data.sanity import input_problem, input_stats


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
