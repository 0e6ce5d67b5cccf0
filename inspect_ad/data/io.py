"""Reading images and masks with one-line, actionable errors.

Files are read by their bytes (``open``, then ``cv2.imdecode``), never by handing a name to OpenCV,
which crashes on names that are not UTF-8. Before anything is decoded the header is read (Pillow)
and refused in one line when it claims more pixels than the limit (a decompression bomb: Pillow's
limit, ``2 × PIL.Image.MAX_IMAGE_PIXELS``, 179 million pixels, which the environment variable
``INSPECT_AD_MAX_PIXELS`` sets) or several frames (a multi-page TIFF, an animated GIF, PNG or WebP:
this package judges one picture a file, so the other frames would be judged by nobody). JPEG and PNG
files are walked marker by marker (chunk by chunk) to their end, so a truncated file is refused
and data after the end (a motion photo's video) is not mistaken for damage.

Folder scans (:func:`scan_images`) say what they leave out: files that are not images by their
name, hidden files and folders, each with why. Names that look like images but cannot be read as
files (broken or looping symbolic links, FIFOs, folders that cannot be listed) are kept, so that
reading them gives the reason, as an ERROR row of a report or a one-line error.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import cv2
import numpy as np
from PIL import Image

from inspect_ad.atomic import atomic_write_bytes
from inspect_ad.errors import InspectError, printable

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
                  ".pbm", ".pgm", ".ppm", ".pnm")
if os.environ.get("INSPECT_AD_MAX_PIXELS", "").isdigit():   # an explicit choice of the user's
    Image.MAX_IMAGE_PIXELS = int(os.environ["INSPECT_AD_MAX_PIXELS"]) // 2


def max_pixels() -> int | None:
    """The most pixels an image may have (from its header), None for no limit: Pillow's bomb limit."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# --- folder scans ----------------------------------------------------------------------------

