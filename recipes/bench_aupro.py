"""Benchmark inspect_ad.scoring.metrics.aupro against the definition-by-loop aupro_reference.

    OMP_NUM_THREADS=1 python recipes/bench_aupro.py --n 100 --size 256 --seed 0

Three measurements on synthetic maps (smooth noise, brighter inside random elliptical defects;
about a third of the images are defect-free):
  1. aupro on the full set with continuous float32 scores (every pixel its own threshold);
  2. aupro vs aupro_reference on the same full set quantised to --levels grey levels (8-bit
     heatmaps), so the reference loop stays short: same input, directly comparable times;
  3. aupro vs aupro_reference on continuous scores of small crops (--ref-images images,
     --ref-crop pixels square, each over a defect), checking agreement on untied scores.
The reference makes one pass over all pixels per distinct score, so its time on the continuous
set of (1) is estimated from (2) scaled by the ratio of distinct scores (same pixels).
Last, pro_curve and pixel_auroc (which sort every pixel) are timed once on the set of (1).
Exits non-zero if aupro and aupro_reference differ by 1e-6 or more.
"""
from __future__ import annotations

import os

# one core, set before numpy loads its BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402
from skimage.draw import ellipse  # noqa: E402

from inspect_ad.scoring.metrics import aupro, aupro_reference, pixel_auroc, pro_curve  # noqa: E402


def synthetic_set(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(n):
        mask = np.zeros((size, size), dtype=np.uint8)
        n_blobs = 0 if i % 3 == 0 else int(rng.integers(1, 5))
        for _ in range(n_blobs):
            r, c = rng.integers(0, size, 2)
            radii = rng.uniform(size / 64, size / 10, 2)
            rr, cc = ellipse(r, c, *radii, shape=mask.shape, rotation=rng.uniform(0, np.pi))
            mask[rr, cc] = 1
        noise = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 64)
        signal = gaussian_filter(mask.astype(np.float64), sigma=2) * rng.uniform(0.5, 3.0)
        amap = noise / noise.std() + 2.0 * signal + 0.3 * rng.standard_normal((size, size))
        masks.append(mask)
        maps.append(amap.astype(np.float32))
    return masks, maps


def crops_around_defects(masks, maps, k: int, c: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """c x c crops of the first k defective images, each placed over its first defect pixel."""
    sub_masks, sub_maps = [], []
    for mask, amap in zip(masks, maps):
        if len(sub_masks) == k:
            break
        if not mask.any():
            continue
        r, col = (int(v) for v in np.argwhere(mask)[0])
        r0 = min(max(r - c // 2, 0), mask.shape[0] - c)
        c0 = min(max(col - c // 2, 0), mask.shape[1] - c)
        sub_masks.append(mask[r0:r0 + c, c0:c0 + c])
        sub_maps.append(amap[r0:r0 + c, c0:c0 + c])
    return sub_masks, sub_maps


def timed(fn, repeat: int) -> tuple[float, list[float]]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, times


def quantise(maps: list[np.ndarray], levels: int) -> list[np.ndarray]:
    lo = min(float(m.min()) for m in maps)
    hi = max(float(m.max()) for m in maps)
    return [np.round((m - lo) / (hi - lo) * (levels - 1)).astype(np.float32) for m in maps]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="number of maps")
    ap.add_argument("--size", type=int, default=256, help="map side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fpr-limit", type=float, default=0.3)
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions of aupro (median reported)")
    ap.add_argument("--levels", type=int, default=256, help="grey levels for the same-input comparison")
    ap.add_argument("--ref-images", type=int, default=2, help="images in the continuous-score crop check")
    ap.add_argument("--ref-crop", type=int, default=64, help="crop side for the continuous-score check")
    args = ap.parse_args()

    masks, maps = synthetic_set(args.n, args.size, args.seed)
    n_pixels = args.n * args.size * args.size
    n_distinct = np.unique(np.concatenate([m.ravel() for m in maps])).size
    print(f"data: {args.n} maps of {args.size}x{args.size} = {n_pixels} pixels, "
          f"{n_distinct} distinct scores, seed {args.seed}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")

    # skimage loads its labelling modules on first use (~0.4 s): keep that out of the timings
    aupro([np.eye(2)], [np.eye(2)])

    # 1. the fast path on continuous scores
    value, times = timed(lambda: aupro(masks, maps, args.fpr_limit), args.repeat)
    med = statistics.median(times)
    print(f"[1] aupro, continuous scores: {value:.6f}  median {med:.3f} s (min {min(times):.3f}) "
          f"over {args.repeat} runs -> {args.n / med:.1f} maps/s")

    # 2. same full set, quantised: both functions on identical input
    qmaps = quantise(maps, args.levels)
    fast_q, fast_times = timed(lambda: aupro(masks, qmaps, args.fpr_limit), args.repeat)
    ref_q, ref_times = timed(lambda: aupro_reference(masks, qmaps, args.fpr_limit), 1)
    fast_s, ref_s = statistics.median(fast_times), ref_times[0]
    print(f"[2] {args.levels}-level scores, all {args.n} maps: aupro {fast_q:.9f} in {fast_s:.3f} s, "
          f"aupro_reference {ref_q:.9f} in {ref_s:.3f} s; |diff| {abs(fast_q - ref_q):.2e}; "
          f"speed ratio {ref_s / fast_s:.1f}x (same input)")

    # 3. continuous scores on a crop: agreement without ties, reference cost per threshold*pixel
    k, c = min(args.ref_images, args.n), min(args.ref_crop, args.size)
    sub_masks, sub_maps = crops_around_defects(masks, maps, k, c)
    fast_c, fc_times = timed(lambda: aupro(sub_masks, sub_maps, args.fpr_limit), args.repeat)
    ref_c, rc_times = timed(lambda: aupro_reference(sub_masks, sub_maps, args.fpr_limit), 1)
    print(f"[3] continuous scores, {len(sub_masks)} crops of {c}x{c}: aupro {fast_c:.9f}, "
          f"aupro_reference {ref_c:.9f} in {rc_times[0]:.3f} s; |diff| {abs(fast_c - ref_c):.2e}")

    # the reference does one pass over all pixels per distinct score, so on the same pixels its
    # time scales with the number of thresholds: extrapolate [2] to the continuous scores of [1]
    q_thresholds = np.unique(np.concatenate([m.ravel() for m in qmaps])).size
    ref_full_est = ref_s * n_distinct / q_thresholds
    print(f"[est] aupro_reference on the continuous set of [1]: {ref_s:.3f} s x {n_distinct} / {q_thresholds} "
          f"thresholds = {ref_full_est:.3g} s ({ref_full_est / 3600:.3g} h), "
          f"~{ref_full_est / med:.3g}x aupro's {med:.3f} s")

    # the full-curve functions sort every pixel (no cut at the FPR limit)
    for fn in (pro_curve, pixel_auroc):
        _, t = timed(lambda: fn(masks, maps), 1)
        print(f"[full] {fn.__name__} on the continuous set of [1]: {t[0]:.3f} s")

    ok = abs(fast_q - ref_q) < 1e-6 and abs(fast_c - ref_c) < 1e-6
    print("agreement:", "OK (< 1e-6)" if ok else "FAILED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
