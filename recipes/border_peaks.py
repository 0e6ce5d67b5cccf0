"""Do good images' maps peak at the border? Bands and maxima along each side of the anomaly maps.

    python recipes/border_peaks.py demo/models/brick/patchcore demo/data/brick/calibration

For defect-free images: how many maps have their maximum within ``--strip`` pixels of each side, and
the mean map's value along each side's strip over its interior (1: no band). ``--sigma`` overrides
the map smoothing (0: none). A bundle fitted with ``-o pad_input=false -o align_grid=false`` shows
patchcore as it was before issue 30's edge fix.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from inspect_ad import Detector
from inspect_ad.data.io import list_images

SIDES = ("top", "bottom", "left", "right")


def border_stats(maps: np.ndarray, strip: int) -> dict:
    """Per side: maps peaking in its strip, and the mean map's strip over its interior."""
    h, w = maps.shape[1:]
    peaks = [np.unravel_index(np.argmax(m), m.shape) for m in maps]
    near = {"top": lambda y, x: y < strip, "bottom": lambda y, x: y >= h - strip,
            "left": lambda y, x: x < strip, "right": lambda y, x: x >= w - strip}
    mean = maps.mean(axis=0)
    inner = mean[strip:-strip, strip:-strip].mean()
    strips = {"top": mean[:strip], "bottom": mean[-strip:], "left": mean[:, :strip], "right": mean[:, -strip:]}
    return {"n": len(maps), "in_any_strip": sum(any(near[s](y, x) for s in SIDES) for y, x in peaks),
            "area_share": 1 - (h - 2 * strip) * (w - 2 * strip) / (h * w),
            **{f"peaks_{s}": sum(near[s](y, x) for y, x in peaks) for s in SIDES},
            **{f"band_{s}": float(strips[s].mean() / inner) for s in SIDES}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("good", type=Path, help="a folder of defect-free images")
    p.add_argument("--strip", type=int, default=8, help="pixels from each side")
    p.add_argument("--sigma", type=float, help="map smoothing instead of the bundle's")
    args = p.parse_args(argv)
    det = Detector.load(args.bundle, "cpu")
    if args.sigma is not None:
        det.map_config = replace(det.map_config, sigma=args.sigma)
    s = border_stats(np.stack(det.anomaly_maps(list_images(args.good))), args.strip)
    print(f"{args.bundle} on {s['n']} good images of {args.good} (sigma {det.map_config.sigma:g}): "
          f"{s['in_any_strip']} maps peak within {args.strip} px of a side ({s['area_share']:.0%} of the image); "
          + ", ".join(f"{side} {s[f'peaks_{side}']}" for side in SIDES) + "; mean map along each side ÷ interior: "
          + ", ".join(f"{side} {s[f'band_{side}']:.3f}" for side in SIDES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