@dataclass
class Scan:
    """What a folder holds: ``images`` (sorted; reading one that is not a readable file says why)
    and ``skipped``, (path, why) of everything else."""

    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def scan_images(folder: str | Path, recursive: bool = False, exclude: Iterable[str | Path] = ()) -> Scan:
    """The images in ``folder`` (and its sub-folders, symbolic links followed once each, if
    ``recursive``), none from the ``exclude`` folders (the tool's own output)."""
    skip = [Path(os.path.abspath(f)) for f in exclude]
    scan, seen, todo = Scan(), set(), [Path(folder)]
    while todo:
        d = todo.pop()
        try:
            st = d.stat()
            if (st.st_dev, st.st_ino) in seen:
                scan.skipped.append((d, "a link to a folder already searched"))
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(d))
        except OSError:
            scan.images.append(d)   # reading it says why it cannot be listed: an ERROR row, not a silent gap
            continue
        for e in entries:
            p = Path(d, e.name)
            if inside(Path(os.path.abspath(p)), skip):
                continue
            is_dir = _is_dir(e)
            if e.name.startswith("."):
                scan.skipped.append((p, "a hidden folder" if is_dir else "a hidden file"))
            elif is_dir:
                if recursive:
                    todo.append(p)
                else:
                    scan.skipped.append((p, "a sub-folder (not searched)"))
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                scan.images.append(p)
            elif e.is_symlink() and not p.exists():
                scan.skipped.append((p, "a broken symbolic link"))
            else:
                scan.skipped.append((p, f"not an image by its name ({p.suffix or 'no suffix'})"))
    scan.images.sort()
    return scan


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:   # a link loop, a permission
        return False


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted, so runs are reproducible); what is skipped is logged."""
    scan = scan_images(folder, recursive)
    warn_skipped(scan.skipped, folder)
    return scan.images


def warn_skipped(skipped: list[tuple[Path, str]], where) -> None:
    if skipped:
        path, why = skipped[0]
        log.warning("skipped %d files in %s that are not images (e.g. %s: %s)", len(skipped), printable(str(where)),
                    printable(str(path)), why)


def distinct_images(items: Sequence) -> tuple[list, list[tuple]]:
    """``items`` (paths or arrays) without repeats: the same file (under any name or link) or the
    same bytes again; returns (kept, [(dropped, the item it repeats)]). Unreadable files are kept
    for reading to report."""
    kept, dropped, first = [], [], {}
    for item in items:
        if isinstance(item, np.ndarray):
            keys = [("array", item.shape, str(item.dtype), hashlib.blake2b(np.ascontiguousarray(item).data).digest())]
        else:
            keys = [("path", os.path.realpath(item))]
            if keys[0] not in first:
                try:
                    keys.append(("bytes", hashlib.blake2b(_file_bytes(Path(item))).digest()))
                except InspectError:
                    pass
        seen = next((first[k] for k in keys if k in first), None)
        if seen is not None:
            dropped.append((item, seen))
            continue
        first.update((k, item) for k in keys)
        kept.append(item)
    return kept, dropped


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


# --- reading ---------------------------------------------------------------------------------

# OpenCV decodes a truncated JPEG (libjpeg only prints "Premature end of JPEG file", naming no
# file) and fills the rest grey: such a photo would be judged, trained on and calibrated on as if
# it were whole. So JPEG and PNG files are followed to their end marker, reading their size (and a
# PNG's frame count) on the way: for them that walk, measured at 0.1 ms a 256² JPEG, replaces
# Pillow's header parse (0.8 ms). Inside JPEG scan data 0xFF is followed by 0x00 (stuffing) or a
# restart marker; any other byte after 0xFF (fill bytes aside) is the next marker.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE = {0x01, *range(0xD0, 0xD8)}                      # TEM, RST0-7: markers without a length
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}           # start of frame: the image's size


@dataclass(frozen=True)
class Header:
    """What a file says about itself before it is decoded."""

    fmt: str | None             # as Pillow names it; None: not known (the decoder has the last word)
    pixels: int | None = None
    frames: int = 1
    complete: bool = True       # JPEG, PNG: the end marker is there


def _jpeg(data: bytes) -> Header:
    i, n, pixels = 2, len(data), None
    while i + 1 < n:
        if data[i] != 0xFF:                 # stray bytes between segments: libjpeg skips them too
            i = data.find(b"\xff", i)
            if i < 0:
                break
            continue
        marker = data[i + 1]
        if marker == 0xD9:                  # EOI: what follows (a motion photo's video) is not ours to judge
            return Header("JPEG", pixels)
        if marker == 0xFF or marker in _STANDALONE:
            i += 1 if marker == 0xFF else 2
            continue
        if i + 4 > n or int.from_bytes(data[i + 2:i + 4], "big") < 2:
            break
        if marker in _SOF and pixels is None and i + 9 <= n:
            pixels = int.from_bytes(data[i + 5:i + 7], "big") * int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")   # the payload (EXIF with its thumbnail's FF D9 too)
        if marker == 0xDA:                 # SOS: entropy-coded data up to the next marker
            m = _SCAN_END.search(data, i)
            if m is None:
                break
            i = m.start()
    return Header("JPEG", pixels, complete=False)


def _png(data: bytes) -> Header:
    i, n, pixels, frames = 8, len(data), None, 1
    while i + 12 <= n:
        length, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if kind == b"IHDR" and length >= 8:
            pixels = int.from_bytes(data[i + 8:i + 12], "big") * int.from_bytes(data[i + 12:i + 16], "big")
        elif kind == b"acTL" and length >= 8:   # an animated PNG
            frames = int.from_bytes(data[i + 8:i + 12], "big")
        i += 12 + length
        if kind == b"IEND":
            return Header("PNG", pixels, frames, i <= n)
    return Header("PNG", pixels, frames, complete=False)


def _pillow(data: bytes) -> Header:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(BytesIO(data))
            # a multi-picture JPEG's other pictures (a gain map, a preview) are not frames
            return Header(im.format, im.size[0] * im.size[1],
                          1 if im.format in ("JPEG", "MPO") else getattr(im, "n_frames", 1))
    except Image.DecompressionBombError as e:   # Pillow's own check; the count is in its message
        count = re.search(r"\((\d+) pixels\)", str(e))
        return Header(None, int(count.group(1)) if count else (max_pixels() or 0) + 1)
    except Exception:   # noqa: BLE001 - any header Pillow cannot parse
        return Header(None)


def header(data: bytes) -> Header:
    """A file's :class:`Header`, from its bytes."""
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data)
    return _pillow(data)


