"""Inputs of the speed benchmarks (bench_inference, bench_ray): JPEG files, as a line camera's."""
from __future__ import annotations

from pathlib import Path

import cv2


def jpeg_inputs(sources: list[Path], folder: Path, n: int, size: int) -> Path:
    """``n`` JPEGs (quality 90) of ``size``² in ``folder``, made from ``sources`` in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = cv2.imread(str(sources[i % len(sources)]), cv2.IMREAD_COLOR)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.resize(img, (size, size)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder
