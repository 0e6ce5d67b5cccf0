"""How a fitted memory model reads its memories: addressing entropy, largest weight, slots per read;
for a multi-scale feature model also the fuser's mean weight and the training residual per scale.

    python recipes/memory_reads.py runs/brick/mmae ../shared/data/mvtec_subsets/hazelnut/train/good

A soft read over N slots that stays near uniform (entropy near log N, largest weight near 1/N) is
a learned constant mixed with whatever the few larger weights pass on: such a memory bottlenecks
nothing (issue 29). For each memory of the bundle, over the first ``--images`` training images:
the mean addressing entropy (MemAE eq. 9) against log N, the mean largest weight, the mean count
of non-zero weights per read, and how many slots are some position's largest weight.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from inspect_ad import Detector
from inspect_ad.data.preprocess import TrainImages
from inspect_ad.memory import addressing_entropy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_stats(weights: torch.Tensor) -> dict:
    """One memory's (Q, N) addressing weights -> its read statistics."""
    return {"slots": weights.shape[1], "entropy": float(addressing_entropy(weights)),
            "uniform_entropy": math.log(weights.shape[1]), "max_weight": float(weights.max(dim=1).values.mean()),
            "nonzero_per_read": float((weights > 0).sum(dim=1).float().mean()),
            "argmax_slots": int(weights.argmax(dim=1).unique().numel())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("images", type=Path, help="a folder of training images")
    p.add_argument("--images", dest="n", type=int, default=64, help="how many (sorted by name)")
    args = p.parse_args(argv)
    det = Detector.load(args.bundle, device="cpu")
    paths = sorted(q for q in args.images.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)[:args.n]
    data = TrainImages(paths, det.preprocessing_)
    with torch.no_grad():
        out = det.model_.eval()(torch.stack([data[i] for i in range(len(data))]))
    if getattr(out, "attention", None) is not None:
        residual = [float((1 - F.cosine_similarity(t, r, dim=1, eps=1e-6)).mean())
                    for t, r in zip(out.features, out.reconstructions)]
        print(f"{args.bundle.name} fuser weight per scale "
              + ", ".join(f"{a:.3f}" for a in out.attention.mean(dim=(0, 2, 3)).tolist())
              + "; training 1 - cos per scale " + ", ".join(f"{r:.3f}" for r in residual))
    if not out.weights:
        print(f"{args.bundle.name}: no memory")
        return 0
    for k, w in enumerate(out.weights):
        s = read_stats(w)
        print(f"{args.bundle.name} memory {k}: entropy {s['entropy']:.3f} (uniform {s['uniform_entropy']:.3f}), "
              f"largest weight {s['max_weight']:.3f} (uniform {1 / s['slots']:.4f}), "
              f"{s['nonzero_per_read']:.1f} non-zero weights per read, "
              f"{s['argmax_slots']}/{s['slots']} slots are some position's largest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