def _cannot_open(path: Path, what: str, e: OSError) -> str:
    if isinstance(e, FileNotFoundError) and path.is_symlink():
        return f"{what} {path} is a broken symbolic link (to {os.readlink(path)}); fix the link or remove it"
    if isinstance(e, FileNotFoundError):
        return f"{what} {path} does not exist; check the path"
    if e.errno == errno.ELOOP:
        return f"{what} {path} is a symbolic link loop; fix the link or remove it"
    return f"cannot read {what} {path} ({e.strerror}); check the path and its permissions"


def _not_a_file(path: Path, what: str, mode: int) -> str:
    if stat.S_ISDIR(mode):
        try:
            os.scandir(path).close()
        except OSError as e:
            return (f"cannot read folder {path} ({e.strerror}), so its images were not inspected; fix its "
                    f"permissions")
        return f"{path} is a folder, not an {what} file; pass image files, or the folder where a folder is asked for"
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"{what} {path} is {kind}, not a file; pass image files"


def _open(path: Path, what: str) -> BinaryIO:
    """The file at ``path``, opened for reading: never blocking on a FIFO, refused in one line
    when it is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except ValueError:   # a NUL byte, from a list file
        raise InspectError(f"{what} name {path!r} holds a NUL byte; fix the list it came from") from None
    except OSError as e:
        raise InspectError(_cannot_open(path, what, e)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InspectError(_not_a_file(path, what, mode))
    return os.fdopen(fd, "rb")


def _file_bytes(path: Path, what: str = "image") -> bytes:
    with _open(path, what) as f:
        return f.read()


_FRAMES = {"TIFF": "a multi-page TIFF", "GIF": "an animated GIF", "PNG": "an animated PNG", "WEBP": "an animated WebP"}


def _check(head: Header, path: Path, what: str) -> None:
    """Refuse, before decoding, an image above :func:`max_pixels`, of several frames, or truncated."""
    limit = max_pixels()
    if limit is not None and head.pixels is not None and head.pixels > limit:
        raise InspectError(f"cannot read {what} {path}: its header says {head.pixels:,} pixels, more than the "
                           f"{limit:,} an image may have (a decompression bomb?); shrink it, or raise the limit "
                           f"with INSPECT_AD_MAX_PIXELS")
    if head.frames > 1:
        raise InspectError(f"cannot read {what} {path}: it holds {head.frames} frames ({_FRAMES.get(head.fmt, head.fmt)}), "
                           f"and each file is judged as one picture; save each frame as a file of its own")
    if not head.complete:
        raise InspectError(f"cannot read {what} {path}: the file is truncated (an interrupted copy or upload?); "
                           f"replace or remove it")


def _imread(path: Path, flags: int, what: str) -> np.ndarray:
    """The decoded file, or one line naming it: missing, not a file, too many pixels, several
    frames, truncated or corrupt."""
    with _open(path, what) as f:
        limit, size = max_pixels(), os.fstat(f.fileno()).st_size
        if limit is not None and size > 16 * limit + 2 ** 26:   # more than 16 bytes a pixel, uncompressed
            raise InspectError(f"cannot read {what} {path}: it is {size / 2 ** 30:.1f} GiB, more than any image of "
                               f"at most {limit:,} pixels; shrink it, or raise the limit with INSPECT_AD_MAX_PIXELS")
        data = f.read()
    head = header(data)
    _check(head, path, what)
    fmt = head.fmt
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        img, fmt = None, f"{fmt or 'image'} ({' '.join(str(e).split())[-80:]})"
    if img is None or img.size == 0:
        why = f"OpenCV cannot decode it as {fmt} (damaged, or a variant it does not read)" if fmt else \
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


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, as :func:`read_image` would decode it; a file
    Pillow cannot size is decoded (and one that cannot be read raises its one line)."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:   # noqa: BLE001 - the decoder has the last word, and its message
        return read_image(path).shape[:2]


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
    if not path.exists() and not path.is_symlink():
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
