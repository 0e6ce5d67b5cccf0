"""Turning images into model inputs (and remembering how, so a bundle can do it again)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from inspect_ad.checks import MAX_SIZE, Int, Number, Optional, Options, Satisfies, Size, as_size, is_int, size_shape, validate
from inspect_ad.data.io import as_pixels, convert_channels, full_scale, image_shape, read_image
from inspect_ad.data.tiling import cut, tile_boxes
from inspect_ad.errors import InspectError

if TYPE_CHECKING:
    import albumentations as A

AUGMENTATIONS = ("none", "flip", "light")
# Both scale an image to [0, 1] by its type's full scale: 255 for 8 bits, 65535 for 16 (the name
# "divide_by_255" is kept, bundles store it), so an 8- and a 16-bit file of one scene give the same
# input and a bundle need not record the depth. Not by a bit depth guessed from the pixels: a dark
# 16-bit image would pass for a 12-bit one. A 12-bit camera's images in 16-bit files (values up to
# 4095) thus read as dark (at most 1/16), at training and inference alike; "stretch" gives them the
# full range, as it does any under-exposed image.
# "stretch" maps each image's 1st..99th percentile grey level to 0..1 (not in the papers): with
# exposure varying from part to part (MTD), a bright good image otherwise has squared errors many
# times those of a dark defective one and the image score ranks brightness, not defects.
# Percentiles, not min/max, so that one hot pixel or a black border does not set the scale.
NORMALIZATIONS = ("divide_by_255", "stretch")
# How an image of another shape than the input becomes the input. "squash": resize each side to the
# input's (the papers', for MVTec AD's square images). "pad": keep the aspect ratio, scale the image
# to fit the input and fill the rest by reflecting the image; maps are cropped back to the image
# before they are resized to it. Not in the papers: MTD's tiles range from about 1:3 to 8:3
# (width:height), and squashing changes the shape of their defects from image to image.
RESIZE_MODES = ("squash", "pad")
STRETCH_QUANTILES = (0.01, 0.99)


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``image_size`` (one side: square, or (height, width); area interpolation;
    ``resize_mode``: see RESIZE_MODES), ``channels`` 1 or 3, scale to [0, 1] (``normalization``:
    divide by 255, or 65535 for 16-bit images, or also stretch each image's contrast, see
    NORMALIZATIONS). ``tile``: cut each image into tiles of this many pixels at its own
    resolution, ``tile_overlap`` apart (:mod:`inspect_ad.data.tiling`), each tile resized to the
    input; None: the whole image is the input. With "stretch", each tile is stretched on its own."""

    image_size: int | tuple[int, int]
    channels: int
    normalization: str = "divide_by_255"
    resize_mode: str = "squash"
    tile: int | None = None
    tile_overlap: float = 0.0

    _constraints: ClassVar[dict] = {
        "image_size": Size(), "channels": Satisfies("1 or 3", lambda v: is_int(v) and v in (1, 3)),
        "normalization": Options(*NORMALIZATIONS), "resize_mode": Options(*RESIZE_MODES),
        "tile": Optional(Int(8, MAX_SIZE)), "tile_overlap": Number(0, 0.9)}

    def __post_init__(self):
        object.__setattr__(self, "image_size", as_size(self.image_size))
        validate(self)

    @property
    def shape(self) -> tuple[int, int]:
        """The model input's (height, width)."""
        return size_shape(self.image_size)

    def describe(self) -> str:
        h, w = self.shape
        return f"{self.tile} px tiles at the images' resolution, input {h}×{w}" if self.tile else f"input {h}×{w}"

    def content_box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, height, width) of an image of ``shape`` inside the model input."""
        H, W = self.shape
        if self.resize_mode == "squash":
            return 0, 0, H, W
        scale = min(H / shape[0], W / shape[1])
        h, w = min(H, max(1, round(shape[0] * scale))), min(W, max(1, round(shape[1] * scale)))
        return (H - h) // 2, (W - w) // 2, h, w

    def resize(self, img: np.ndarray) -> np.ndarray:
        H, W = self.shape
        if img.shape[:2] == (H, W):
            return img
        top, left, h, w = self.content_box(img.shape[:2])
        interp = cv2.INTER_AREA if h <= img.shape[0] and w <= img.shape[1] else cv2.INTER_LINEAR
        out = cv2.resize(img, (w, h), interpolation=interp)
        if (h, w) != (H, W):
            border = cv2.BORDER_REFLECT_101 if min(h, w) > 1 else cv2.BORDER_REPLICATE
            out = cv2.copyMakeBorder(out, top, H - h - top, left, W - w - left, border)
        return out[:, :, None] if out.ndim == 2 else out

    def boxes(self, shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        """Where an image of ``shape`` is cut: its tiles, or the whole image."""
        return tile_boxes(shape, self.tile, self.tile_overlap) if self.tile else [(0, 0, *shape)]

    def inputs(self, img: np.ndarray) -> torch.Tensor:
        """(T, C, H, W): the model inputs of an image read at its depth, one per box."""
        return torch.stack([self.to_tensor(self.resize(part)) for part in cut(img, self.boxes(img.shape[:2]))])

    def map_to_image(self, amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A model-resolution map back onto an image of ``shape``: crop the padding, then resize."""
        top, left, h, w = self.content_box(shape)
        return resize_map(amap[top:top + h, left:left + w], shape)

    def to_tensor(self, img: np.ndarray) -> torch.Tensor:
        """(H, W, C) uint8 or uint16 already resized -> (C, H, W) float in [0, 1]."""
        scale = float(full_scale(img))
        # numpy, not torch: for one image torch's threaded cast and division took 20-50× longer (5 ms
        # on the 2-core CPU, a tenth of patchcore's time per image), with bit-identical results
        x = np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32)
        x = torch.from_numpy(np.divide(x, np.float32(scale), out=x))
        return stretch_contrast(x, 1 / scale) if self.normalization == "stretch" else x

    def to_dict(self) -> dict:
        return asdict(self)


