"""Reading images and masks with one-line, actionable errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import InspectError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted, so runs are reproducible)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in Path(folder).glob(pattern) if is_image_file(p))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img / 257).round().astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """(H, W, C) uint8, RGB order. ``channels`` (1 or 3) converts when it loses nothing:
    grey -> RGB always; RGB -> grey only if the three channels are equal."""
    path = Path(path)
    if not path.is_file():
        raise InspectError(f"image {path} does not exist; check the path")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InspectError(f"cannot read image {path}: the file is corrupt or not an image; replace or remove it")
    img = _to_uint8(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.shape[2] == 3:
        img = img[:, :, ::-1]
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
                       f"convert it to grayscale or train a model with --channels 3")


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Binary (H, W) bool mask; any non-zero pixel is defect. ``shape`` is its image's (H, W)."""
    path = Path(path)
    if not path.is_file():
        raise InspectError(f"mask {path} does not exist; add it or mark the image as good")
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise InspectError(f"cannot read mask {path}: the file is corrupt or not an image; replace it")
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
