"""Reading image files (inspect_ad/data/io.py)."""
import cv2
import numpy as np
import pytest

from conftest import noise

from inspect_ad.data.io import read_image
from inspect_ad.errors import InspectError


def test_float_tiff_is_read_by_its_range(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), np.full((8, 8), 0.5, np.float32))
    assert read_image(tmp_path / "f.tif").mean() == 128


def test_truncated_jpeg_is_unreadable(tmp_path):
    ok, buf = cv2.imencode(".jpg", noise(np.random.default_rng(0)))
    (tmp_path / "t.jpg").write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    with pytest.raises(InspectError, match="file is truncated"):
        read_image(tmp_path / "t.jpg")
