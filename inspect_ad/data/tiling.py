"""Cutting a large photo into tiles at its own resolution, and stitching their maps back.

Squashing a 1024² MVTec AD grid photo to a 256² input leaves its thin defects a pixel or two wide,
below what a stride-8 feature sees. Tiles of the model's input size cut at the photo's resolution
keep them (anomalib's ``Tiler`` does the same): the model is fitted on the training photos' tiles,
every tile of a photo is scored, and the tiles' maps are put back where they came from, averaged
where tiles overlap. The photo's score is then pooled over the stitched map.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

Box = tuple[int, int, int, int]   # top, left, height, width


def _starts(n: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one side of ``n`` pixels: a step of tile·(1 − overlap), the last tile
    moved back to end at the border instead of hanging over it (no padding to invent)."""
    if n <= tile:
        return [0]
    step = max(1, round(tile * (1 - overlap)))
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def tile_boxes(shape: tuple[int, int], tile: int, overlap: float = 0.0) -> list[Box]:
    """The tiles covering an image of ``shape`` (H, W), row by row; a side shorter than the tile is
    one tile of that side's length."""
    h, w = shape
    return [(top, left, min(tile, h), min(tile, w))
            for top in _starts(h, tile, overlap) for left in _starts(w, tile, overlap)]


def cut(img: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
    return [img[t:t + h, left:left + w] for t, left, h, w in boxes]


def stitch(maps: Sequence[np.ndarray], boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """Tile maps (each at its box's size) -> one (H, W) map, the mean of the tiles over each pixel."""
    total = np.zeros(shape, np.float32)
    count = np.zeros(shape, np.float32)
    for m, (t, left, h, w) in zip(maps, boxes):
        total[t:t + h, left:left + w] += m
        count[t:t + h, left:left + w] += 1
    return np.divide(total, count, out=total)
