"""Reading image files (inspect_ad/data/io.py)."""
import cv2
import numpy as np
import pytest

from conftest import noise

from inspect_ad.data.io import convert_channels, read_image, to_uint8
from inspect_ad.errors import InspectError


def test_float_tiff_is_read_by_its_range_at_16_bits(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), np.full((8, 8), 0.5, np.float32))
    img = read_image(tmp_path / "f.tif")
    assert img.dtype == np.uint16 and img.mean() == 32768 and to_uint8(img).mean() == 128


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_files_keep_every_bit_and_rgb_order(tmp_path, suffix):
    rgb = np.random.default_rng(0).integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / f"c{suffix}"), rgb[:, :, ::-1])          # OpenCV writes BGR
    img = read_image(tmp_path / f"c{suffix}")
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img, rgb)


def test_16_bit_channels_convert_without_losing_depth():
    grey = np.array([[[1], [65535]]], np.uint16)
    rgb = convert_channels(grey, 3)
    assert rgb.dtype == np.uint16 and rgb.shape == (1, 2, 3) and (rgb[0, 1] == 65535).all()
    np.testing.assert_array_equal(convert_channels(rgb, 1), grey)
    rgb[0, 0, 2] = 2                                                      # one channel differs by 1/65535
    with pytest.raises(InspectError, match="colour image"):
        convert_channels(rgb, 1)


def test_to_uint8_rounds_16_bits_and_keeps_8_bit_images_as_they_are():
    img = np.array([0, 128, 129, 65406, 65407, 65535], np.uint16)
    assert to_uint8(img).tolist() == [0, 0, 1, 254, 255, 255]
    eight = np.arange(256, dtype=np.uint8)
    assert to_uint8(eight) is eight


def test_truncated_jpeg_is_unreadable(tmp_path):
    ok, buf = cv2.imencode(".jpg", noise(np.random.default_rng(0)))
    (tmp_path / "t.jpg").write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    with pytest.raises(InspectError, match="file is truncated"):
        read_image(tmp_path / "t.jpg")