def stretch_contrast(x: torch.Tensor, step: float = 1 / 255) -> torch.Tensor:
    """Map the image's STRETCH_QUANTILES grey levels to 0 and 1, clipping beyond; a range below one
    grey level (``step``) is not stretched further, so a flat image's noise is not blown up."""
    lo, hi = torch.quantile(x.flatten(), torch.tensor(STRETCH_QUANTILES, dtype=x.dtype))
    return ((x - lo) / (hi - lo).clamp_min(step)).clamp_(0, 1)


def detect_channels(paths: Sequence[Path], probe: int = 8) -> int:
    """3 if any of the first images has real colour, else 1."""
    for p in paths[:probe]:
        img = read_image(p)
        if img.shape[2] == 3 and not (np.array_equal(img[..., 0], img[..., 1])
                                      and np.array_equal(img[..., 0], img[..., 2])):
            return 3
    return 1


def augmentation(name: str, seed: int) -> A.Compose | None:
    """Train-time augmentation that keeps a defect-free image defect-free."""
    Options(*AUGMENTATIONS).check("augmentation", name)
    if name == "none":
        return None
    import albumentations as A  # here, not at the top: importing it takes seconds, and most fits never augment
    ops = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if name == "light":
        ops.append(A.RandomBrightnessContrast(brightness_limit=0.05, contrast_limit=0.05, p=0.5))
    return A.Compose(ops, seed=seed)


class TrainImages(Dataset):
    """Defect-free training images (or their tiles: item k is tile k of them all, in order),
    decoded and resized once, then cached at their depth (uint8 or uint16)."""

    def __init__(self, paths: Sequence[Path], prep: Preprocessing, augment: A.Compose | None = None):
        self.paths, self.prep, self.augment = list(paths), prep, augment
        self._cache: dict[int, list[np.ndarray]] = {}
        # a tile's image and place, from the headers: a DataLoader needs the count before the first read
        self.items = ([(i, k) for i, p in enumerate(self.paths) for k in range(len(prep.boxes(image_shape(p))))]
                      if prep.tile else [(i, 0) for i in range(len(self.paths))])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int) -> torch.Tensor:
        i, k = self.items[j]
        if i not in self._cache:
            img = read_image(self.paths[i], self.prep.channels)
            self._cache[i] = [self.prep.resize(part) for part in cut(img, self.prep.boxes(img.shape[:2]))]
        img = self._cache[i][k]
        if self.augment is not None:
            img = self.augment(image=img)["image"]
            img = img[:, :, None] if img.ndim == 2 else img
        return self.prep.to_tensor(img)


