"""Reading image files (inspect_ad/data/io.py)."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import encoded, frames_file, noise, png_claiming

from inspect_ad.data import io
from inspect_ad.data.io import convert_channels, distinct_images, read_image, read_mask, scan_images, to_uint8
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


def test_a_file_name_that_is_not_utf8_is_read_by_its_bytes(tmp_path):
    # cv2.imread(name) segfaults on it (issue 31, item 2)
    img = noise(np.random.default_rng(0))
    name = tmp_path / os.fsdecode(b"caf\xe9 \xff.png")
    name.write_bytes(encoded(img))
    np.testing.assert_array_equal(read_image(name)[:, :, 0], img)
    np.testing.assert_array_equal(read_mask(name, img.shape), img > 0)


@pytest.mark.parametrize("fmt,kind", [("TIFF", "multi-page TIFF"), ("GIF", "animated GIF"), ("PNG", "animated PNG"),
                                      ("WEBP", "animated WebP")])
def test_a_file_of_several_frames_is_refused_naming_them(tmp_path, fmt, kind):
    path = tmp_path / f"m.{fmt.lower()}"
    path.write_bytes(frames_file(fmt, 3, defect_on=1))
    with pytest.raises(InspectError, match=f"3 frames \\(an? {kind}\\)"):
        read_image(path)


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "PNG", "WEBP"])
def test_a_single_frame_of_those_formats_is_read(tmp_path, fmt):
    path = tmp_path / f"one.{fmt.lower()}"
    path.write_bytes(frames_file(fmt, 1))
    assert read_image(path).shape[:2] == (40, 48)


@pytest.mark.parametrize("side", [14000, 20000, 30000, 100000])
def test_a_header_claiming_too_many_pixels_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(side, side))
    with pytest.raises(InspectError, match=f"header says {side * side:,} pixels, more than the 178,956,970"):
        read_image(path)


def test_the_pixel_limit_is_pillows(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    path.write_bytes(encoded(noise(np.random.default_rng(0))))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(InspectError, match="says 1,920 pixels, more than the 1,000"):
        read_image(path)


def test_a_complete_jpeg_with_data_after_its_end_is_read(tmp_path):
    img = noise(np.random.default_rng(0))
    (tmp_path / "motion.jpg").write_bytes(encoded(img, ".jpg") + b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    assert read_image(tmp_path / "motion.jpg").shape == (40, 48, 1)


def _with_comment_before_last_scan(jpeg: bytes, comment: bytes) -> bytes:
    last_scan = jpeg.rindex(b"\xff\xda")
    return jpeg[:last_scan] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[last_scan:]


def test_a_truncated_jpeg_with_an_end_marker_in_a_late_header_is_refused(tmp_path):
    # a progressive JPEG has header segments between its scans; an FF D9 inside one of them, in the
    # last kilobyte of a file cut inside the last scan, used to pass for the end marker
    img = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    jpeg = _with_comment_before_last_scan(encoded(img, ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), b"\xff\xd9" * 4)
    last_scan = jpeg.rindex(b"\xff\xda")
    assert len(jpeg) - last_scan > 200
    (tmp_path / "whole.jpg").write_bytes(jpeg)
    assert read_image(tmp_path / "whole.jpg").shape == (64, 64, 1)   # the comment is no damage
    (tmp_path / "cut.jpg").write_bytes(jpeg[:last_scan + 100])
    with pytest.raises(InspectError, match="truncated"):
        read_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_a_png_cut_anywhere_is_truncated(tmp_path, cut):
    data = encoded(noise(np.random.default_rng(0)))
    (tmp_path / "t.png").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InspectError, match="truncated"):
        read_image(tmp_path / "t.png")


def test_a_fifo_is_named_as_one_not_as_missing(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(InspectError, match="is a FIFO"):
        read_image(tmp_path / "pipe.png")             # and never blocks on it


@pytest.mark.parametrize("make,why", [
    (lambda d: os.symlink(d / "gone.png", d / "x.png"), "broken symbolic link"),
    (lambda d: os.symlink(d / "x.png", d / "x.png"), "symbolic link loop"),
    (lambda d: (d / "x.png").mkdir(), "is a folder")])
def test_names_that_are_not_files_say_what_they_are(tmp_path, make, why):
    make(tmp_path)
    with pytest.raises(InspectError, match=why):
        read_image(tmp_path / "x.png")


def _tree(root):
    img = encoded(noise(np.random.default_rng(0)))
    (root / "sub").mkdir(parents=True)
    for name in ("a.png", ".hidden.png", "notes.txt"):
        (root / name).write_bytes(img)
    (root / "b.jpe").write_bytes(encoded(noise(np.random.default_rng(0)), ".jpg"))
    (root / "sub" / "c.gif").write_bytes(frames_file("GIF", 1))
    os.symlink(root / "nowhere.png", root / "dangling.png")
    os.symlink(root, root / "sub" / "loop")
    return root


def test_a_scan_keeps_every_image_name_and_says_what_it_skips(tmp_path):
    scan = scan_images(_tree(tmp_path / "t"), recursive=True)
    assert [p.name for p in scan.images] == ["a.png", "b.jpe", "dangling.png", "c.gif"]
    why = {p.name: reason for p, reason in scan.skipped}
    assert why == {".hidden.png": "a hidden file", "notes.txt": "not an image by its name (.txt)",
                   "loop": "a link to a folder already searched"}
    assert read_image(tmp_path / "t" / "b.jpe").shape[:2] == read_image(tmp_path / "t" / "sub" / "c.gif").shape[:2]


def test_an_unreadable_sub_folder_is_kept_for_its_error(tmp_path, monkeypatch):
    root = _tree(tmp_path / "t")
    real = os.scandir

    def scandir(path="."):   # the tests run as root, whom permissions do not stop
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(io.os, "scandir", scandir)
    scan = scan_images(root, recursive=True)
    assert root / "sub" in scan.images
    with pytest.raises(InspectError, match="cannot read folder .*sub \\(Permission denied\\)"):
        read_image(root / "sub")


def test_distinct_images_drops_the_same_file_links_and_copies(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(encoded(noise(np.random.default_rng(0))))
    (tmp_path / "copy.png").write_bytes(a.read_bytes())
    os.symlink(a, tmp_path / "link.png")
    b = tmp_path / "b.png"
    b.write_bytes(encoded(noise(np.random.default_rng(1))))
    gone = tmp_path / "gone.png"
    kept, dropped = distinct_images([a, a, tmp_path / "link.png", tmp_path / "copy.png", b, gone, gone])
    assert kept == [a, b, gone] and [d for d, _ in dropped] == [a, tmp_path / "link.png", tmp_path / "copy.png", gone]
