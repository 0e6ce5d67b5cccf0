"""Reading images and masks with one-line, actionable errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspect_ad.atomic import atomic_write_bytes
from inspect_ad.errors import InspectError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted, so runs are reproducible)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in Path(folder).glob(pattern) if is_image_file(p))


def as_pixels(img: np.ndarray, source: Path | str = "<array>") -> np.ndarray:
    """An image's pixels as uint8 or, for more than 8 bits, uint16, keeping their depth:
    8- and 16-bit integers as they are, floats in [0, 1] at 16 bits, other floats and integers
    clipped to 0-255. Downstream, :func:`full_scale` says what "white" is."""
    if img.dtype in (np.uint8, np.uint16):
        return img
    if img.dtype.kind == "f":
        if not np.isfinite(img).all():
            raise InspectError(f"image {source} has NaN or infinite pixels; re-export it")
        if img.min() >= 0 and img.max() <= 1:  # float images are usually 0-1: clipped to 0-255 they would read as black
            return (img * 65535.0).round().astype(np.uint16)
        return np.clip(img, 0, 255).round().astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def full_scale(img: np.ndarray) -> int:
    """The value of a saturated pixel: 255 for uint8 images, 65535 for uint16 (see :func:`as_pixels`).
    A 12-bit camera's images stored in 16-bit files saturate at 4095, which nothing in the file says."""
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image pixels must be uint8 or uint16, not {img.dtype}; read them with as_pixels")
    return 255 if img.dtype == np.uint8 else 65535


def to_uint8(img: np.ndarray) -> np.ndarray:
    """An image of :func:`as_pixels` at 8 bits, for pictures (thumbnails, overlays) and the input
    checks of :mod:`inspect_ad.data.sanity`; the model's input keeps the full depth."""
    return img if img.dtype == np.uint8 else (img / 257).round().astype(np.uint8)


# The last bytes of a complete file. OpenCV decodes a truncated JPEG (libjpeg only prints
# "Premature end of JPEG file", naming no file) and fills the rest grey: such a photo would be
# judged, trained on and calibrated on as if it were whole.
_TRAILERS = {b"\xff\xd8\xff": b"\xff\xd9", b"\x89PNG\r\n\x1a\n": b"IEND\xaeB`\x82"}  # by magic number


def is_truncated(path: Path) -> bool:
    """Whether a JPEG or PNG file lacks its end marker (other formats: False)."""
    with open(path, "rb") as f:
        head = f.read(8)
        trailer = next((t for magic, t in _TRAILERS.items() if head.startswith(magic)), None)
        if trailer is None:
            return False
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 1024))
        tail = f.read()
    # "in", not "endswith": some cameras append data after the end marker. Inside JPEG scan data
    # 0xFF is always followed by 0x00 or a restart marker, so 0xFFD9 there is the real end.
    return trailer not in tail


def _imread(path: Path, flags: int, what: str) -> np.ndarray:
    """cv2.imread that refuses corrupt and truncated files with one line naming the file."""
    if not path.is_file():
        raise InspectError(f"{what} {path} does not exist; check the path")
    try:
        truncated = is_truncated(path)
    except OSError as e:
        raise InspectError(f"cannot read {what} {path} ({e.strerror}); check its permissions")
    img = None if truncated else cv2.imread(str(path), flags)
    if img is None or img.size == 0:
        why = "the file is truncated (an interrupted copy or upload?)" if truncated else \
            "the file is corrupt or not an image"
        raise InspectError(f"cannot read {what} {path}: {why}; replace or remove it")
    return img


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """(H, W, C) RGB order, at the file's depth: uint8, or uint16 for 16-bit PNG/TIFF (and float
    images, see :func:`as_pixels`); :func:`to_uint8` makes a picture of it. ``channels`` (1 or 3)
    converts when it loses nothing: grey -> RGB always; RGB -> grey only if the three channels
    are equal."""
    path = Path(path)
    img = as_pixels(_imread(path, cv2.IMREAD_UNCHANGED, "image"), path)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] in (3, 4):
        # OpenCV's conversion: numpy's copy of a reversed-channel view took 0.4 ms a 256² image
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    if img.shape[2] not in (1, 3):
        raise InspectError(f"image {path} has {img.shape[2]} channels; convert it to grayscale or RGB")
    return convert_channels(np.ascontiguousarray(img), channels, path)


def convert_channels(img: np.ndarray, channels: int | None, path: Path | str = "<array>") -> np.ndarray:
    if img.ndim == 2:
        img = img[:, :, None]
    if channels is None or img.shape[2] == channels:
        return img
    if channels == 3:
        return np.repeat(img, 3, axis=2)
    if np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 0], img[:, :, 2]):
        return img[:, :, :1]
    raise InspectError(f"image {path} is a colour image but the model works on grayscale images; "
                       f"convert it to grayscale, or fit the model on colour images (fit takes the channels "
                       f"from the training images)")


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Binary (H, W) bool mask; any non-zero pixel is defect. ``shape`` is its image's (H, W)."""
    path = Path(path)
    if not path.is_file():
        raise InspectError(f"mask {path} does not exist; add it or mark the image as good")
    m = _imread(path, cv2.IMREAD_GRAYSCALE, "mask")
    if m.shape != tuple(shape):
        raise InspectError(f"mask {path} is {m.shape[1]}×{m.shape[0]} but its image is {shape[1]}×{shape[0]}; "
                           f"masks must have their image's size")
    return m > 0


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write an RGB or grey uint8 image (atomic: temp file, then rename)."""
    path = Path(path)
    arr = img if img.ndim == 2 or img.shape[2] == 1 else img[:, :, ::-1]
    ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(arr))
    if not ok:
        raise InspectError(f"cannot encode image for {path}; use a .png or .jpg name")
    atomic_write_bytes(path, buf.tobytes())