def choose_input(shapes: Sequence[tuple[int, int]], side: int = 256, multiple: int = 32,
                 tile: str | int | None = "auto") -> tuple[int | tuple[int, int], int | None]:
    """The input size and tile side that "auto" gives for training images of ``shapes``.

    Tiles (``tile`` "auto"): when the images' median short side exceeds twice ``side``, tiles of
    ``side`` pixels cut at the images' resolution (a 1024² MVTec AD grid: 16 tiles), which keep
    thin defects that resizing blurs away. Otherwise the short side is ``side`` and the long
    side follows the images' median aspect ratio, rounded to ``multiple`` (the deepest stride of
    the backbones' stages, so every grid cell is whole); square (one int) when it rounds to
    ``side``. Images of other shapes are then squashed or padded to it (``resize_mode``)."""
    h, w = (float(np.median([s[k] for s in shapes])) for k in (0, 1))
    if tile == "auto":
        tile = side if min(h, w) > 2 * side else None
    if tile:
        return tile, tile
    aspect = float(np.median([s[1] / s[0] for s in shapes]))
    long = min(MAX_SIZE, max(side, round(side * max(aspect, 1 / aspect) / multiple) * multiple))
    if long == side:
        return side, None
    return ((side, long) if aspect > 1 else (long, side)), None


class CachedTargets(Dataset):
    """The frozen-backbone targets of every training image, computed once: a feature model's
    backbone never changes, so training epochs reuse them instead of re-running it."""

    def __init__(self, images: Dataset, targets, batch_size: int = 16, device: torch.device | None = None,
                 progress: bool = True):
        from tqdm.auto import tqdm
        self.items: list[list[torch.Tensor]] = []
        loader = torch.utils.data.DataLoader(images, batch_size=batch_size)
        with torch.no_grad():
            for x in tqdm(loader, desc="backbone features", disable=not progress, unit="batch"):
                feats = [f.cpu() for f in targets(x.to(device) if device is not None else x)]
                self.items.extend([f[i] for f in feats] for i in range(len(x)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return self.items[i]


def resize_map(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map at model resolution -> the original image's (H, W), bilinear."""
    if m.shape == tuple(shape):
        return m
    return cv2.resize(m.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


class InputImages(Dataset):
    """Images to score, each read and turned into the model's inputs on its own (in a DataLoader
    worker when asked): item i is ``(source, inputs (T, C, H, W), pixels as read, None)`` (one
    input per tile, or the whole image), or
    ``(source, None, None, reason)`` when it cannot be read, so that one bad file ends nothing."""

    def __init__(self, items: Sequence, prep: Preprocessing):
        self.items, self.prep = items, prep

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple:
        return self.decode(self.items[i])

    def decode(self, item) -> tuple:
        source = "<array>" if isinstance(item, np.ndarray) else str(item)
        try:
            img = (convert_channels(as_pixels(item), self.prep.channels) if isinstance(item, np.ndarray)
                   else read_image(item, self.prep.channels))
        except InspectError as e:
            return source, None, None, str(e)
        return source, self.prep.inputs(img), img, None


def _one(batch: list) -> tuple:
    return batch[0]


def decoded_inputs(items: Iterable, prep: Preprocessing, workers: int = 0) -> Iterator[tuple]:
    """:class:`InputImages` items in input order: read here (``workers=0``, lazily: ``items`` may
    be a stream), or by ``workers`` processes a few images ahead of the model."""
    if workers <= 0:
        decode = InputImages((), prep).decode
        return map(decode, items)
    items = list(items)
    loader = torch.utils.data.DataLoader(InputImages(items, prep), batch_size=1, collate_fn=_one,
                                         num_workers=min(workers, max(1, len(items))), prefetch_factor=4)
    return iter(loader)
